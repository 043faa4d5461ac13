"""Numbers as people read them: thousands separators, percentages, short forms."""

from __future__ import annotations

import math

__all__ = ["compact", "count", "decimal", "percent"]


def count(value: float | None) -> str:
    """Return a whole number with thousands separators (``12,345``), or an en dash."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{round(value):,}"


def compact(value: float | None) -> str:
    """Return a large count in short form (``1.2 M``, ``45 k``, ``830``)."""
    if value is None or not math.isfinite(value):
        return "–"
    size = abs(value)
    for threshold, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if size >= threshold:
            scaled = value / threshold
            digits = 1 if abs(scaled) < 100 else 0
            return f"{scaled:.{digits}f} {suffix}"
    return f"{round(value):,}"


def percent(share: float | None, digits: int = 1) -> str:
    """Return a share in ``[0, 1]`` as a percentage (``93.4 %``)."""
    if share is None or not math.isfinite(share):
        return "–"
    return f"{share * 100:.{digits}f} %"


def decimal(value: float | None, digits: int = 2) -> str:
    """Return a number with at most ``digits`` decimals and no trailing zeros."""
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
