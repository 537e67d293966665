"""Argument parsing only: each subcommand hands its options, as keyword arguments, to one function."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from sweep._version import __version__
from sweep.errors import SweepError, one_line, quote

# subcommand -> "module:function"; imported only when that subcommand runs, so `--help` stays fast.
HANDLERS = {
    "train": "sweep.train.trial:train_command",
    "run": "sweep.search.driver:run_command",
    "status": "sweep.study.command:status_command",
    "pareto": "sweep.select.picks:pareto_command",
    "dashboard": "sweep.dashboards.page:dashboard_command",
    "export": "sweep.export:export_command",
    "check": "sweep.export.check:check_command",
}

PENALTIES = ["none", "l1", "group_lasso", "bn_group_lasso", "sparse_group_lasso", "nuclear"]
PRECISIONS = ["auto", "bf16", "fp16", "fp32"]  # sweep.config.trial.PRECISIONS, without importing it here
LAM_SCALINGS = ["uniform", "rms", "flops", "rms_flops"]  # sweep.config.trial.LAM_SCALINGS, likewise


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end in one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sweep: error: {one_line(message)} (see {self.prog} --help)\n")


# Argument types: argparse turns an ArgumentTypeError into "argument --NAME: MESSAGE", one line, exit 2.


def text(value: str) -> str:
    """A non-empty string: an empty --study, --storage or --out would silently mean the default."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"must not be empty, got {quote(value)}")
    if "\0" in value:
        raise argparse.ArgumentTypeError(f"must not contain a NUL character, got {quote(value)}")
    return value


def folder(value: str) -> str:
    """An existing folder (--data-dir): data is looked for only there, so a typo must not pass."""
    text(value)
    path = Path(value).expanduser()
    if not path.is_dir():
        problem = (
            "is not a folder"
            if path.exists()
            else "does not exist (create it, even empty, to download into it)"
        )
        raise argparse.ArgumentTypeError(f"must be an existing folder; {quote(value)} {problem}")
    return value


def _init_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--init",
        type=text,
        help="start from these weights: a .safetensors or state-dict file, a sweep checkpoint or export, "
        "torchvision:<Weights>.<NAME>, timm:<NAME>[.<TAG>], or baseline (run: the study's baseline, trained first)",
    )


def number(
    low: float | None = None, high: float | None = None, open_low: bool = False
) -> Callable[[str], float]:
    """A finite float in [low, high] (``open_low``: low excluded); inf and nan are refused by name."""

    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {quote(value)}") from None
        too_low = low is not None and (x <= low if open_low else x < low)
        if not math.isfinite(x) or too_low or (high is not None and x > high):
            interval = ""
            if low is not None or high is not None:
                start = "-inf" if low is None else f"{low:g}"
                end = "inf)" if high is None else f"{high:g}]"
                interval = f" in {'(' if open_low else '['}{start}, {end}"
            raise argparse.ArgumentTypeError(f"must be a finite number{interval}, got {quote(value)}")
        return x

    return parse


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high]."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {quote(value)}") from None
        if (low is not None and n < low) or (high is not None and n > high):
            interval = f"[{'-inf' if low is None else low}, {'inf)' if high is None else f'{high}]'}"
            raise argparse.ArgumentTypeError(f"must be an integer in {interval}, got {quote(value)}")
        return n

    return parse


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", type=text, help="dataset name (default: the model's own)")
    p.add_argument(
        "--data-dir",
        type=folder,
        help="the folder the data lies in, and the only one looked in (default: $SWEEP_DATA_DIR, then "
        "standard places)",
    )
    p.add_argument("--subset", type=int, help="train on the first N training images only (quick runs)")
    p.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="resize the images to N x N pixels (default: the dataset's own size; folder: 32)",
    )
    p.add_argument("--seed", type=int, default=0)


