"""The one exception type the CLI turns into a single line and exit code 2, and how messages quote values."""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_LIMIT = 80  # characters of a value a message quotes; a longer one is cut and ends in "..."

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = _repr.maxother = _repr.maxlong = QUOTE_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8


class SweepError(Exception):
    """Bad input or an impossible request: the message says what was wrong and what is allowed."""


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (then "..."), however large the value."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def first_line(err: BaseException) -> str:
    """The innermost cause's first line (a SQLAlchemy error's own database error): what went wrong, without
    SQLAlchemy's or Optuna's wrapping; at most 300 characters."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(getattr(err, "orig", None) or err).strip()
    return (text.splitlines()[0].strip() if text else type(err).__name__)[:300]


MESSAGE_LIMIT = 2000  # characters of one error line; past them the line is cut and ends in "..."


def one_line(message: str) -> str:
    """An error message as one line of bounded length, whatever the values it quotes."""
    text = " ".join(message.split())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."
