"""Numbers as the front's tables and lines print them (one place for ``pareto``, export and the dashboard)."""

from __future__ import annotations

import math


def format_number(value: float | None) -> str:
    """Short human form: 570, 9999, 431080 -> 431k, 2290000 -> 2.29M, 0.63 (None/NaN -> '-')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer():
        number = abs(value)
        for limit, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
            if number >= limit:
                return f"{value / scale:.3g}{suffix}"
        return f"{int(value)}"
    return f"{value:.4g}"


def format_lam(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
