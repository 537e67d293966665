"""Every classification CNN family of torchvision.models (the transformers vit, swin and maxvit aside), built
without weights at a small input and ``sweep check``ed: verified exact, or refused with its reason. The
table in docs/models.md is this one. The whole sweep (about a minute on 2 cores) is slow; a fast subset
runs by default (the families of test_structure_patterns.py run there)."""

from __future__ import annotations

import pytest
import torchvision

from sweep.errors import SweepError
from sweep.export.check import build, check_model

TRANSFORMERS = ("vit_", "swin_", "maxvit_")
# family -> (the smallest member, input side, channel groups, why refused or None)
FAMILIES = {
    "alexnet": ("alexnet", 64, 7, None),
    "convnext": ("convnext_tiny", 64, 0, "LayerNorm2d) normalises over channels"),
    "densenet": ("densenet121", 64, 120, None),
    "efficientnet": ("efficientnet_b0", 64, 40, None),
    "efficientnet_v2": ("efficientnet_v2_s", 64, 75, None),
    "googlenet": ("googlenet", 64, 57, None),
    "inception": ("inception_v3", 80, 94, None),  # 75 px at least
    "mnasnet": ("mnasnet0_5", 64, 25, None),
    "mobilenet_v2": ("mobilenet_v2", 64, 25, None),
    "mobilenet_v3": ("mobilenet_v3_small", 64, 27, None),
    "regnet_x": ("regnet_x_400mf", 64, 49, None),
    "regnet_y": ("regnet_y_400mf", 64, 53, None),
    "resnet": ("resnet18", 64, 12, None),
    "resnext": ("resnext50_32x4d", 64, 37, None),
    "shufflenet_v2": ("shufflenet_v2_x0_5", 64, 18, None),
    "squeezenet": ("squeezenet1_0", 64, 25, None),
    "vgg": ("vgg11_bn", 64, 10, None),
    "wide_resnet": ("wide_resnet50_2", 64, 37, None),
}
FAST = ("alexnet", "convnext", "googlenet", "resnet", "squeezenet")


def family(name: str) -> str | None:
    """The family of a torchvision model name (the longest family name it starts with)."""
    found = [f for f in FAMILIES if name.startswith(f)]
    return max(found, key=len) if found else None


def test_every_cnn_family_of_torchvision_is_in_the_table() -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    unknown = [n for n in names if not n.startswith(TRANSFORMERS) and family(n) is None]
    assert unknown == []
    assert {family(n) for n in names if not n.startswith(TRANSFORMERS)} == set(FAMILIES)


def _check(name: str) -> None:
    arch, side, groups, refused = FAMILIES[name]
    if refused is not None:
        with pytest.raises(SweepError) as err:
            check_model(build(f"torchvision:{arch}", side, None, None))
        assert refused in str(err.value) and "\n" not in str(err.value)
        return
    report = check_model(build(f"torchvision:{arch}", side, None, None))
    assert len(report.groups) == groups
    assert report.rel_diff < 1e-4
    assert report.params[1] < report.params[0]


@pytest.mark.parametrize("name", FAST)
def test_a_fast_subset_of_the_families(name: str) -> None:
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family(name: str) -> None:
    _check(name)
