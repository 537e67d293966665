"""``timm:NAME`` models (the optional extra ``timm``, pinned in pyproject.toml): a handful of timm's CNNs
``sweep check``ed, verified or refused with their reason; without timm installed, one line saying how to
install it. The tests that need timm skip when it is absent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from sweep.cli import main

HAS_TIMM = importlib.util.find_spec("timm") is not None
needs_timm = pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (extra: sweep[timm])")

# model -> channel groups at 64 px when verified, or the words of its refusal (timm 1.0.31)
VERIFIED = {
    "resnet18": 12,
    "resnet50d": 39,
    "efficientnet_b0": 40,  # BatchNormAct2d, SE gates
    "mobilenetv3_small_100": 27,
    "regnety_002": 44,  # grouped convs, SE gates
    "resnext26ts": 23,
    "dla34": 25,
    "hrnet_w18_small": 45,  # upsampling between branches
}
REFUSED = {
    "convnext_atto": "(LayerNorm2d) normalises over channels",
    "ghostnet_100": "op AsStridedBackward0",
    "cspresnet50": "a split or concatenation it cannot follow",
    "mixnet_s": "removing its channels fails",
}


def test_a_timm_name_without_timm_is_one_line() -> None:
    code = 'import sys; sys.modules["timm"] = None; from sweep.cli import main; sys.exit(main(sys.argv[1:]))'
    # timm hidden from a process of its own, as where the extra is not installed
    done = subprocess.run(
        [sys.executable, "-c", code, "check", "timm:resnet18"], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert "timm is not installed" in done.stderr and "sweep[timm]" in done.stderr and "timm==" in done.stderr


@needs_timm
def test_an_unknown_timm_name_lists_close_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "timm:resnet19"]) == 2
    err = capsys.readouterr().err
    assert "timm has no classification model 'resnet19'; close: resnet18" in err


FAST = ("resnet18", "efficientnet_b0", "convnext_atto")  # the rest run with -m slow (about a minute in all)


def _params(names: dict[str, object]) -> list[object]:
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in sorted(names)]


@needs_timm
@pytest.mark.parametrize("name", _params(VERIFIED))
def test_timm_cnns_are_verified(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"timm:{name}", "--input-size", "64"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"verified: all {VERIFIED[name]} groups")


@needs_timm
@pytest.mark.parametrize("name", _params(REFUSED))
def test_timm_cnns_check_cannot_follow_are_refused_in_one_line(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", f"timm:{name}", "--input-size", "64"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and REFUSED[name] in err[0], err
