"""The export folder: written whole beside its target, verified, renamed into place; and the rule for
what may be replaced (only an earlier export, never a folder holding anything ``sweep`` did not write)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from sweep.errors import SweepError
from sweep.export.card import readme_text
from sweep.export.formats import (
    EQUIVALENCE_RTOL,
    load_compact,
    load_torchscript,
    save_onnx,
    save_torchscript,
    write_compact,
)
from sweep.models import Net
from sweep.sparsity import logits_difference

# Every file an export folder may hold: --force replaces a folder only if it holds nothing else.
EXPORT_FILES = frozenset(
    {"model.safetensors", "architecture.json", "model.ts", "model.onnx", "card.json", "README.md"}
)


def check_target(target: Path, force: bool) -> None:
    """Refuse an output path whose contents ``sweep`` did not write: only an earlier export is replaced.

    A missing path or an empty folder is fine. A file, a link, the working directory or one of its
    ancestors, or a folder holding anything besides an export's own files is never deleted, --force or not.
    """
    shown = str(target)
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        raise SweepError(f"--out {shown} is the working directory or above it: give a new or empty folder")
    if not os.path.lexists(target):
        parent = next(p for p in Path(os.path.abspath(target)).parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise SweepError(f"--out {shown}: {parent} is not a folder this user can write; give another")
        return
    if _is_empty_folder(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise SweepError(f"--out {shown} is a file or a link, not a folder: give a new or empty folder")
    entries = sorted(target.iterdir())
    foreign = [p.name for p in entries if p.name not in EXPORT_FILES or not p.is_file() or p.is_symlink()]
    if foreign or not _is_export_card(target / "card.json"):
        what = f"holds {foreign[0]!r}" if foreign else "has no export card.json"
        raise SweepError(
            f"--out {shown} exists and is not an earlier export (it {what}); sweep replaces only "
            f"its own exports, even with --force: give a new or empty folder"
        )
    if not force:
        raise SweepError(f"output folder {shown} already exists; pass --force to replace it")


def _is_export_card(path: Path) -> bool:
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(card, dict) and "source" in card and "files" in card


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to ``folder`` that does not exist yet (what a failure removes)."""
    missing = None
    while not folder.exists() and folder != folder.parent:
        missing, folder = folder, folder.parent
    return missing


def write_export_folder(
    target: Path, force: bool, model: Net, card: dict[str, Any], formats: list[str], probe: torch.Tensor
) -> list[str]:
    """Write every file into a temporary folder beside ``target``, verify them, then rename it into place.
    Interrupted (Ctrl-C, or SIGTERM, which raises KeyboardInterrupt meanwhile), it leaves no hidden folder
    behind, and an earlier export it was replacing stays where it was."""
    with _sigterm_interrupts():
        return _write_export_folder(target, force, model, card, formats, probe)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) meanwhile, so that the cleanup runs; by default
    it ends the process on the spot. Signal handlers belong to the main thread: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while folders are renamed or cleaned up: noted, then raised as
    KeyboardInterrupt once that is done, never halfway through it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    before = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if got:
            raise KeyboardInterrupt


def _write_export_folder(
    target: Path, force: bool, model: Net, card: dict[str, Any], formats: list[str], probe: torch.Tensor
) -> list[str]:
    target = Path(os.path.abspath(target))
    created = _first_missing(target.parent)
    umask = os.umask(0)
    os.umask(umask)
    notes: list[str] = []
    tmp: Path | None = None  # the new export, until it is renamed into place
    old: Path | None = None  # where an earlier export waits while the new one takes its place
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        example = probe[:2]
        info = card["input"]
        extra = {"input": {k: info[k] for k in ("mean", "std", "classes", "preprocess")}}
        write_compact(tmp, model, extra)
        _verify(load_compact(tmp, expected=model.name), model, probe, "model.safetensors")
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
        (tmp / "README.md").write_text(readme_text(card))
        for path in tmp.iterdir():  # mkdtemp and some writers make owner-only files
            path.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if _is_empty_folder(target):
            target.rmdir()
        if os.path.lexists(target):
            check_target(target, force)  # again: the folder may have changed during the export
        with _signals_held():
            if os.path.lexists(target):
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, old / target.name)
            os.replace(tmp, target)
            tmp = created = None  # in place: from here on there is nothing to take back
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
                old = None
    except BaseException as err:
        with _signals_held():
            if old is not None and os.path.lexists(old / target.name) and not os.path.lexists(target):
                try:
                    os.replace(old / target.name, target)  # the earlier export back in its place
                except OSError:
                    old = None  # then it stays where it is rather than be lost
            for leftover in (old, tmp, created):
                if leftover is not None:
                    shutil.rmtree(leftover, ignore_errors=True)
        if isinstance(err, OSError | RuntimeError | SafetensorError):  # a full disk, as each writer says it
            lines = str(getattr(err, "strerror", None) or err).strip().splitlines()
            first = lines[0] if lines else type(err).__name__
            raise SweepError(f"cannot write the export to {target}: {first[:300]}") from None
        raise
    return notes


def _verify(loaded: nn.Module, model: nn.Module, probe: torch.Tensor, what: str) -> None:
    diff, rel = logits_difference(model, loaded, probe)
    if not rel <= EQUIVALENCE_RTOL:
        raise SweepError(
            f"{what} read back gives other logits than the model written (difference {diff:.3g})"
        )
