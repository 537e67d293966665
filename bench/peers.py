"""sweep's pruning arms against Torch-Pruning's recipes, from ONE baseline, at equal epochs and FLOPs.

For each model: a sweep study (``sweep run``, a real Ray Tune run) trains the baseline, then one trial per
sweep arm and FLOPs target, every trial fine-tuning from the baseline for the same epochs; then each
Torch-Pruning recipe (``bench/peer_recipes.py``, one process per arm, two at a time) prunes the study's
baseline checkpoint to the same FLOPs targets and fine-tunes it for the same epochs with the same schedule.
Every error is ``sweep.measure.top1_error`` on the same held-out and test images.

    python bench/peers.py resnet20 cifar10_quick --data-dir ../shared/data

Writes results/peers/<model>.{yaml,db,json} and results/peers.md. A study already run is resumed (its
finished trials kept); a peer arm already in the json is not run again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sweep.search.baseline import baseline_checkpoint  # noqa: E402
from sweep.space.load import SHIPPED_SPACES  # noqa: E402

OUT = ROOT / "results" / "peers"
TARGETS = (0.45, 0.60)
PEERS = ("tp_l1_local", "tp_l1_global", "tp_group_norm")

# The schedule every arm shares, per model: the shipped finetune budget's shape on 10,000 images.
MODELS: dict[str, dict[str, Any]] = {
    "resnet20": {
        "subset": 10000,
        "baseline_epochs": 16,
        "epochs": 16,
        "lr": 0.025,
        "batch_size": 128,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "random_shift": 4,
        "lam": 0.02,
    },
    "cifar10_quick": {
        "subset": 10000,
        "baseline_epochs": 10,
        "epochs": 14,
        "lr": 0.005,
        "batch_size": 100,
        "momentum": 0.9,
        "weight_decay": 0.004,
        "random_shift": 0,
        "lam": 0.01,
    },
}


def sweep_arms(model: str) -> list[dict[str, Any]]:
    """The start point of each sweep arm: magnitude pruning at each target, and the prox aimed at a
    target (resnet20's 16-epoch trials afford one prox arm; cifar10_quick's measure its variants: the
    FLOPs scaling, rewinding, a weaker penalty, at 45%)."""
    arms: list[dict[str, Any]] = [
        {"method": "magnitude", "importance": "l1", "flops_target": target} for target in TARGETS
    ]
    prox = {"method": "prox", "lam": MODELS[model]["lam"], "lam_scaling": "flops", "warmup_epochs": 0.3}
    if model == "resnet20":
        prox_arm = {**prox, "rewind": True, "debias_fraction": 0.875, "flops_target": TARGETS[0]}
        global_arm = {
            "method": "magnitude",
            "importance": "l1",
            "scope": "global",
            "flops_target": TARGETS[0],
        }
        taylor = {**global_arm, "importance": "taylor"}
        return [*arms, prox_arm, global_arm, taylor]
    for target in TARGETS:
        # the first prox runs: layer scales left to the sampler, the target checked once an epoch
        arms.append({**prox, "rewind": True, "debias_fraction": 0.75, "flops_target": target})
        arms.append({"method": "magnitude", "importance": "taylor", "flops_target": target})
    pinned = {
        **prox,
        "debias_fraction": 0.75,
        "flops_target": TARGETS[0],
        "layer_scales": {"conv3": 1.0, "fc1": 1.0},
    }
    arms += [
        {**pinned, "rewind": True},
        {**pinned, "rewind": False},
        {**pinned, "rewind": True, "lam_scaling": "uniform"},
        {**pinned, "rewind": True, "lam": 0.003},
    ]
    return arms


def write_space(model: str) -> Path:
    """The shipped space with a ``peers`` budget whose start points are the sweep arms."""
    doc = yaml.safe_load((SHIPPED_SPACES / f"{model}.yaml").read_text())
    s = MODELS[model]
    arms = sweep_arms(model)
    start = [{"penalty": "group_lasso", "layers": "all", "lr": s["lr"], **point} for point in arms]
    if model != "resnet20":
        for point in start:
            point.pop("layers")
    doc["budgets"] = {
        "peers": {
            "trials": 1 + len(arms),
            "epochs": s["epochs"],
            "subset": s["subset"],
            "baseline_epochs": s["baseline_epochs"],
            "overrides": {
                "init": "baseline",
                "debias_restart": False,
                "lr_policy": "cosine",
                **({"layers": None} if model != "resnet20" else {}),
            },
            "search": {
                # up to the space's fixed lr, which the baseline trains at (a baseline takes the fixed value
                # of a searched setting only where it lies in the range)
                "lr": {"low": s["lr"] / 2, "high": doc["fixed"]["lr"], "log": True},
                "lam": {"low": 1e-3, "high": 5e-2, "log": True},
                "method": {"choices": ["prox", "magnitude"]},
                "importance": {"choices": ["l1", "taylor"]},
                "scope": {"choices": ["local", "global"]},
                "flops_target": {"low": 0.3, "high": 0.7},
                "rewind": {"choices": [True, False]},
                "lam_scaling": {"choices": ["uniform", "flops"]},
                "debias_fraction": {"low": 0.5, "high": 0.9},
            },
            "start": start,
        }
    }
    path = OUT / f"{model}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def storage_url(model: str) -> str:
    """Relative to the working folder, so the study records no machine path."""
    return f"sqlite:///{os.path.relpath(OUT / f'{model}.db')}"


def run_study(model: str, data_dir: str, scratch: Path) -> optuna.Study:
    space = write_space(model)
    storage = storage_url(model)
    name = f"peers-{model}"
    exists = (OUT / f"{model}.db").exists()
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        model,
        "--space",
        str(space),
        "--budget",
        "peers",
        "--study",
        name,
        "--storage",
        storage,
        "--out",
        str(scratch / f"ray-peers-{model}"),
        "--data-dir",
        data_dir,
        "--cpus-per-trial",
        "1",
        *(["--resume"] if exists else []),
    ]
    if exists:
        study = optuna.load_study(study_name=name, storage=storage)
        finished = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        if len(finished) >= 1 + len(sweep_arms(model)):
            return study
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)
    return optuna.load_study(study_name=name, storage=storage)


def run_peers(model: str, checkpoint: str, data_dir: str, done: dict[str, dict], results: Path) -> None:
    """Each Torch-Pruning recipe at each target not in ``done``, two processes at a time; ``results``
    (json) is written after each, so a run cut short keeps the arms it finished."""
    s = MODELS[model]
    todo = [(r, t) for t in TARGETS for r in PEERS if f"{r}@{t}" not in done]

    def one(item: tuple[str, float]) -> None:
        recipe, target = item
        shared = ("subset", "epochs", "lr", "batch_size", "momentum", "weight_decay", "random_shift")
        options = {"target": target, "data-dir": data_dir, **{k.replace("_", "-"): s[k] for k in shared}}
        flags = [part for key, value in options.items() for part in (f"--{key}", str(value))]
        cmd = [sys.executable, str(ROOT / "bench" / "peer_recipes.py"), recipe, checkpoint, *flags]
        print("$", " ".join(cmd), flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode or not lines:
            print(f"{recipe}@{target} failed:\n{out.stderr[-3000:]}", flush=True)
            return
        done[f"{recipe}@{target}"] = json.loads(lines[-1])
        results.write_text(json.dumps(done, indent=1))
        print(f"{recipe}@{target}: {done[f'{recipe}@{target}']}", flush=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, todo))


def arm_label(params: dict[str, Any], cfg: dict[str, Any]) -> str:
    """A sweep trial's recipe in words, from the settings it ran with."""
    if params.get("method") == "magnitude":
        return f"sweep magnitude {params.get('importance', 'l1')} {params.get('scope', 'local')}"
    sparse = cfg["epochs"] - cfg["debias_epochs"]
    scaling = {"flops": ", FLOPs-scaled", "rms_flops": ", RMS- and FLOPs-scaled"}.get(
        params.get("lam_scaling"), ""
    )
    rewound = ", rewound" if params.get("rewind") else ""
    return f"sweep prox lambda {params.get('lam', 0):g}{scaling}, {sparse} sparse epochs at most{rewound}"


