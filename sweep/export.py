"""``sweep export``: turn a chosen trial into a physically smaller network and prove it is the same one.

The trial's checkpoint holds the dense network with its dead neurons at zero. Export removes them
(``sweep.compact``), checks on real test images that the compact network gives the dense one's logits,
measures its test error again, and writes ``model.safetensors`` + ``architecture.json`` (rebuilt by
``load_compact`` without unpickling anything), TorchScript, optionally ONNX, and a card with the numbers.
Everything is written into a temporary folder beside the target and renamed at the end, so a failed
export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sqlalchemy
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import sweep
from sweep import models
from sweep.checkpoint import load_checkpoint
from sweep.compact import (
    LowRankPair,
    check_equivalence,
    compact,
    factorised_ranks,
    latency_ms,
    layer_widths,
    logits_difference,
    low_rank_layers,
    machine_threads,
    network_cost,
    torch_threads,
)
from sweep.errors import SweepError
from sweep.models.base import ChainNet
from sweep.sparsity.groups import alive_masks

ARCH_FORMAT = "sweep-compact/1"
FORMATS = ("torchscript", "safetensors", "onnx")
EQUIVALENCE_IMAGES = 256
EQUIVALENCE_RTOL = 1e-5
EVAL_BATCH = 500  # what training evaluates with, so the re-measured error matches to the image
FINETUNE_LR_SCALE = 0.1  # of the trial's base learning rate
ONNX_CHECK_MAX_FLOPS = 1e9  # onnx's reference evaluator is numpy: fine for small networks only


# ------------------------------------------------------------------------------ files: write, load


def write_compact(folder: str | Path, model: ChainNet, extra: dict[str, Any] | None = None) -> None:
    """``model.safetensors`` (the state dict) and ``architecture.json`` (what rebuilds the modules)."""
    folder = Path(folder)
    c, h, w = model.input_size
    arch = {
        "format": ARCH_FORMAT,
        "model": model.name,
        "num_classes": model.num_classes,
        "input_size": [c, h, w],
        "widths": layer_widths(model),
        "factorised": factorised_ranks(model),
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "arch": ARCH_FORMAT})
    (folder / "architecture.json").write_text(json.dumps(arch, indent=2) + "\n")


def load_compact(folder: str | Path) -> ChainNet:
    """Rebuild an exported network from ``architecture.json`` + ``model.safetensors``; no pickle."""
    folder = Path(folder)
    arch_path, weights_path = folder / "architecture.json", folder / "model.safetensors"
    for path in (arch_path, weights_path):
        if not path.is_file():
            raise SweepError(
                f"{path} does not exist; an exported folder holds architecture.json and model.safetensors"
            )
    try:
        arch = json.loads(arch_path.read_text())
        if arch.get("format") != ARCH_FORMAT:
            raise SweepError(f"{arch_path}: format is {arch.get('format')!r}, expected {ARCH_FORMAT!r}")
        c, h, w = arch["input_size"]
        model = models.create(
            arch["model"],
            num_classes=int(arch["num_classes"]),
            in_channels=int(c),
            input_size=(int(h), int(w)),
            widths={k: int(v) for k, v in arch["widths"].items()},
        )
        for name, rank in arch.get("factorised", {}).items():
            setattr(model.body, name, LowRankPair.shell(model.layer(name), int(rank)))  # type: ignore[arg-type]
    except SweepError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise SweepError(
            f"{arch_path} is not a sweep architecture file ({type(err).__name__}: {err})"
        ) from None
    try:
        state = load_file(str(weights_path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise SweepError(f"{weights_path} does not hold this architecture's weights ({first})") from None
    return model.eval()


def save_torchscript(model: nn.Module, path: Path, example: torch.Tensor) -> None:
    with warnings.catch_warnings():
        # torch.jit is deprecated, but TorchScript is still what runs without sweep or Python code
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model.eval(), example)
        traced.save(str(path))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def save_onnx(model: nn.Module, path: Path, example: torch.Tensor) -> str | None:
    """Write ONNX with a dynamic batch axis, check it, and where the model is small enough for onnx's
    pure-Python reference evaluator, compare its logits; returns why it was skipped, or None."""
    try:
        import onnx
    except ImportError:
        return "onnx is not installed (pip install onnx): model.onnx skipped"
    # dynamo=False: the TorchScript-based exporter needs no onnxscript and works offline.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (example,),
                str(path),
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as err:  # any exporter failure only costs the optional file
        path.unlink(missing_ok=True)
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        return f"ONNX export failed ({first}): model.onnx skipped"
    if network_cost(model, example.shape[1:])["flops"] <= ONNX_CHECK_MAX_FLOPS:
        from onnx.reference import ReferenceEvaluator

        try:
            got = torch.from_numpy(ReferenceEvaluator(str(path)).run(None, {"images": example.numpy()})[0])
        except Exception as err:  # an operator the reference evaluator lacks: the file may still be fine
            return (
                f"model.onnx written but its logits not checked (reference evaluator: {type(err).__name__})"
            )
        with torch.no_grad():
            want = model(example)
        diff = float((got - want).abs().max())
        if diff > EQUIVALENCE_RTOL * max(float(want.abs().max()), 1e-12):
            raise SweepError(f"model.onnx gives other logits than the model written (difference {diff:.3g})")
    return None


# --------------------------------------------------------------------------------- measurements


def measure_error(model: nn.Module, split: Any, device: torch.device) -> float:
    from sweep.metrics import top1_error

    model.to(device)
    try:
        return top1_error(model, split.batches(EVAL_BATCH), device)[0]
    finally:
        model.to("cpu")


def finetune_model(model: nn.Module, splits: Any, cfg: Any, epochs: int, device: torch.device) -> None:
    """A short plain-SGD fine-tune of the compact network (no penalty: the dead units are gone)."""
    model.to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=FINETUNE_LR_SCALE * cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
    for epoch in range(epochs):
        for x, y in splits.train.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + 500 + epoch):
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.to("cpu").eval()


# ----------------------------------------------------------------------------- choosing the trial


def _numbers_text(numbers: list[int]) -> str:
    spans: list[str] = []
    for n in sorted(numbers):
        if spans and n == int(spans[-1].split("-")[-1]) + 1:
            spans[-1] = f"{spans[-1].split('-')[0]}-{n}"
        else:
            spans.append(str(n))
    return ", ".join(spans)


def choose_trial(
    rows: list[Any], study: str, trial: int | None, max_error: float | None, allow_early_stopped: bool
) -> Any:
    """The trial to export: by number, the smallest under ``max_error``, or the knee (default)."""
    from sweep.picks import pick, select_rows

    if not rows:
        raise SweepError(f"study {study!r} has no trials")
    if trial is None:
        candidates = select_rows(rows, include_early_stopped=allow_early_stopped)
        if not candidates:
            raise SweepError(f"study {study!r} has no complete trials to export")
        return pick(candidates, max_error=max_error, knee=max_error is None)
    row = next((r for r in rows if r.number == trial), None)
    if row is None:
        raise SweepError(
            f"study {study!r} has no trial {trial}; its trials are {_numbers_text([r.number for r in rows])}"
        )
    if row.state == "FAIL":
        reason = f" ({row.fail_reason})" if row.fail_reason else ""
        raise SweepError(f"trial {trial} failed{reason}: it has no trained network to export")
    if row.early_stopped and not allow_early_stopped:
        raise SweepError(
            f"trial {trial} was stopped early, so it is not fully trained; pass --allow-early-stopped "
            "to export it anyway"
        )
    if row.state not in ("COMPLETE", "PRUNED"):
        raise SweepError(f"trial {trial} is {row.state}, not finished: nothing to export yet")
    return row


def checkpoint_path(uri: str, storage: str) -> Path:
    """A local path for the trial's recorded checkpoint (a path or a ``file://`` URI). A relative path
    is taken from the working directory, then from the SQLite database's folder."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise SweepError(
            f"checkpoint {uri} is not on this machine; copy it here and export from a local path"
        )
    path = Path(uri).expanduser()
    if path.is_absolute() or path.exists():
        return path
    try:
        url = sqlalchemy.engine.make_url(storage)
        if url.get_backend_name() == "sqlite" and url.database:
            beside = Path(url.database).expanduser().resolve().parent / path
            if beside.exists():
                return beside
    except Exception:
        pass
    return path


