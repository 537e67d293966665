"""``sweep train --from STUDY:TRIAL`` and ``sweep train --config FILE.json``: one trial's whole config.

A study's trial records the ``TrialConfig`` it ran with (its ``config`` attribute); a config file holds
the same dict. Either is taken whole, so every setting (``debias_restart``, ``momentum``, ``weight_decay``,
``random_flip``, ``holdout``, ``layer_scales``, ...) is what the run uses; options given on the command
line beside it replace single settings, and the start line names them.

Trust (``sweep.models.trust``): a study's recorded config came from the command line that ran the study,
so the model it names is built as export builds it; a config file is data, so a model from outside sweep
that it names (``pkg.mod:fn``, ``file.py:fn``) is built only when the command line names the same one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sweep import models
from sweep.config import TrialConfig
from sweep.errors import SweepError, quote
from sweep.models.trust import is_installed
from sweep.train.checkpoint import checkpoint_path


def split_reference(text: str) -> tuple[str, int]:
    """``STUDY:TRIAL`` as (study, trial number); the study name may itself hold colons."""
    study, sep, number = text.rpartition(":")
    if not sep or not study or not number.strip().lstrip("-").isdigit():
        raise SweepError(
            f"--from must be STUDY:TRIAL (a study name, a colon, a trial number), got {quote(text)}"
        )
    trial = int(number)
    if trial < 0:
        raise SweepError(f"--from: the trial number must be 0 or more, got {trial}")
    return study, trial


def study_config(reference: str, storage: str | None) -> tuple[dict[str, Any], str]:
    """The ``config`` a study's trial recorded, and where it came from, in words."""
    from sweep.study import (
        close_study,
        default_storage,
        is_baseline,
        kept_baseline,
        load_study_readonly,
        redact,
        with_lock_retries,
    )

    study, number = split_reference(reference)
    opened = load_study_readonly(study, storage)
    try:
        trials = with_lock_retries(lambda: opened.get_trials(deepcopy=False))
        url = redact(storage) if storage else None
        database = storage or default_storage()
        kept = kept_baseline(opened, database)
    finally:
        close_study(opened)
    trial = next((t for t in trials if t.number == number), None)
    if trial is None:
        have = ", ".join(str(t.number) for t in sorted(trials, key=lambda t: t.number)[:50]) or "none"
        raise SweepError(f"study {quote(study)} has no trial {number}; its trials: {have}")
    config = trial.user_attrs.get("config")
    if not isinstance(config, dict) or not config:
        raise SweepError(
            f"trial {number} of study {quote(study)} recorded no training config: it cannot be re-run"
        )
    config = dict(config)
    where = f"trial {number} of study {quote(study)}" + (f" in {url}" if url else "")
    baseline = next((t.user_attrs.get("checkpoint") for t in trials if is_baseline(t)), None)
    init = config.get("init")
    if kept is not None and isinstance(init, str) and isinstance(baseline, str):
        start = checkpoint_path(init, database)
        # Ray's copy, or the kept one from another folder, is gone: the study's own copy is beside it
        same = start == checkpoint_path(baseline, database) or start.name == kept.name
        if same and not start.exists():
            config["init"] = str(kept)
            where += f", from the baseline checkpoint kept with the study ({kept})"
    return config, where


def file_config(path: str) -> tuple[dict[str, Any], str]:
    """The TrialConfig dict a JSON file holds."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SweepError(f"--config {path}: cannot read it ({err})") from None
    try:
        values = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise SweepError(f"--config {path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(values, dict) or not values:
        raise SweepError(f"--config {path}: must hold one JSON object of trial settings, got {quote(values)}")
    return values, f"{file.name}"


def _no_constant(name: str) -> float:
    raise SweepError(f"a trial setting may not be {name}: give a finite number")


def recorded_trial_config(
    reference: str | None,
    config_file: str | None,
    storage: str | None,
    model: str | None,
    given: dict[str, Any],
) -> tuple[TrialConfig, str]:
    """The whole config of a study's trial (``reference``, STUDY:TRIAL) or of ``config_file``, with the
    command line's options (``given``; None: not given) over single settings. Checked as a whole before
    any data is read; returns it and the start line's "settings from ..." words."""
    if reference is not None and config_file is not None:
        raise SweepError("give --from or --config, not both")
    if reference is not None:
        values, where = study_config(reference, storage)
        trusted = values.get("model")  # the study's command line chose it
    else:
        assert config_file is not None
        values, where = file_config(config_file)
        trusted = None
    if model is not None:
        model = models.check(model)  # the command line's model, its file made absolute
        if model != values.get("model"):
            given = {**given, "model": model}
        trusted = model
    if "model" not in values and model is None:
        raise SweepError(f"{where} names no model; add one: sweep train MODEL --config FILE")
    named = given.get("model", values.get("model"))
    if not isinstance(named, str) or not named:
        raise SweepError(f"{where}: the model must be a model name, got {quote(named)}")
    if not is_installed(named) and named != trusted:
        raise SweepError(
            f"{where} names model {quote(named, 300)}, code from outside sweep: a file never chooses code "
            "to import; name the same model on the command line (sweep train MODEL --config FILE) if you "
            "trust it"
        )
    overridden = sorted(k for k, v in given.items() if v is not None and values.get(k, _MISSING) != v)
    cfg = TrialConfig.from_dict({**values, **{k: v for k, v in given.items() if v is not None}})
    _check_numbers(cfg)
    source = where + (f" + the command line ({', '.join(overridden)})" if overridden else ", exactly")
    return cfg, source


_MISSING = object()


def _check_numbers(cfg: TrialConfig) -> None:
    """Types a JSON file can get wrong that ``TrialConfig.validate`` takes for granted."""
    for key in ("lam", "alpha", "lr", "momentum", "weight_decay", "warmup_epochs", "distill"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SweepError(f"{key} must be a finite number, got {quote(value)}")
    for key in ("epochs", "debias_epochs", "batch_size", "seed", "prune_steps"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SweepError(f"{key} must be an integer, got {quote(value)}")
