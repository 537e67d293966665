"""Trial checkpoints: a folder with ``checkpoint.pt``, written atomically, read with ``weights_only=True``.

The file holds only tensors and plain values (model and optimizer state, the trial config, the
architecture, epoch, the debias mask and the epoch's metrics), so loading it never unpickles code."""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sqlalchemy
import torch

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError, first_line
from sweep.models import ChainNet, recorded_model

FILENAME = "checkpoint.pt"


def arch_of(model: ChainNet) -> dict[str, Any]:
    return {"model": model.name, "num_classes": model.num_classes, "input_size": list(model.input_size)}


def build_from_arch(arch: dict[str, Any], widths: dict[str, int] | None = None) -> ChainNet:
    c, h, w = arch["input_size"]
    return models.create(
        arch["model"], num_classes=arch["num_classes"], in_channels=c, input_size=(h, w), widths=widths
    )


def save_checkpoint(
    folder: str | Path,
    model: ChainNet,
    config: TrialConfig,
    epoch: int,
    metrics: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    masks: dict[str, torch.Tensor] | None = None,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "arch": arch_of(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": config.to_dict(),
        "epoch": epoch,
        "masks": masks,
        "metrics": metrics,
    }
    path = folder / FILENAME
    tmp = folder / (FILENAME + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError of its writer
        tmp.unlink(missing_ok=True)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        if isinstance(err, RuntimeError) and shutil.disk_usage(folder).free < 2**20:
            first = "No space left on device"
        raise SweepError(f"cannot write the checkpoint to {path}: {first}") from None
    return path


@dataclass
class Checkpoint:
    path: Path
    model: ChainNet
    config: TrialConfig
    epoch: int
    metrics: dict[str, Any]
    payload: dict[str, Any]


def load_checkpoint(path: str | Path, *, expected: str | None = None, trust_code: bool = False) -> Checkpoint:
    """Load a checkpoint file, or the ``checkpoint.pt`` in a folder; a missing, truncated, tampered or
    foreign file raises SweepError naming it. The model it names is built only where
    ``sweep.models.trust`` allows: ``expected`` is the model the study recorded for the trial (the
    checkpoint must name the same one, in its architecture and its config)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise SweepError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise SweepError(f"checkpoint {path} is not a regular file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("arch"), dict):
            raise SweepError(f"checkpoint {path} is not a sweep checkpoint (no architecture record)")
        arch = payload["arch"]
        source = f"checkpoint {path}"
        arch = {
            **arch,
            "model": recorded_model(arch.get("model"), source, expected=expected, trust_code=trust_code),
        }
        config = TrialConfig.from_dict(payload["config"])
        if config.model != arch["model"]:
            raise SweepError(
                f"{source}: its config names model {config.model!r} but its architecture {arch['model']!r}"
            )
        model = build_from_arch(arch)
        model.load_state_dict(payload["model"])
        epoch = int(payload["epoch"])
        metrics = payload.get("metrics")
        if not isinstance(metrics, dict):
            raise SweepError(f"{source} is not a sweep checkpoint (its metrics are not a mapping)")
    except SweepError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, RuntimeError) as err:
        raise SweepError(
            f"checkpoint {path} is corrupt or not a sweep checkpoint ({first_line(err)[:160]})"
        ) from None
    except Exception as err:  # a hand-edited payload trips the rebuild in any number of ways: one line
        raise SweepError(
            f"checkpoint {path} is not a sweep checkpoint ({type(err).__name__}: {first_line(err)[:160]})"
        ) from None
    return Checkpoint(path, model.eval(), config, epoch, metrics, payload)


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