def sweep_rows(model: str, study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        a = trial.user_attrs
        cfg = a.get("config") or {}
        if a.get("flops") is None or a.get("test_top1_error") is None:
            continue
        target = cfg.get("flops_target")
        label = "dense baseline" if cfg.get("penalty") == "none" else arm_label(trial.params, cfg)
        rows.append(
            {
                "arm": label,
                "trial": trial.number,
                "target": target,
                "sweep": True,
                "flops_removed": 1 - a["flops"] / a["flops_full"],
                "params_removed": 1 - a["params"] / a["params_full"],
                "holdout_error": a["top1_error"],
                "test_error": a["test_top1_error"],
                "seconds": a.get("train_seconds"),
            }
        )
    return rows


def peer_rows(done: dict[str, dict]) -> list[dict[str, Any]]:
    return [
        {
            "arm": f"Torch-Pruning {r['recipe'].removeprefix('tp_').replace('_', ' ')}",
            "trial": None,
            "target": r["flops_target"],
            "sweep": False,
            "flops_removed": r["flops_removed"],
            "params_removed": r["params_removed"],
            "holdout_error": r["holdout_error"],
            "test_error": r["test_error"],
            "seconds": r.get("seconds"),
        }
        for r in done.values()
    ]


def difference_se(p1: float, p2: float, n: int = 10000) -> float:
    """Standard error (points) of the difference of two test errors (percent) on n images each."""
    a, b = p1 / 100, p2 / 100
    return 100 * math.sqrt(a * (1 - a) / n + b * (1 - b) / n)


def report(model: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"## {model}",
        "",
        "| FLOPs target | arm | trial | FLOPs removed | params removed | held-out % | test % | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    key = lambda r: (r["target"] or 0, not r["sweep"], r["arm"])  # noqa: E731
    for r in sorted(rows, key=key):
        target = "-" if r["target"] is None else f"{r['target']:.0%}"
        trial = "" if r["trial"] is None else r["trial"]
        lines.append(
            f"| {target} | {r['arm']} | {trial} | {r['flops_removed']:.1%} | {r['params_removed']:.1%} "
            f"| {r['holdout_error']:.2f} | {r['test_error']:.2f} | {r['seconds'] or 0:.0f} |"
        )
    lines.append("")
    for target in TARGETS:
        at = [r for r in rows if r["target"] == target]
        ours = [r for r in at if r["sweep"]]
        theirs = [r for r in at if not r["sweep"]]
        if not ours or not theirs:
            lines.append(f"- {target:.0%}: incomplete ({len(ours)} sweep arms, {len(theirs)} peer arms)")
            continue
        best = min(ours, key=lambda r: r["holdout_error"])  # chosen on held-out error, as a study picks
        verdicts = []
        for peer in theirs:
            gap = best["test_error"] - peer["test_error"]
            se = difference_se(best["test_error"], peer["test_error"])
            verdicts.append(f"{peer['arm']} {gap:+.2f} (SE {se:.2f}, {'within' if gap <= se else 'OUTSIDE'})")
        lines.append(
            f"- {target:.0%}: sweep's pick by held-out error is **{best['arm']}** (trial {best['trial']}, "
            f"{best['test_error']:.2f}% test); its test error minus each peer's: " + "; ".join(verdicts)
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--data-dir", default=os.environ.get("SWEEP_DATA_DIR", "../shared/data"))
    parser.add_argument("--scratch", default="/tmp/sweep-peers")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sections = []
    for model in args.models:
        started = time.perf_counter()
        study = run_study(model, args.data_dir, Path(args.scratch))
        storage = optuna.storages.RDBStorage(storage_url(model))
        checkpoint = baseline_checkpoint(study, storage)
        results = OUT / f"{model}.json"
        done = json.loads(results.read_text()) if results.exists() else {}
        if checkpoint is None:
            print(f"{model}: the study has no baseline checkpoint; peers skipped", flush=True)
        else:
            run_peers(model, checkpoint, args.data_dir, done, results)
        sections += report(model, sweep_rows(model, study) + peer_rows(done))
        print(f"{model}: {time.perf_counter() - started:.0f} s", flush=True)
    (ROOT / "results" / "peers.md").write_text(
        "\n".join(
            [
                "# sweep's arms against Torch-Pruning's recipes, from one baseline at equal epochs and FLOPs",
                "",
                "Made by `python bench/peers.py "
                + " ".join(args.models)
                + "`. Each arm fine-tunes the study's baseline "
                "for the same epochs with one cosine from the same lr; held-out and test errors from "
                "`sweep.measure.top1_error`; SE: binomial standard error of a difference on the 10,000 test images.",
                "",
                *sections,
            ]
        )
    )


if __name__ == "__main__":
    main()