# ------------------------------------------------------------------------------------ the command


def _parse_formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise SweepError(f"--format must be a comma-separated list of {', '.join(FORMATS)}, got {text!r}")
    return chosen


def _preprocess_text(dataset: str) -> str:
    scale = "pixels scaled to [0, 1], then (x - mean) / std per channel; NCHW float32"
    if dataset == "imagenet":
        return f"RGB, resize shorter side to 256, centre crop 224, {scale}"
    return scale


def export_command(
    study: str,
    storage: str | None,
    trial: int | None,
    max_error: float | None,
    knee: bool,
    out: str | None,
    format: str,
    finetune: int,
    force: bool,
    allow_early_stopped: bool,
    data_dir: str | None,
) -> int:
    """``sweep export STUDY``: write the chosen trial as a compact network; see the module docstring."""
    from sweep import data
    from sweep.picks import all_rows, close_study, default_storage, load_study_readonly

    formats = _parse_formats(format)
    if finetune < 0:
        raise SweepError(f"--finetune must be 0 or more epochs, got {finetune}")
    storage = storage or default_storage()
    opened = load_study_readonly(study, storage)
    try:
        rows = all_rows(opened)
    finally:
        close_study(opened)
    row = choose_trial(rows, study, trial, max_error, allow_early_stopped)
    target = Path(out) if out else Path("export") / f"{study.replace(os.sep, '_')}-trial{row.number}"
    if target.exists() and not force:
        raise SweepError(f"output folder {target} already exists; pass --force to replace it")
    if not row.checkpoint:
        raise SweepError(f"trial {row.number} recorded no checkpoint: there is nothing to export")
    ckpt = load_checkpoint(checkpoint_path(str(row.checkpoint), storage))
    cfg, dense = ckpt.config, ckpt.model.eval()
    masks = alive_masks(dense)
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty:
        raise SweepError(f"trial {row.number}: layer {empty[0]} has no alive neurons: the network is empty")
    small = compact(dense, masks, low_rank=low_rank_layers(cfg, dense))

    dataset = cfg.dataset or row.dataset or models.default_dataset(cfg.model)
    splits = data.load(
        dataset, data_dir=data_dir or cfg.data_dir, subset=cfg.subset, holdout=cfg.holdout, seed=cfg.seed
    )
    probe = torch.cat([x for x, _ in _first_images(splits.test, EQUIVALENCE_IMAGES)])
    rel_diff = check_equivalence(dense, small, probe, rtol=EQUIVALENCE_RTOL)
    errors = _errors(small, row, splits, cfg, finetune)

    card = _card(study, storage, row, rows, ckpt, small, dataset, splits.info, errors)
    card["equivalence"] = {
        "images": int(probe.shape[0]),
        "max_relative_logit_difference": rel_diff,
        "rtol": EQUIVALENCE_RTOL,
    }
    notes = _write_all(target, force, small, card, formats, probe)
    _print_summary(card, target, notes)
    return 0


