import pytest
import torch

from sweep import models
from sweep.errors import SweepError

# Small inputs keep the ImageNet networks quick; each still runs its real layer stack.
SMALL = {"alexnet": 127, "vgg13": 32, "resnet18": 64}


@pytest.mark.parametrize("name", models.names())
def test_forward_shape_and_finite(name):
    torch.manual_seed(0)
    entry = models.MODELS.entry(name)
    c = entry.meta["input_size"][0]
    side = SMALL.get(name, entry.meta["input_size"][1])
    model = models.create(name, num_classes=7, input_size=side).eval()
    out = model(torch.randn(3, c, side, side))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    assert model.unit_layers(), "every model has layers that can lose units"
    assert list(model.widths()) == model.unit_layers()


@pytest.mark.parametrize(
    ("name", "kwargs", "params"),
    [
        ("lenet", {}, 431_080),
        ("cifar10_quick", {}, 145_578),
        ("vgg13", {"num_classes": 1000}, 133_047_848),
        ("alexnet", {"num_classes": 1000}, 61_100_840),
    ],
)
def test_parameter_counts_match_the_reference_networks(name, kwargs, params):
    with torch.device("meta"):
        model = models.create(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == params


def test_vgg13_is_the_papers_network_at_every_input_size():
    # at 32 px too: no BatchNorm, and the paper's classifier (two hidden fc layers of 4096)
    small = models.create("vgg13", input_size=32)
    assert small.name == "vgg13" and small.unit_layers()[-2:] == ["fc1", "fc2"]
    assert small.widths()["fc2"] == 4096 and not any("bn" in name for name, _ in small.body.named_children())
    assert sum(p.numel() for p in small.parameters()) == 28_328_522
    with torch.device("meta"):
        assert models.create("vgg13", num_classes=1000).unit_layers() == small.unit_layers()


def test_widths_override_builds_a_narrower_network():
    model = models.create("lenet", widths={"conv1": 3, "fc1": 11})
    assert model.widths() == {"conv1": 3, "conv2": 50, "fc1": 11}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_non_chain_models_are_registered_with_their_channel_groups():
    assert {"resnet20", "resnet56", "mobilenet_v2", "resnet18"} <= set(models.names())
    assert not set(models.chain_names()) & {"resnet20", "resnet56", "mobilenet_v2", "resnet18"}
    model = models.create("resnet20")
    assert (model.name, model.input_size, model.num_classes) == ("resnet20", (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 272_474
    assert model.widths()["layer2.0.conv2"] == 32  # the second stage's residual stream
    assert isinstance(model.layer("layer2.0.conv1"), torch.nn.Conv2d)
    assert models.default_dataset("resnet18") == "imagenet"
    assert models.create("resnet18", input_size=48)(torch.zeros(1, 3, 48, 48)).shape == (1, 10)
    with pytest.raises(SweepError, match="not a chain"):
        models.create("resnet20", widths={"conv1": 8})


def test_unknown_model_lists_known_names():
    with pytest.raises(SweepError, match="unknown model 'resnet'; known: alexnet, cifar10_quick, lenet"):
        models.create("resnet")


def test_input_too_small_is_a_clear_error():
    with pytest.raises(SweepError, match="cannot take input 1x8x8"):
        models.create("lenet", input_size=8)
