"""The files of an export: ``model.safetensors`` + ``architecture.json`` (rebuilt by ``load_compact``
without unpickling anything), TorchScript and ONNX."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sweep import models
from sweep.errors import SweepError, first_line
from sweep.measure import measure
from sweep.models import ChainNet, Factory, Net, recorded_model
from sweep.sparsity import LowRankPair, factorised_ranks, layer_widths
from sweep.structure import Removal

ARCH_FORMAT = "sweep-compact/1"
FORMATS = ("torchscript", "safetensors", "onnx")
EQUIVALENCE_RTOL = 1e-5
ONNX_CHECK_MAX_FLOPS = 1e9  # onnx's reference evaluator is numpy: fine for small networks only


def write_compact(folder: str | Path, model: Net, extra: dict[str, Any] | None = None) -> None:
    """``model.safetensors`` (the state dict) and ``architecture.json`` (what rebuilds the modules: a
    chain's widths, or for any other network the record of the channels removed from its dense form)."""
    folder = Path(folder)
    c, h, w = model.input_size
    shape: dict[str, Any] = (
        {"widths": layer_widths(model), "factorised": factorised_ranks(model)}
        if isinstance(model, ChainNet)
        else {"widths": model.widths(), "removal": model.removal or Removal().to_dict()}
    )
    arch = {
        "format": ARCH_FORMAT,
        "model": model.name,
        "num_classes": model.num_classes,
        "input_size": [c, h, w],
        **shape,
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", "arch": ARCH_FORMAT})
    (folder / "architecture.json").write_text(json.dumps(arch, indent=2) + "\n")


def load_compact(
    folder: str | Path, *, model: Factory | None = None, trust_code: bool = False, expected: str | None = None
) -> Net:
    """Rebuild an exported network from ``architecture.json`` + ``model.safetensors``; no pickle, and no
    import of what the files name: a network from outside sweep's registry needs ``model`` (its factory)
    or ``trust_code=True`` (``sweep.models.trust``). ``expected``: the model the caller knows it must be."""
    folder = Path(folder)
    arch_path, weights_path = folder / "architecture.json", folder / "model.safetensors"
    for path in (arch_path, weights_path):
        if not path.is_file():
            raise SweepError(
                f"{path} does not exist; an exported folder holds architecture.json and model.safetensors"
            )
    try:
        arch = json.loads(arch_path.read_text())
        if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT:
            found = arch.get("format") if isinstance(arch, dict) else type(arch).__name__
            raise SweepError(f"{arch_path}: format is {found!r}, expected {ARCH_FORMAT!r}")
        name = recorded_model(
            arch.get("model"), str(arch_path), expected=expected, factory=model, trust_code=trust_code
        )
        c, h, w = arch["input_size"]
        size = {
            "num_classes": int(arch["num_classes"]),
            "in_channels": int(c),
            "input_size": (int(h), int(w)),
        }
        if "removal" in arch:  # not a chain: the dense network, then the recorded removal replayed
            net = models.create(name, **size).replay_(arch["removal"])
        else:
            net = models.create(name, widths={k: int(v) for k, v in arch["widths"].items()}, **size)
        for layer, rank in arch.get("factorised", {}).items():
            setattr(net.body, layer, LowRankPair.shell(net.layer(layer), int(rank)))  # type: ignore[arg-type]
    except SweepError:
        raise
    except Exception as err:  # whatever a hand-edited record makes the rebuild trip over: one line
        raise SweepError(
            f"{arch_path} is not a sweep architecture file ({type(err).__name__}: {first_line(err)})"
        ) from None
    try:
        state = load_file(str(weights_path))
        net.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise SweepError(f"{weights_path} does not hold this architecture's weights ({first})") from None
    return net.eval()


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
    if measure(model, example.shape[1:]).flops <= ONNX_CHECK_MAX_FLOPS:
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