def _storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", type=text, help="database URL (default: $SWEEP_STORAGE, then sqlite:///sweep.db)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sweep", description="Find compact CNNs with sparsity penalties.")
    parser.add_argument("--version", action="version", version=f"sweep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one network with one penalty (no Ray, no Optuna)")
    p.add_argument("model", type=text, nargs="?", help="the model (optional with --from or --config)")
    p.add_argument("--penalty", type=text, default="group_lasso", help=f"one of {', '.join(PENALTIES)}")
    p.add_argument("--lam", type=number(), default=1e-3, help="penalty strength lambda (>= 0)")
    p.add_argument("--alpha", type=number(), default=0.5, help="l1 share of sparse_group_lasso, in [0, 1]")
    p.add_argument(
        "--layers", type=text, help="comma-separated layers to constrain (default: all that can lose units)"
    )
    p.add_argument("--epochs", type=int, help="default: 10")
    p.add_argument(
        "--debias-epochs",
        type=int,
        default=0,
        help="last epochs trained with the penalty off and dead neurons held at zero",
    )
    p.add_argument("--warmup-epochs", type=number(), default=0.0, help="epochs over which lambda ramps up")
    p.add_argument(
        "--lam-scaling",
        choices=LAM_SCALINGS,
        help="rms: each layer's lambda times its channels' RMS at the start over the network's; flops: times "
        "the FLOPs one of its channels costs over the network's; rms_flops: both (default: uniform)",
    )
    p.add_argument(
        "--method",
        choices=["prox", "magnitude"],  # sweep.config.trial.METHODS
        help="magnitude: zero the --prune-ratio smallest channels of the start weights, then fine-tune "
        "(default: prox)",
    )
    p.add_argument(
        "--prune-ratio", type=number(), help="magnitude: share of channels pruned, in [0, 1) (default: 0.5)"
    )
    p.add_argument(
        "--importance",
        choices=["l1", "l2", "taylor", "bn_scale"],  # sweep.config.trial.IMPORTANCES
        help="what ranks the channels pruned by importance (default: l1)",
    )
    p.add_argument(
        "--scope", choices=["local", "global"], help="pruning: ratio per group or over all (default: local)"
    )
    p.add_argument(
        "--flops-target",
        type=number(),
        help="share of the FLOPs to remove, in (0, 1): magnitude prunes to it instead of --prune-ratio; "
        "the prox tops its sparse phase up to it when the debias phase starts (default: off)",
    )
    p.add_argument(
        "--prune-steps",
        type=int,
        help="magnitude: prune in N steps, one at the start of each of the first N epochs (default: 1, all "
        "at once)",
    )
    p.add_argument(
        "--rewind",
        action="store_true",
        default=None,
        help="prox: the survivors start the debias phase again from the trial's starting weights",
    )
    # Training-recipe options default to the model's search space (its `fixed` settings).
    p.add_argument("--batch-size", type=int, help="default: the model's search space, else 64")
    p.add_argument("--lr", type=number(), help="default: the model's search space, else 0.01")
    p.add_argument(
        "--random-shift",
        type=int,
        help="translate training images by up to N pixels (default: the model's search space, else 0)",
    )
    p.add_argument(
        "--lr-policy",
        choices=["constant", "inv", "multistep", "cosine"],
        help="default: the model's search space (lenet: Caffe's inv), else constant",
    )
    p.add_argument("--device", type=text, default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="autocast dtype (auto: bf16 on a CUDA GPU that supports it, else fp32; fp16 needs a GPU)",
    )
    _init_arg(p)
    p.add_argument(
        "--distill",
        type=number(0.0, 1.0),
        help="share of the loss that matches the --init network's softened outputs (default: 0, off)",
    )
    p.add_argument(
        "--distill-temperature", type=number(0.0, open_low=True), help="softening of --distill (default: 1)"
    )
    _data_args(p)
    p.add_argument("--out", type=text, default="runs/train", help="folder for the checkpoint")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on the last line")
    # a whole recorded config (sweep.train.rerun): MODEL optional, options given beside it replace settings
    rerun = p.add_mutually_exclusive_group()
    rerun.add_argument(
        "--from",
        dest="from_trial",
        type=text,
        metavar="STUDY:TRIAL",
        help="re-run this trial of a study with exactly its recorded config",
    )
    rerun.add_argument(
        "--config",
        type=text,
        metavar="FILE.json",
        help="train the TrialConfig (a JSON object) this file holds",
    )
    _storage_args(p)
    # None: not given (train_command supplies the defaults, or --from/--config's recorded settings)
    p.set_defaults(
        **dict.fromkeys(
            ("penalty", "lam", "alpha", "debias_epochs", "warmup_epochs", "seed", "device", "precision")
        )
    )

    p = sub.add_parser("run", help="search penalty type and strength: an Optuna study placed by Ray Tune")
    p.add_argument("model", type=text)
    p.add_argument(
        "--space",
        type=text,
        help="search space YAML (default: ./search_spaces/MODEL.yaml, else the shipped one)",
    )
    p.add_argument("--study", type=text, help="study name (default: MODEL-DATASET)")
    _storage_args(p)
    p.add_argument("--trials", type=int, help="number of trials (default: the budget's)")
    p.add_argument(
        "--budget", type=text, default="smoke", help="named budget in the search space (smoke, paper, ...)"
    )
    p.add_argument("--epochs", type=int, help="override the budget's epochs per trial")
    _data_args(p)
    p.add_argument(
        "--sampler",
        choices=["tpe", "auto", "gp", "nsga2", "random", "grid"],
        default="tpe",
        help="tpe (default); gp: Gaussian process (logEHVI); auto: gp under 100 trials over a mostly "
        "numeric space, else tpe (see docs/results.md#search-efficiency for what each measured)",
    )
    p.add_argument(
        "--scheduler",
        choices=["fifo", "asha"],
        default="fifo",
        help="asha: stop trials early that trail on the Pareto fronts of their rung",
    )
    p.add_argument("--cpus-per-trial", type=number(), default=1.0)
    p.add_argument(
        "--gpus-per-trial",
        type=number(),
        default=0.0,
        help="GPUs per trial; a fraction packs trials on one GPU (0.25: four per GPU)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="autocast dtype of the trials (default: the search space's, else auto: bf16 on GPUs that "
        "support it, fp32 on CPUs)",
    )
    _init_arg(p)
    p.add_argument("--concurrency", type=int, help="trials at once (default: as many as resources allow)")
    p.add_argument("--max-failures", type=int, default=0, help="times Ray runs a failed trial again")
    p.add_argument("--address", type=text, help="join an existing Ray cluster (ray://host:port or auto)")
    p.add_argument("--resume", action="store_true", help="continue an existing study")
    p.add_argument(
        "--warm-start",
        type=text,
        metavar="STUDY",
        help="try the Pareto front of this earlier study (same model and data) first",
    )
    p.add_argument(
        "--warm-storage", type=text, metavar="URL", help="--warm-start's database (default: --storage)"
    )
    p.add_argument("--out", type=text, default="runs", help="where Ray keeps trial checkpoints")

    p = sub.add_parser("status", help="studies in a database, or one study's trials")
    _storage_args(p)
    p.add_argument("--study", type=text, help="show this study's trials")

    p = sub.add_parser("pareto", help="the Pareto front of a study")
    p.add_argument("study", type=text)
    _storage_args(p)
    p.add_argument("--x", default="neurons", choices=["neurons", "params", "flops", "latency_ms"])
    p.add_argument(
        "--max-error", type=number(0, 100), help="the smallest network with at most this top-1 error (%%)"
    )
    p.add_argument("--json", action="store_true", help="print the front as one JSON array on the last line")

    p = sub.add_parser("dashboard", help="plotly dashboard of a study: an HTML file, or served live")
    p.add_argument("study", type=text)
    _storage_args(p)
    p.add_argument("--out", type=text, help="HTML file to write (default: STUDY.html)")
    p.add_argument("--serve", action="store_true", help="serve it and refresh while a sweep writes")
    p.add_argument("--host", type=text, default="127.0.0.1")
    p.add_argument("--port", type=integer(0, 65535), default=8050, help="0: any free port")

    p = sub.add_parser("export", help="write a chosen trial as a physically smaller network")
    p.add_argument("study", type=text)
    _storage_args(p)
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=int, help="trial number")
    pick.add_argument(
        "--max-error", type=number(0, 100), help="the smallest network with at most this error (%%)"
    )
    pick.add_argument("--knee", action="store_true", help="the knee of the error/neurons front")
    pick.add_argument(
        "--max-increase",
        type=number(0, 100),
        metavar="POINTS",
        help="the smallest network within this many points of the baseline's held-out error (the default, 1.0)",
    )
    p.add_argument("--out", type=text, help="output folder (default: export/STUDY-trialN)")
    p.add_argument("--format", type=text, default="torchscript,safetensors,onnx")
    p.add_argument("--finetune", type=int, default=0, metavar="EPOCHS")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--allow-early-stopped", action="store_true")
    p.add_argument(
        "--data-dir", type=folder, help="the folder the trial's dataset lies in (default: where it trained)"
    )

    p = sub.add_parser("check", help="preflight: can sweep remove this network's channels exactly?")
    p.add_argument("model", type=text, help="a registered name, pkg.mod:fn, file.py:fn, an entry point")
    p.add_argument(
        "--input-size", type=integer(8, 4096), metavar="N", help="image side (default: the model's)"
    )
    p.add_argument("--in-channels", type=integer(1, 4096), metavar="C", help="default: the model's, else 3")
    p.add_argument("--num-classes", type=integer(2, 100000), metavar="K", help="default: 10")
    p.add_argument("--seed", type=int, default=0, help="which random half of each group is removed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = vars(build_parser().parse_args(argv))
    except SystemExit as done:  # --help (0), or a usage error whose one line is already printed (2)
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 2
    module, func = HANDLERS[args.pop("command")].split(":")
    try:
        handler = getattr(importlib.import_module(module), func)
        return int(handler(**args) or 0)
    except SweepError as err:
        print(f"sweep: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted", file=sys.stderr)
        return 130
