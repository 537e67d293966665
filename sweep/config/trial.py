"""Typed configuration: one trial (``TrialConfig``), and the search spaces that produce trials."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError, quote

if TYPE_CHECKING:
    pass
from sweep.config.ranges import FIELD_RANGES, OPTIONAL, check_range

PENALTY_NAMES = ("none", "l1", "group_lasso", "bn_group_lasso", "sparse_group_lasso", "nuclear")
LR_POLICIES = ("constant", "inv", "multistep", "cosine")
# uniform: every layer's lambda is lam (times its layer_scales entry); rms: also times the layer's typical
# channel RMS in the network the trial starts from, over the network's (sweep.sparsity.prox.rms_scales);
# flops: times the FLOPs one of its channels costs, over the network's (sweep.train.channels); rms_flops: both
LAM_SCALINGS = ("uniform", "rms", "flops", "rms_flops")
# auto: bf16 on a CUDA GPU that supports it, else fp32 (sweep.precision resolves it once per trial)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# prox: the penalty's proximal step prunes while training; magnitude: one-shot pruning of the starting
# weights by channel magnitude to prune_ratio, then fine-tuning with the pruned channels held at zero
METHODS = ("prox", "magnitude")
# what ranks the channels pruning by importance removes (sweep.sparsity.magnitude)
IMPORTANCES = ("l1", "l2", "taylor", "bn_scale")
SCOPES = ("local", "global")  # the same ratio in every group, or one threshold over all
INIT_BASELINE = "baseline"  # init: the study's baseline trial's weights (sweep run resolves it)


@dataclass
class TrialConfig:
    """Everything one training run needs. Plain values only, so it travels through Ray and JSON."""

    model: str
    dataset: str | None = None  # None: the model's own dataset
    data_dir: str | None = None
    subset: int | None = None
    holdout: int | None = None  # held-out images taken from train for trial selection; None: dataset default
    input_size: int | None = None  # images resized to this side; None: the dataset's own (folder: 32)
    penalty: str = "group_lasso"
    lam: float = 1e-3
    alpha: float = 0.5  # l1 share of sparse_group_lasso
    layers: list[str] | None = None  # constrained layers; None: every layer that can lose units
    layer_scales: dict[str, float] = field(default_factory=dict)  # per-layer multiplier on lam
    lam_scaling: str = "uniform"  # one of LAM_SCALINGS
    epochs: int = 10
    debias_epochs: int = 0  # last epochs: penalty off, dead neurons held at zero by a mask
    debias_restart: bool = True  # the debias phase starts the learning-rate schedule again
    warmup_epochs: float = 0.0  # lam ramps linearly from 0 over these epochs
    batch_size: int = 64
    random_shift: int = 0  # training images translated by up to this many pixels per axis; 0: off
    random_flip: bool = False  # training images mirrored left-right, each with probability 1/2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_policy: str = "constant"
    lr_gamma: float = 1e-4  # inv: lr * (1 + gamma * iter) ** -power; multistep: factor per milestone
    lr_power: float = 0.75
    lr_milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto, bf16, fp16 or fp32: autocast dtype of forward and loss
    init: str | None = None  # initial weights (sweep.train.weights); None: the model's own initialisation
    # Share of the loss that matches the outputs of the network ``init`` loaded (the teacher, frozen),
    # softened by ``distill_temperature``; the rest is cross-entropy on the labels. 0: off.
    distill: float = 0.0
    distill_temperature: float = 1.0
    num_workers: int = 0
    eval_test: bool = True  # also measure top-1 error on the test split at the end
    measure_latency: bool = False  # also time the compact network on the CPU at the end (latency_ms)
    method: str = "prox"  # one of METHODS; magnitude ignores penalty and lam (sweep.sparsity.magnitude)
    prune_ratio: float = 0.5  # magnitude: share of the constrained channels zeroed at the start
    importance: str = "l1"  # pruning by importance: one of IMPORTANCES
    scope: str = "local"  # pruning by importance: one of SCOPES
    # Share of the full network's FLOPs to remove: magnitude prunes to it at the start instead of to
    # prune_ratio; the prox tops its sparse phase up to it by importance (sweep.train.channels). None: off.
    flops_target: float | None = None
    rewind: bool = False  # prox: the survivors restart the debias phase from the trial's starting weights
    # magnitude: prune in this many steps, one at the start of each of the first prune_steps epochs, each
    # to its share of the target (iterative pruning); 1: all at once
    prune_steps: int = 1

    def validate(self, input_size: tuple[int, int] | None = None) -> TrialConfig:
        """Check every setting (the rules of ``FIELD_RANGES`` and a few that relate two settings); with
        ``input_size``, the dataset's (H, W), also that ``random_shift`` is at most half the image side
        (of ``self.input_size`` when that is set: the images are resized to it).
        Returns self; SweepError naming the first setting that is wrong, what is allowed and what it got."""

        def bad(key: str, allowed: str, got: Any) -> SweepError:
            return SweepError(f"{key} must be {allowed}, got {quote(got)}")

        def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise bad(key, f"one of {', '.join(allowed)}", value)

        def flag(key: str, value: Any) -> None:
            if not isinstance(value, bool):
                raise bad(key, "true or false", value)

        def text(key: str, value: Any, optional: bool = False) -> None:
            if not (isinstance(value, str) and value.strip()) and not (optional and value is None):
                raise bad(key, "a non-empty string" + (" or null" if optional else ""), value)

        one_of("penalty", self.penalty, PENALTY_NAMES)
        one_of("lr_policy", self.lr_policy, LR_POLICIES)
        one_of("lam_scaling", self.lam_scaling, LAM_SCALINGS)
        one_of("precision", self.precision, PRECISIONS)
        one_of("method", self.method, METHODS)
        one_of("importance", self.importance, IMPORTANCES)
        one_of("scope", self.scope, SCOPES)
        text("model", self.model)
        text("dataset", self.dataset, optional=True)
        text("data_dir", self.data_dir, optional=True)
        text("init", self.init, optional=True)
        text("device", self.device)
        for key in ("debias_restart", "random_flip", "eval_test", "measure_latency", "rewind"):
            flag(key, getattr(self, key))
        for key in FIELD_RANGES:
            value = getattr(self, key)
            if key not in ("layer_scales", "lr_milestones") and not (key in OPTIONAL and value is None):
                check_range(key, value)
        prox_phases = self.method == "prox" and self.debias_epochs > 0
        if self.method == "prox" and self.flops_target is not None and not prox_phases:
            raise bad(
                "flops_target",
                "null for a prox trial without debias epochs (it prunes at their start)",
                self.flops_target,
            )
        if self.rewind and not prox_phases:
            raise bad(
                "rewind",
                "false unless method is prox with debias epochs (it rewinds at their start)",
                self.rewind,
            )
        if self.prune_steps > 1 and self.method != "magnitude":
            raise bad("prune_steps", "1 unless method is magnitude (it prunes in steps)", self.prune_steps)
        if self.prune_steps > self.epochs:
            raise bad("prune_steps", f"at most epochs ({self.epochs}): one step per epoch", self.prune_steps)
        if self.distill > 0 and self.init is None:
            raise bad("distill", "0 without init (the teacher is the network init loads)", self.distill)
        if not self.debias_epochs < self.epochs:
            raise bad("debias_epochs", f"in [0, epochs={self.epochs})", self.debias_epochs)
        if self.layers is not None and (
            not isinstance(self.layers, list)
            or not self.layers
            or not all(isinstance(name, str) and name for name in self.layers)
        ):
            raise bad(
                "layers",
                "null (every layer that can lose units) or a non-empty list of layer names",
                self.layers,
            )
        if not isinstance(self.layer_scales, dict):
            raise bad("layer_scales", "a mapping of layer name to scale", self.layer_scales)
        for name, scale in self.layer_scales.items():
            check_range("layer_scales", scale, f"layer_scales.{name}")
        if not isinstance(self.lr_milestones, list):
            raise bad("lr_milestones", "a list of epochs", self.lr_milestones)
        for i, milestone in enumerate(self.lr_milestones):
            check_range("lr_milestones", milestone, f"lr_milestones[{i}]")
        if isinstance(self.input_size, int):
            input_size = (self.input_size, self.input_size)
        if input_size is not None and self.random_shift > min(input_size) // 2:
            raise bad(
                "random_shift",
                f"an integer in [0, {min(input_size) // 2}] (pixels: at most half the side of the "
                f"{input_size[0]}x{input_size[1]} images)",
                self.random_shift,
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SweepError(
                f"unknown trial setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)


def pruning_label(settings: dict[str, Any]) -> str | None:
    """A magnitude trial's pruning for tables ("magnitude 0.50 local", "magnitude taylor 45% FLOPs local",
    "magnitude 45% FLOPs global 4 steps"),
    from its config or sampled settings; None for a prox trial."""
    if settings.get("method") != "magnitude":
        return None
    importance = settings.get("importance") or TrialConfig.importance
    target = settings.get("flops_target")
    ratio = settings.get("prune_ratio", TrialConfig.prune_ratio)
    amount = f"{target:.0%} FLOPs" if isinstance(target, float) else f"{float(ratio or 0):.2f}"
    kind = "" if importance == "l1" else f" {importance}"
    steps = settings.get("prune_steps") or 1
    iterative = f" {steps} steps" if isinstance(steps, int) and steps > 1 else ""
    return f"magnitude{kind} {amount} {settings.get('scope') or TrialConfig.scope}{iterative}"


# --------------------------------------------------------------------------------------------------
# Search spaces: what is fixed, what is searched, what is minimised (read from YAML by sweep.space.load).

OBJECTIVE_NAMES = ("top1_error", "neurons", "params", "flops", "latency_ms")
DEFAULT_OBJECTIVES = ("top1_error", "neurons")
# Settings that depend on the machine, not on the study: left out of a study's fingerprint. A precision
# says how a trial computes (auto differs by machine); each trial records the one it ran with.
MACHINE_KEYS = ("data_dir", "device", "num_workers", "precision")
# Settings added after studies were recorded: at their default they are left out of the fingerprint, so
# such a study's fingerprint still matches.
LATER_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(TrialConfig)
    if f.name in ("random_flip", "input_size", "distill", "distill_temperature", "lam_scaling")
    or f.name in ("method", "prune_ratio", "importance", "scope", "flops_target", "rewind", "prune_steps")
}
# Only meaningful when a penalty is on; the unconstrained baseline does not sample them.
PENALTY_KEYS = (
    "lam",
    "alpha",
    "layers",
    "lam_scaling",
    "debias_fraction",
    "warmup_epochs",
    "distill",
    "distill_temperature",
    "method",  # the baseline is trained, never pruned
    "prune_ratio",
    "importance",
    "scope",
    "flops_target",
    "rewind",
    "prune_steps",
)
