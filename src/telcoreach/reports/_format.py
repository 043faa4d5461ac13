"""Numbers as people read them: thousands separators, percentages, short forms."""

from __future__ import annotations

import math

__all__ = ["compact", "count", "decimal", "exact", "percent"]


def count(value: float | None) -> str:
    """Return a whole number with thousands separators (``12,345``), or an en dash."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{round(value):,}"


def compact(value: float | None) -> str:
    """Return a count, shortened from 100,000 on (``83,012``, ``450 k``, ``1.2 M``)."""
    if value is None or not math.isfinite(value):
        return "–"
    size = abs(value)
    for threshold, suffix in ((1e9, "bn"), (1e6, "M"), (1e5, "k")):
        if size >= threshold:
            scaled = value / (1e3 if suffix == "k" else threshold)
            digits = 1 if abs(scaled) < 100 else 0
            return f"{scaled:.{digits}f} {suffix}"
    return f"{round(value):,}"


def percent(share: float | None, digits: int = 1) -> str:
    """Return a share in ``[0, 1]`` as a percentage (``93.4 %``).

    Shares that are not exactly 0 or 1 get more digits rather than reading
    ``0.0 %`` or ``100.0 %`` (``0.004 %``); tinier ones read ``< 0.001 %``.
    """
    if share is None or not math.isfinite(share):
        return "–"
    if share in (0, 1):
        return f"{share * 100:.{digits}f} %"
    for places in range(digits, max(digits, 3) + 1):
        text = f"{share * 100:.{places}f}"
        if float(text) not in (0.0, 100.0):
            return f"{text} %"
    return "< 0.001 %" if share < 0.5 else "> 99.999 %"


def decimal(value: float | None, digits: int = 2) -> str:
    """Return a number with at most ``digits`` decimals and no trailing zeros."""
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def exact(value: float | None, unit: str = "") -> str:
    """Return the exact count when :func:`compact` shortened it, else ``""``."""
    if compact(value) == count(value):
        return ""
    return f"{count(value)} {unit}".strip()
