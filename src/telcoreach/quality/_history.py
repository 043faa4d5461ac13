"""Trends of daily quality figures and the days that jump out of them.

A day's figure (volume, a field's missing share, unknown cells...) is
compared with the days before it by a robust z-score: its distance from
their median in units of their median absolute deviation (MAD, scaled by
1.4826 so that it estimates a standard deviation for normal data). Median
and MAD ignore the odd bad day, so one outage does not hide the next. The
spread is never taken below the noise of counting: the square root of a
volume (Poisson) or the binomial spread of a share over the day's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Series", "robust_z", "series_with_jumps"]

_MAD_TO_SD = 1.4826
#: Smallest spread assumed: 2 % of the median, and 1e-4 absolute (shares).
_RELATIVE_FLOOR = 0.02
_ABSOLUTE_FLOOR = 1e-4


def robust_z(
    value: float, previous: list[float] | np.ndarray, noise: float = 0.0
) -> float:
    """Return the robust z-score of ``value`` against ``previous`` values.

    ``(value - median) / max(1.4826 * MAD, 2 % of |median|, 1e-4, noise)``;
    the floors keep a perfectly steady history from turning a tiny change
    into an infinite score.
    """
    history = np.asarray(previous, dtype=np.float64)
    median = float(np.median(history))
    mad = float(np.median(np.abs(history - median)))
    scale = max(_MAD_TO_SD * mad, _RELATIVE_FLOOR * abs(median), _ABSOLUTE_FLOOR, noise)
    return (value - median) / scale


def counting_noise(check: str, median: float, rows: int | None) -> float:
    """Return the spread counting alone gives a daily figure.

    A volume of ``n`` rows varies by about ``sqrt(n)`` (Poisson); a share
    ``p`` of ``rows`` rows by ``sqrt(p (1 - p) / rows)`` (binomial, with
    ``p`` at least one row's worth). Freshness, in hours, has none.
    """
    if check == "volume":
        return float(np.sqrt(max(median, 0.0)))
    if check == "freshness" or not rows:
        return 0.0
    share = min(max(median, 1.0 / rows), 1.0)
    return float(np.sqrt(share * (1.0 - share) / rows))


@dataclass
class Series:
    """One daily figure over time, with the z-score of each day."""

    kind: str
    check: str
    field: str
    days: list[str]
    values: list[float]
    z: list[float | None] = field(default_factory=list)
    jumps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the series as a JSON-serialisable dict."""
        return {
            "kind": self.kind,
            "check": self.check,
            "field": self.field,
            "days": self.days,
            "values": [round(v, 6) for v in self.values],
            "z": [None if z is None else round(z, 2) for z in self.z],
            "jumps": self.jumps,
        }


def series_with_jumps(
    daily: list[dict[str, Any]], *, window_days: int, min_days: int, z: float
) -> list[Series]:
    """Return each (kind, check, field) series with its jumps flagged.

    Parameters
    ----------
    daily : list of dict
        Rows with ``kind``, ``check``, ``field``, ``day``, ``value`` and
        ``rows`` (the day's rows behind a share, summed over batches).
    window_days : int
        How many previous days a day is compared with.
    min_days : int
        Fewest previous days needed to score a day.
    z : float
        A day whose robust z-score exceeds this in absolute value is a jump.
    """
    grouped: dict[tuple[str, str, str], dict[str, tuple[float, int | None]]] = {}
    for row in daily:
        key = (row["kind"], row["check"], row["field"])
        grouped.setdefault(key, {})[row["day"]] = (row["value"], row.get("rows"))
    result = []
    for (kind, check, name), by_day in sorted(grouped.items()):
        days = sorted(by_day)
        values = [by_day[d][0] for d in days]
        series = Series(kind, check, name, days, values)
        for index, value in enumerate(values):
            previous = values[max(0, index - window_days) : index]
            if len(previous) < min_days:
                series.z.append(None)
                continue
            median = float(np.median(previous))
            noise = counting_noise(check, median, by_day[days[index]][1])
            score = robust_z(value, previous, noise)
            series.z.append(score)
            if abs(score) > z:
                series.jumps.append(
                    f"{kind} {check}{f' ({name})' if name else ''} on {days[index]}: "
                    f"{_show(check, value)} against a median of "
                    f"{_show(check, median)} over the {len(previous)} days before "
                    f"(robust z {score:+.1f})"
                )
        result.append(series)
    return result


def _show(check: str, value: float) -> str:
    if check == "volume":
        return f"{value:,.0f} rows"
    if check == "freshness":
        return f"{value:,.1f} h"
    return f"{value:.2%}"
