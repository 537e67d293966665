"""The paper's Table 1, the one copy: Zhou, Alvarez, Porikli, "Less Is More: Towards Compact CNNs"
(ECCV 2016). The dashboards draw its point beside a study's front; ``bench/paper.py`` prints our rows
beside its rows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperResult:
    """One row of the paper's Table 1 (errors: top-1 %, on the test set)."""

    model: str
    network: str
    dataset: str  # the registry's name
    dataset_label: str  # as the paper writes it
    fc1: tuple[int, int] | None  # (before, after) of the constrained fc layer, where the paper says
    neurons_removed: float  # percent
    params_removed: float  # percent
    memory_saved_mb: float
    top1_error: float
    baseline_error: float  # the paper's network trained without the constraint
    # alive units over every layer that can lose units, counted as `neurons` is here (the paper only
    # removed neurons of the first fully connected layer, so every conv layer keeps its full width)
    neurons: int | None = None

    @property
    def note(self) -> str:
        fc1 = "" if self.fc1 is None else f"fc1 {self.fc1[0]} -> {self.fc1[1]} neurons, "
        return f"{fc1}{self.top1_error:.2f}% error"


PAPER_TABLE1: dict[str, PaperResult] = {
    r.model: r
    for r in (
        PaperResult(
            "lenet", "LeNet", "mnist", "MNIST", (500, 11), 97.80, 92.00, 1.52, 0.63, 0.72, 20 + 50 + 11
        ),
        PaperResult(
            "cifar10_quick",
            "CIFAR-10 quick",
            "cifar10",
            "CIFAR-10",
            (64, 17),
            73.44,
            33.42,
            0.19,
            25.25,
            24.75,
            32 + 32 + 64 + 17,
        ),
        PaperResult("alexnet", "AlexNet", "imagenet", "ImageNet", None, 73.73, 65.42, 152.14, 46.10, 45.57),
        PaperResult("vgg13", "VGG-13", "imagenet", "ImageNet", None, 76.21, 61.29, 311.06, 39.26, 37.50),
    )
}
