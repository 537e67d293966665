"""The export's card: what a user checks about it (source, input, sizes, errors, latency), as
``card.json``, the summary printed, and the folder's README."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from sweep._version import __version__
from sweep.measure import latency_lines, measure, measure_latency, widths_text
from sweep.models import ChainNet, Net
from sweep.sparsity import factorised_ranks, layer_widths
from sweep.train.channels import method_text


def build_card(
    study: str,
    storage: str,
    row: Any,
    rows: list[Any],
    ckpt: Any,
    small: Net,
    dataset: str,
    info: Any,
    errors: dict[str, Any],
) -> dict[str, Any]:
    """Everything a user checks about the export: source, input, sizes, errors, latency."""
    from sweep.study import redact

    cfg, dense = ckpt.config, ckpt.model
    before, after = measure(dense, dense.input_size).as_dict(), measure(small, small.input_size).as_dict()
    latency = measure_latency(dense, small, dense.input_size)  # one thread, with the spread of the runs
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
            "preprocess": _preprocess_text(dataset, dense.input_size[1]),
        },
        "training": {
            "recipe": method_text(cfg),  # the penalty and lambda, or the pruning by importance
            "penalty": cfg.penalty,
            "lam": cfg.lam,
            "alpha": cfg.alpha if cfg.penalty == "sparse_group_lasso" else None,
            "layers": cfg.layers,
            "epochs": cfg.epochs,
            "debias_epochs": cfg.debias_epochs,
            "distill": cfg.distill or None,  # share of the loss matching the init network's outputs
            # as the trial resolved them ("auto" in a checkpoint written before they were recorded)
            "precision": cfg.precision,
            "device": cfg.device,
        },
        # the whole TrialConfig the trial ran with: `sweep train --config` takes it as it is
        "config": cfg.to_dict(),
        "widths": {
            "before": dense.widths(),
            "after": layer_widths(small) if isinstance(small, ChainNet) else small.widths(),
        },
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
        "latency_ms": latency,
        "versions": {"sweep": __version__, "torch": str(torch.__version__)},
    }


def _preprocess_text(dataset: str, side: int) -> str:
    scale = "pixels scaled to [0, 1], then (x - mean) / std per channel; NCHW float32"
    if dataset == "imagenet":
        return f"RGB, resize shorter side to {round(side * 256 / 224)}, centre crop {side}, {scale}"
    if dataset == "folder":  # sweep.data.folder: mean and std measured on the training images
        return (
            f"RGB (PIL convert), resized to {side}x{side} (PIL bilinear), {scale} (mean and std measured "
            "on the training images)"
        )
    return scale


def _ratio(before: float, after: float) -> dict[str, float]:
    return {"before": before, "after": after, "ratio": before / after if after else None}  # type: ignore[dict-item]


def _fmt(n: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.3g}{suffix}"
    return f"{n:.4g}"


def _widths_text(card: dict[str, Any]) -> str:
    ranks = {name: f" (rank {rank})" for name, rank in card["factorised"].items()}
    return widths_text(card["widths"]["before"], card["widths"]["after"], between=" -> ", notes=ranks)


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
    lines.extend(latency_lines(card["latency_ms"]))
    eq = card["equivalence"]
    lines.append(
        f"same function as the dense network on {eq['images']} test images (max logit difference "
        f"{eq['max_relative_logit_difference']:.2g} of their scale)"
    )
    return lines


def print_summary(card: dict[str, Any], target: Path, notes: list[str]) -> None:
    src, tr = card["source"], card["training"]
    print(
        f"exported trial {src['trial']} of study {src['study']!r} ({card['model']}, {_recipe(tr)}) to {target}"
    )
    for line in _summary_lines(card):
        print(f"  {line}")
    print(f"  files: {', '.join(card['files'])}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _recipe(training: dict[str, Any]) -> str:
    """The card's training recipe in words (a card written before it was recorded: penalty and lambda)."""
    return training.get("recipe") or f"penalty {training['penalty']}, lambda {training['lam']:g}"


def _load_line(model: str) -> str:
    """How to rebuild the export: by name for sweep's own networks; a network from outside sweep needs
    its factory handed over, since the folder's files never choose code to import."""
    if ":" not in model:
        return 'model = sweep.load_compact("this folder")       # architecture.json + model.safetensors, no pickle'
    fn = model.rpartition(":")[2]
    return (
        f"from your_module import {fn}                   # the function that built it: {model}\n"
        f'model = sweep.load_compact("this folder", model={fn})  # no pickle; nothing imported on the files\' say'
    )


def readme_text(card: dict[str, Any]) -> str:
    src, inp, tr = card["source"], card["input"], card["training"]
    classes = ", ".join(inp["classes"])
    bullet = "\n".join(f"- {line}" for line in _summary_lines(card))
    return f"""# {card["model"]}: compact network from trial {src["trial"]} of study `{src["study"]}`

Trained on {card["dataset"]} with {_recipe(tr)}, in {tr.get("precision", "fp32")}
on {tr.get("device", "an unrecorded device")}; the neurons training removed are physically gone. Checked on real test images to compute the same logits as the
trained network.

{bullet}

## Input

{inp["channels"]} x {inp["height"]} x {inp["width"]} images, {inp["preprocess"]}:
mean {inp["mean"]}, std {inp["std"]}. Output: {len(inp["classes"])} logits, classes {classes}.

## Loading

```python
import sweep
{_load_line(card["model"])}

import torch
model = torch.jit.load("this folder/model.ts")  # TorchScript, needs only torch
```

`model.onnx`, when present, takes `images` (batch x {inp["channels"]} x {inp["height"]} x {inp["width"]})
and returns `logits`. All numbers are in `card.json`.
"""
