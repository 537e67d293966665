"""Models from outside the package: any function that returns an ``nn.Module``.

Three ways to name one, wherever a model name is taken (``sweep run``, ``sweep train``, ``model:`` in a
search space):

- ``pkg.mod:fn``: a module importable from the working directory or ``sys.path``;
- ``path/to/nets.py:fn``: a Python file, made absolute against the working directory when first resolved,
  so Ray workers and later processes (export, ``sweep.load_compact``) find the same file again;
- ``NAME``: an entry point of group ``sweep.models`` of an installed distribution (a registered model of
  the same name wins);
- ``torchvision:NAME``: a classification model of ``torchvision.models`` (``torchvision:resnet50``), built
  without weights for the dataset's classes (3 input channels only; an unknown name lists close ones);
- ``timm:NAME``: a model of timm (the optional extra ``timm``), built without weights for the dataset's
  classes and channels; without timm installed, one line saying how to install it.

The function is called with ``num_classes``, ``in_channels`` and ``input_size`` (a ``(height, width)``
tuple), each only where its signature accepts it (``**kwargs`` accepts all), and the module it returns is
wrapped in a ``Net`` named by the reference, so groups, training, metrics, checkpoints and export work as
for a registered network. Such a model has no dataset of its own. Every problem (a module that does not
import, a missing function, one that raises or returns something else, logits of the wrong shape) is one
SweepError naming the reference.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.errors import SweepError, quote

if TYPE_CHECKING:
    from sweep.models.net import Net

ENTRY_POINT_GROUP = "sweep.models"
ARGUMENTS = ("num_classes", "in_channels", "input_size")
DEFAULT_SIZE = (3, 32, 32)  # what the function is called with when no dataset is known
FORMS = (
    "MODULE:FUNCTION or FILE.py:FUNCTION (a function returning an nn.Module), torchvision:NAME or timm:NAME"
)
TORCHVISION = "torchvision:"  # a classification model of torchvision.models, built without weights
TIMM = "timm:"  # a model of timm (the optional extra `timm`), built without weights
TIMM_PIN = "timm==1.0.31"  # pyproject.toml's extra
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9._+-]+")
_FUNCTIONS: dict[str, Callable[..., Any]] = {}  # canonical reference -> the function it names


def is_reference(name: str) -> bool:
    """``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``."""
    return ":" in name


def _split(ref: str) -> tuple[str, str]:
    where, _, fn = ref.rpartition(":")
    if not where or not _DOTTED.match(fn):
        raise SweepError(f"model {_shown(ref)}: expected {FORMS}")
    return where, fn


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


@functools.cache
def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed entry points of group ``sweep.models``, by name (the first of a name wins)."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep)
    return out


def is_external(name: str) -> bool:
    """A reference, an entry point's name or a name given a factory by ``provide`` (registered models are
    checked before this)."""
    return is_reference(name) or name in entry_points() or name in _FUNCTIONS


def canonical(name: str) -> str:
    """The form recorded in a trial's config: a file reference with an absolute path; else as given."""
    if not is_reference(name) or name in _FUNCTIONS:
        return name
    where, fn = _split(name)
    if not _is_file(where):
        if not _DOTTED.match(where):
            raise SweepError(f"model {_shown(name)}: {quote(where)} is not a module name; expected {FORMS}")
        return name
    path = Path(where).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not path.is_file():
        raise SweepError(f"model {_shown(name)}: file {quote(str(path), 300)} does not exist")
    if path.suffix != ".py":
        raise SweepError(f"model {_shown(name)}: {quote(str(path), 300)} is not a .py file; expected {FORMS}")
    return f"{path}:{fn}"


def short_name(name: str) -> str:
    """A name fit for a study or a folder: ``nets.make_net`` for ``.../nets.py:make_net``, ``pkg.nets.fn``
    for ``pkg.nets:fn``, an entry point's own name."""
    if is_reference(name):
        where, _, fn = name.rpartition(":")
        stem = Path(where).stem if _is_file(where) else where
        name = f"{stem}.{fn}"
    return _NOT_NAME.sub("_", name).strip("._+-") or "model"


def resolve(name: str) -> Callable[..., Any]:
    """The function a (canonical) reference or entry point names, imported once per process."""
    if name not in _FUNCTIONS:
        _FUNCTIONS[name] = _load(name)
    return _FUNCTIONS[name]


def provide(name: str, fn: Callable[..., Any]) -> None:
    """Let ``name`` stand for ``fn`` in this process, so building it never imports what the name says
    (``sweep.models.trust``: a factory the caller handed over for a network a file names)."""
    _FUNCTIONS[name] = fn


def _shown(name: str) -> str:
    return quote(name, 300)  # a reference holds a path: longer than other quoted values


def _first(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(err).__name__}: {line[:200]}" if line else type(err).__name__


def _load(name: str) -> Callable[..., Any]:
    if name.startswith(TORCHVISION):
        return _torchvision(name)
    if name.startswith(TIMM):
        return _timm(name)
    if not is_reference(name):
        ep = entry_points()[name]
        try:
            fn = ep.load()
        except Exception as err:
            raise SweepError(
                f"model {_shown(name)}: entry point {ep.value!r} (group {ENTRY_POINT_GROUP}) does not load: "
                f"{_first(err)}"
            ) from None
        return _callable(name, fn, ep.value)
    where, fn_name = _split(name)
    module = _import_file(name, Path(where)) if _is_file(where) else _import_module(name, where)
    obj: Any = module
    for part in fn_name.split("."):
        if not hasattr(obj, part):
            defined = sorted(
                k
                for k, v in vars(module).items()
                if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
            )
            hint = f"; it defines: {', '.join(defined[:12])}" if defined else ""
            source = "the file" if _is_file(where) else f"module {where!r}"
            raise SweepError(f"model {_shown(name)}: {source} has no function {fn_name!r}{hint}")
        obj = getattr(obj, part)
    return _callable(name, obj, f"{where}:{fn_name}")


