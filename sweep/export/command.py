"""``sweep export``: turn a chosen trial into a physically smaller network and prove it is the same one.

The trial's checkpoint holds the dense network with its dead neurons at zero. Export removes them
(``sweep.sparsity.compact``), checks on real test images that the compact network gives the dense one's logits,
measures its test error again, and writes the folder (``sweep.export.folder``) with a card.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from sweep import models
from sweep.errors import SweepError
from sweep.export.card import build_card, print_summary
from sweep.export.folder import check_target, write_export_folder
from sweep.export.formats import EQUIVALENCE_RTOL, FORMATS
from sweep.measure import EVAL_BATCH, measure_error
from sweep.models import ChainNet, Net
from sweep.sparsity import alive_masks, check_equivalence, compact_network, low_rank_layers
from sweep.train import checkpoint_path, finetune_network, load_checkpoint

EQUIVALENCE_IMAGES = 256


class NothingCompact(SweepError):
    """No trial that removes anything lies within --max-increase of the baseline: not bad input (exit 1)."""


def export_command(
    study: str,
    storage: str | None,
    trial: int | None,
    max_error: float | None,
    knee: bool,
    max_increase: float | None,
    out: str | None,
    format: str,
    finetune: int,
    force: bool,
    allow_early_stopped: bool,
    data_dir: str | None,
) -> int:
    """``sweep export STUDY``: write the chosen trial as a compact network; see the module docstring."""
    from sweep.data import datasets as data
    from sweep.select import all_rows
    from sweep.study import close_study, default_storage, load_study_readonly

    formats = _parse_formats(format)
    if finetune < 0:
        raise SweepError(f"--finetune must be 0 or more epochs, got {finetune}")
    storage = storage or default_storage()
    opened = load_study_readonly(study, storage)
    try:
        rows = all_rows(opened)
    finally:
        close_study(opened)
    try:
        row = choose_trial(rows, study, trial, max_error, allow_early_stopped, knee, max_increase)
    except NothingCompact as err:  # one line, nothing written; --trial names a network anyway
        print(f"sweep: export: {err}", file=sys.stderr)
        return 1
    target = Path(out) if out else Path("export") / f"{study.replace(os.sep, '_')}-trial{row.number}"
    check_target(target, force)
    if not row.checkpoint:
        raise SweepError(f"trial {row.number} recorded no checkpoint: there is nothing to export")
    # the study's recorded config came from the command line that ran it; the checkpoint file is data
    # and must name the same model (sweep.models.trust)
    recorded = row.model if isinstance(row.model, str) else None
    ckpt = load_checkpoint(checkpoint_path(str(row.checkpoint), storage), expected=recorded)
    cfg, dense = ckpt.config, ckpt.model.eval()
    masks = alive_masks(dense)
    empty = [name for name, mask in masks.items() if not mask.any()]
    if empty:
        raise SweepError(f"trial {row.number}: layer {empty[0]} has no alive neurons: the network is empty")
    low_rank = low_rank_layers(cfg, dense) if isinstance(dense, ChainNet) else []
    small = compact_network(dense, masks, low_rank=low_rank)

    dataset = cfg.dataset or row.dataset or models.default_dataset(cfg.model)
    splits = data.load(
        dataset,
        data_dir=data_dir or cfg.data_dir,
        subset=cfg.subset,
        holdout=cfg.holdout,
        seed=cfg.seed,
        input_size=cfg.input_size,
    )
    probe = torch.cat([x for x, _ in _first_images(splits.test, EQUIVALENCE_IMAGES)])
    rel_diff = check_equivalence(dense, small, probe, rtol=EQUIVALENCE_RTOL)
    errors = _errors(small, row, splits, cfg, finetune)

    card = build_card(study, storage, row, rows, ckpt, small, dataset, splits.info, errors)
    card["equivalence"] = {
        "images": int(probe.shape[0]),
        "max_relative_logit_difference": rel_diff,
        "rtol": EQUIVALENCE_RTOL,
    }
    notes = write_export_folder(target, force, small, card, formats, probe)
    print_summary(card, target, notes)
    return 0


def _parse_formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise SweepError(f"--format must be a comma-separated list of {', '.join(FORMATS)}, got {text!r}")
    return chosen


def _errors(small: Net, row: Any, splits: Any, cfg: Any, epochs: int) -> dict[str, Any]:
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
    if epochs:
        holdout_before = measure_error(small, splits.holdout, device)
        tuned = {
            **finetune_network(small, splits, cfg, epochs, device),
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


def _first_images(split: Any, n: int):
    taken = 0
    for x, y in split.batches(min(n, EVAL_BATCH)):
        yield x[: n - taken], y[: n - taken]
        taken += min(len(y), n - taken)
        if taken >= n:
            return


def _numbers_text(numbers: list[int]) -> str:
    spans: list[str] = []
    for n in sorted(numbers):
        if spans and n == int(spans[-1].split("-")[-1]) + 1:
            spans[-1] = f"{spans[-1].split('-')[0]}-{n}"
        else:
            spans.append(str(n))
    return ", ".join(spans)


def choose_trial(
    rows: list[Any],
    study: str,
    trial: int | None,
    max_error: float | None,
    allow_early_stopped: bool,
    knee: bool = False,
    max_increase: float | None = None,
) -> Any:
    """The trial to export: by number, the smallest under ``max_error``, the knee, or (the default) the
    smallest network that removes something within ``max_increase`` points (default
    ``DEFAULT_MAX_INCREASE``) of the study's baseline (``sweep.select.default_pick``); NothingCompact when
    no such trial exists."""
    from sweep.select import default_pick, pick, select_rows

    if not rows:
        raise SweepError(f"study {study!r} has no trials")
    if max_increase is not None and not (math.isfinite(max_increase) and max_increase >= 0):
        raise SweepError(f"--max-increase must be a number of points >= 0, got {max_increase:g}")
    if trial is not None:
        return _numbered_trial(rows, study, trial, allow_early_stopped)
    candidates = select_rows(rows, include_early_stopped=allow_early_stopped)
    if not candidates:
        raise SweepError(f"study {study!r} has no complete trials to export")
    if max_error is not None or knee:
        return pick(candidates, max_error=max_error, knee=max_error is None)
    chosen = default_pick(rows, max_increase, allow_early_stopped)
    if chosen.baseline is None:
        raise SweepError(
            f"study {study!r} has no complete baseline trial (penalty none) to measure --max-increase "
            "against; pick with --max-error, --knee or --trial"
        )
    if chosen.chosen is None:
        raise NothingCompact(f"{chosen.reason}: name a trial with --trial, or allow more with --max-increase")
    print(f"export: {chosen.describe()}")
    return chosen.chosen


def _numbered_trial(rows: list[Any], study: str, trial: int, allow_early_stopped: bool) -> Any:
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