def _errors(small: ChainNet, row: Any, splits: Any, cfg: Any, finetune: int) -> dict[str, Any]:
    """Test error of the compact network, checked against the trial's record, and the fine-tune's."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    error = measure_error(small, splits.test, device)
    recorded = row.test_top1_error
    one_image = 100.0 / max(len(splits.test), 1)
    if recorded is not None and abs(error - recorded) > one_image + 1e-9:
        raise SweepError(
            f"trial {row.number}: the test error measured again is {error:.2f}% but the trial recorded "
            f"{recorded:.2f}% on {len(splits.test)} test images; the checkpoint or the data is not what the "
            "trial used"
        )
    tuned: dict[str, Any] | None = None
    if finetune:
        holdout_before = measure_error(small, splits.holdout, device)
        finetune_model(small, splits, cfg, finetune, device)
        tuned = {
            "epochs": finetune,
            "lr": FINETUNE_LR_SCALE * cfg.lr,
            "test_top1_error_before": error,
            "test_top1_error_after": measure_error(small, splits.test, device),
            "holdout_top1_error_before": holdout_before,
            "holdout_top1_error_after": measure_error(small, splits.holdout, device),
        }
    return {
        "test": error,
        "test_recorded": recorded,
        "test_images": len(splits.test),
        "holdout_recorded": row.top1_error,
        "finetune": tuned,
    }


def _card(
    study: str,
    storage: str,
    row: Any,
    rows: list[Any],
    ckpt: Any,
    small: ChainNet,
    dataset: str,
    info: Any,
    errors: dict[str, Any],
) -> dict[str, Any]:
    """Everything a user checks about the export: source, input, sizes, errors, latency."""
    from sweep.picks import redact

    cfg, dense = ckpt.config, ckpt.model
    before, after = network_cost(dense, dense.input_size), network_cost(small, small.input_size)
    threads = machine_threads()
    with torch_threads(threads):
        lat = {b: latency_ms({"dense": dense, "compact": small}, dense.input_size, b) for b in (1, 64)}
    baselines = [r for r in rows if r.is_baseline and r.state == "COMPLETE" and not r.early_stopped]
    baseline = min(baselines, key=lambda r: r.value("top1_error")) if baselines else None
    return {
        "source": {
            "study": study,
            "storage": redact(storage),
            "trial": row.number,
            "trial_state": row.state,
            "early_stopped": row.early_stopped,
            "checkpoint": str(ckpt.path.resolve()),
            "checkpoint_epoch": ckpt.epoch,
        },
        "model": dense.name,
        "dataset": dataset,
        "input": {
            "channels": info.in_channels,
            "height": dense.input_size[1],
            "width": dense.input_size[2],
            "mean": list(info.mean),
            "std": list(info.std),
            "classes": list(info.classes),
            "preprocess": _preprocess_text(dataset),
        },
        "training": {
            "penalty": cfg.penalty,
            "lam": cfg.lam,
            "alpha": cfg.alpha if cfg.penalty == "sparse_group_lasso" else None,
            "layers": cfg.layers,
            "epochs": cfg.epochs,
            "debias_epochs": cfg.debias_epochs,
        },
        "widths": {"before": dense.widths(), "after": layer_widths(small)},
        "factorised": factorised_ranks(small),
        **{key: _ratio(before[key], after[key]) for key in ("params", "flops", "memory_mb")},
        "top1_error": errors,
        "baseline": None
        if baseline is None
        else {
            "trial": baseline.number,
            "top1_error": baseline.top1_error,
            "test_top1_error": baseline.test_top1_error,
        },
        "latency_ms": {
            "device": "cpu",
            "threads": threads,
            **{
                f"batch{b}": {
                    "dense": t["dense"],
                    "compact": t["compact"],
                    "speedup": t["dense"] / t["compact"],
                }
                for b, t in lat.items()
            },
        },
        "versions": {"sweep": sweep.__version__, "torch": str(torch.__version__)},
    }


def _first_images(split: Any, n: int):
    taken = 0
    for x, y in split.batches(min(n, EVAL_BATCH)):
        yield x[: n - taken], y[: n - taken]
        taken += min(len(y), n - taken)
        if taken >= n:
            return


def _ratio(before: float, after: float) -> dict[str, float]:
    return {"before": before, "after": after, "ratio": before / after if after else None}  # type: ignore[dict-item]


def _write_all(
    target: Path, force: bool, model: ChainNet, card: dict[str, Any], formats: list[str], probe: torch.Tensor
) -> list[str]:
    """Write every file into a temporary folder beside ``target``, verify them, then rename it into place."""
    parent_existed = target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    notes: list[str] = []
    try:
        example = probe[:2]
        info = card["input"]
        extra = {"input": {k: info[k] for k in ("mean", "std", "classes", "preprocess")}}
        write_compact(tmp, model, extra)
        _verify(load_compact(tmp), model, probe, "model.safetensors")
        if "torchscript" in formats:
            save_torchscript(model, tmp / "model.ts", example)
            _verify(load_torchscript(tmp / "model.ts"), model, probe, "model.ts")
        if "onnx" in formats:
            skipped = save_onnx(model, tmp / "model.onnx", example)
            if skipped:
                notes.append(skipped)
        card["files"] = sorted([*(p.name for p in tmp.iterdir()), "card.json", "README.md"])
        card["notes"] = notes
        (tmp / "card.json").write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
        (tmp / "README.md").write_text(_readme(card))
        for path in tmp.iterdir():  # mkdtemp and some writers make owner-only files
            path.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if target.exists():
            if not force:
                raise SweepError(f"output folder {target} already exists; pass --force to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not parent_existed:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return notes


def _verify(loaded: nn.Module, model: nn.Module, probe: torch.Tensor, what: str) -> None:
    diff, rel = logits_difference(model, loaded, probe)
    if not rel <= EQUIVALENCE_RTOL:
        raise SweepError(
            f"{what} read back gives other logits than the model written (difference {diff:.3g})"
        )


def _fmt(n: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.3g}{suffix}"
    return f"{n:.4g}"


def _widths_text(card: dict[str, Any]) -> str:
    before, after, ranks = card["widths"]["before"], card["widths"]["after"], card["factorised"]
    parts = []
    for name, width in before.items():
        rank = f" (rank {ranks[name]})" if name in ranks else ""
        parts.append(f"{name} {width} -> {after[name]}{rank}")
    return ", ".join(parts)


def _summary_lines(card: dict[str, Any]) -> list[str]:
    p, f, m, err = card["params"], card["flops"], card["memory_mb"], card["top1_error"]
    rec = "not recorded" if err["test_recorded"] is None else f"{err['test_recorded']:.2f}%"
    lines = [
        f"widths: {_widths_text(card)}",
        f"parameters {p['before']:,} -> {p['after']:,} ({p['ratio']:.2f}x fewer); FLOPs per image "
        f"{_fmt(f['before'])} -> {_fmt(f['after'])} ({f['ratio']:.2f}x fewer); weights {m['before']:.3f} -> "
        f"{m['after']:.3f} MiB",
        f"test top-1 error {err['test']:.2f}% on {err['test_images']} images (trial recorded {rec})",
    ]
    if err["finetune"]:
        t = err["finetune"]
        lines.append(
            f"fine-tuned {t['epochs']} epoch(s): test error {t['test_top1_error_before']:.2f}% -> "
            f"{t['test_top1_error_after']:.2f}%"
        )
    if card["baseline"]:
        b = card["baseline"]
        test = "" if b["test_top1_error"] is None else f", test {b['test_top1_error']:.2f}%"
        lines.append(f"unconstrained baseline: trial {b['trial']}, held-out {b['top1_error']:.2f}%{test}")
    lat = card["latency_ms"]
    for key in ("batch1", "batch64"):
        t = lat[key]
        lines.append(
            f"CPU latency {key.replace('batch', 'batch ')} ({lat['threads']} threads): {t['dense']:.3f} -> "
            f"{t['compact']:.3f} ms (speed-up {t['speedup']:.2f}x)"
        )
    eq = card["equivalence"]
    lines.append(
        f"same function as the dense network on {eq['images']} test images (max logit difference "
        f"{eq['max_relative_logit_difference']:.2g} of their scale)"
    )
    return lines


def _print_summary(card: dict[str, Any], target: Path, notes: list[str]) -> None:
    src, tr = card["source"], card["training"]
    print(
        f"exported trial {src['trial']} of study {src['study']!r} ({card['model']}, penalty {tr['penalty']}, "
        f"lambda {tr['lam']:g}) to {target}"
    )
    for line in _summary_lines(card):
        print(f"  {line}")
    print(f"  files: {', '.join(card['files'])}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _readme(card: dict[str, Any]) -> str:
    src, inp, tr = card["source"], card["input"], card["training"]
    classes = ", ".join(inp["classes"])
    bullet = "\n".join(f"- {line}" for line in _summary_lines(card))
    return f"""# {card["model"]}: compact network from trial {src["trial"]} of study `{src["study"]}`

Trained on {card["dataset"]} with penalty `{tr["penalty"]}` (lambda {tr["lam"]:g}); the neurons the
penalty removed are physically gone. Checked on real test images to compute the same logits as the
trained network.

{bullet}

## Input

{inp["channels"]} x {inp["height"]} x {inp["width"]} images, {inp["preprocess"]}:
mean {inp["mean"]}, std {inp["std"]}. Output: {len(inp["classes"])} logits, classes {classes}.

## Loading

```python
import sweep
model = sweep.load_compact("this folder")       # architecture.json + model.safetensors, no pickle

import torch
model = torch.jit.load("this folder/model.ts")  # TorchScript, needs only torch
```

`model.onnx`, when present, takes `images` (batch x {inp["channels"]} x {inp["height"]} x {inp["width"]})
and returns `logits`. All numbers are in `card.json`.
"""
