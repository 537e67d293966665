"""Which model a file may name: data is never code.

An export's ``architecture.json`` and a trial checkpoint's ``arch`` name the network to rebuild. A name
that sweep registers, or an entry point of an installed distribution, is code the user installed; a
``pkg.mod:fn`` / ``file.py:fn`` reference is code that anyone who can write the file could choose, so
rebuilding it needs the caller's word: the factory itself (``model=make_net``), ``trust_code=True``, or
the same reference from a source the caller trusts (export passes the study's recorded config, which came
from the command line that ran the study). The check runs before anything is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sweep.errors import SweepError, quote
from sweep.models import external
from sweep.models.base import MODELS

Factory = Callable[..., Any]


def is_installed(name: str) -> bool:
    """A registered model or an installed entry point: code the user installed, safe to build by name."""
    return name in MODELS or (not external.is_reference(name) and name in external.entry_points())


def recorded_model(
    name: object,
    source: str,
    *,
    expected: str | None = None,
    factory: Factory | None = None,
    trust_code: bool = False,
) -> str:
    """The model name that ``source`` (a file) records, once it is safe to build with ``models.create``.

    ``expected``: the name a trusted source recorded; a file naming another model is refused.
    ``factory``: the function that builds a network from outside the registry, used in place of
    importing what the file names. ``trust_code``: import the named reference as it is."""
    if not isinstance(name, str) or not name:
        raise SweepError(f"{source}: the recorded model is {quote(name)}, not a model name")
    if expected is not None and name != expected:
        raise SweepError(
            f"{source} names model {quote(name, 300)}, but the study recorded {quote(expected, 300)}: "
            "refusing a file that does not belong to its trial"
        )
    if is_installed(name):
        return name
    if factory is not None:
        external.provide(name, factory)
        return name
    if expected is not None or trust_code:
        return name
    raise SweepError(
        f"{source} names model {quote(name, 300)}, code from outside sweep: a file never chooses code to "
        "import; hand over the function that builds it (sweep.load_compact(folder, model=make_net)) or "
        "pass trust_code=True if you trust everyone who can write that file"
    )