def _torchvision(name: str) -> Callable[..., Any]:
    """A builder for torchvision's classification model ``torchvision:NAME``, without weights, taking the
    dataset's classes; torchvision's models read 3 channels only."""
    from torchvision import models as tv

    arch = name[len(TORCHVISION) :]
    known = tv.list_models(module=tv)
    if arch not in known:
        raise _close(name, arch, known, "torchvision")
    builder = tv.get_model_builder(arch)
    # GoogLeNet and Inception v3: one tensor of logits in training too; their old init, without a warning
    extra = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}

    def build(num_classes: int, in_channels: int) -> Any:
        if in_channels != 3:
            raise SweepError(
                f"model {_shown(name)}: torchvision's {arch} reads 3 input channels, the data has {in_channels}"
            )
        return builder(weights=None, num_classes=num_classes, **extra)

    build.__name__ = arch
    return build


def _close(name: str, arch: str, known: list[str], zoo: str) -> SweepError:
    import difflib

    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    hint = f"; close: {', '.join(close)}" if close else f"; known: {', '.join(known[:12])}, ..."
    return SweepError(f"model {_shown(name)}: {zoo} has no classification model {arch!r}{hint}")


def _timm(name: str) -> Callable[..., Any]:
    """A builder for timm's model ``timm:NAME``, without weights, for the dataset's classes and channels."""
    arch = name[len(TIMM) :]
    try:
        import timm
    except ImportError:
        raise SweepError(
            f"model {_shown(name)}: timm is not installed; install the extra: pip install 'sweep[timm]' "
            f"({TIMM_PIN})"
        ) from None
    known = timm.list_models()
    if arch not in known:
        raise _close(name, arch, known, "timm")

    def build(num_classes: int, in_channels: int) -> Any:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_channels)

    build.__name__ = arch
    return build


def _callable(name: str, obj: Any, shown: str) -> Callable[..., Any]:
    if not callable(obj):
        raise SweepError(
            f"model {_shown(name)}: {shown} is a {type(obj).__name__} ({quote(obj)}), not a function that "
            "returns an nn.Module"
        )
    return obj


def _import_module(name: str, module: str) -> Any:
    # `python -m sweep` has the working directory on sys.path; the `sweep` console script does not
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module)
    except Exception as err:  # an ImportError, or whatever the module raised while it ran
        raise SweepError(f"model {_shown(name)}: module {module!r} does not import: {_first(err)}") from None


def _import_file(name: str, path: Path) -> Any:
    """Run ``path`` as a module of its own (its folder on sys.path, for its sibling imports), writing no
    bytecode beside it."""
    key = "_sweep_external_" + re.sub(r"\W", "_", str(path))
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise SweepError(f"model {_shown(name)}: the file cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    sys.modules[key] = module  # classes and dataclasses defined in it look their module up here
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        del sys.modules[key]
        raise SweepError(f"model {_shown(name)}: the file does not import: {_first(err)}") from None
    finally:
        sys.dont_write_bytecode = keep
    return module


def accepted(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Which of ``ARGUMENTS`` the function takes by keyword (all of them with ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it with nothing
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return ARGUMENTS
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in params if p.kind in keyword}
    return tuple(a for a in ARGUMENTS if a in names)


def create(name: str, num_classes: int, in_channels: int | None, input_size: tuple[int, int] | None) -> Net:
    """Call the function ``name`` refers to and wrap its module in a ``Net`` named ``name``; its logits
    for one image must have ``num_classes`` entries."""
    import torch
    from torch import nn

    from sweep.models.net import Net

    fn = resolve(name)
    c = DEFAULT_SIZE[0] if in_channels is None else in_channels
    h, w = DEFAULT_SIZE[1:] if input_size is None else input_size
    given = {"num_classes": num_classes, "in_channels": c, "input_size": (h, w)}
    kwargs = {k: given[k] for k in accepted(fn)}
    call = f"{getattr(fn, '__name__', 'the function')}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        body = fn(**kwargs)
    except SweepError:
        raise
    except Exception as err:
        raise SweepError(f"model {_shown(name)}: {call} raised {_first(err)}") from None
    if isinstance(body, Net):
        body = body.body
    if not isinstance(body, nn.Module):
        raise SweepError(
            f"model {_shown(name)}: {call} returned {type(body).__name__} {quote(body)}, not a torch.nn.Module"
        )
    model = Net(name, body, (c, h, w), num_classes)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, c, h, w))
    except Exception as err:
        raise SweepError(f"model {_shown(name)} cannot take input {c}x{h}x{w}: {_first(err)}") from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (1, num_classes):
        takes = "" if "num_classes" in kwargs else "; let the function take a num_classes argument"
        got = f"logits of shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise SweepError(
            f"model {_shown(name)} gives {got} for one {c}x{h}x{w} image; expected shape (1, {num_classes}), "
            f"one logit per class{takes}"
        )
    return model.train()


def no_dataset(name: str) -> SweepError:
    from sweep.data import datasets as data

    return SweepError(
        f"model {_shown(name)} comes from outside sweep and has no dataset of its own: give --dataset (or "
        f"dataset: in its search space); datasets: {', '.join(data.names())}"
    )
