"""Per-file time checks computed at ingest: batch day, arrival delay.

The lake does not keep which file a row came from, so checks that need the
file (was the row delivered in the file of its own day? how long after the
event did the file arrive?) run on each chunk while ingest reads it. Each
chunk gives a small mergeable record; the merged record of every file is
stored with its batch in the lake manifest.

Event times in carrier files are Beijing local time (UTC+8); arrival times
are file modification times, in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DELAY_EDGES_S",
    "chunk_time_stats",
    "delay_quantile_s",
    "file_arrival",
    "file_day",
    "merge_time_stats",
]

#: Offset of carrier local time (Beijing, UTC+8) from UTC.
LOCAL_OFFSET_S = 8 * 3600
#: Upper edges of the delay histogram: 0 s, 1 s, then 5 % wider each bin up
#: to about 100 days; the last bin is open.
DELAY_EDGES_S = np.concatenate([[0.0, 1.0], 1.05 ** np.arange(1, 330)])
_DAY_IN_NAME = re.compile(
    r"(?<![0-9])(20[0-9]{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12][0-9]|3[01])(?![0-9])"
)


def file_day(name: str) -> dt.date | None:
    """Return the delivery day written in a file name, or None.

    ``signalling/2026-11-03.csv`` and ``sig_20261103.csv.gz`` are files of
    2026-11-03; a name without a date has no batch day.
    """
    match = _DAY_IN_NAME.search(Path(name).name)
    if match is None:
        return None
    year, month, day = (int(part) for part in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def file_arrival(path: Path) -> float:
    """Return when a file arrived (its modification time, UTC epoch seconds).

    A file written by a delivery channel (SFTP upload, ``telcoreach fetch``)
    keeps the time it landed; copying a file with ``cp -p`` keeps it too.
    """
    return Path(path).stat().st_mtime


def _local_epoch_s(times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    seconds = pc.cast(times, pa.timestamp("s")).cast(pa.int64())
    return np.asarray(seconds.to_numpy(zero_copy_only=False), dtype=np.float64)


def chunk_time_stats(
    valid: pa.Table,
    time_field: str,
    *,
    day: dt.date | None,
    arrived_at_s: float | None,
) -> dict[str, Any]:
    """Return the time checks of one chunk of validated rows.

    Parameters
    ----------
    valid : pyarrow.Table
        Rows that passed validation (time field typed as a timestamp).
    time_field : str
        The record kind's event-time column (local time, UTC+8).
    day : datetime.date or None
        The file's delivery day (:func:`file_day`); None skips the check.
    arrived_at_s : float or None
        When the file arrived (UTC epoch seconds); None skips the delays.

    Returns
    -------
    dict
        ``rows``, and when known ``before_day`` (rows whose event day is
        before the file's day), ``delay_bins`` (``{bin: rows}`` of arrival
        minus event time over :data:`DELAY_EDGES_S`), ``delay_max_s`` and
        ``delay_min_s`` (arrival minus the newest event: how late the file
        was delivered).
    """
    stats: dict[str, Any] = {"rows": valid.num_rows}
    if valid.num_rows == 0:
        return stats
    local_s = _local_epoch_s(valid.column(time_field))
    if day is not None:
        start_s = (day - dt.date(1970, 1, 1)).days * 86_400
        stats["before_day"] = int((local_s < start_s).sum())
    if arrived_at_s is not None:
        delay_s = arrived_at_s - (local_s - LOCAL_OFFSET_S)
        bins = np.searchsorted(DELAY_EDGES_S, np.maximum(delay_s, 0.0), side="left")
        counts = np.bincount(bins, minlength=len(DELAY_EDGES_S) + 1)
        found = np.flatnonzero(counts)
        stats["delay_bins"] = dict(
            zip(found.tolist(), counts[found].tolist(), strict=True)
        )
        stats["delay_max_s"] = float(delay_s.max())
        stats["delay_min_s"] = float(delay_s.min())
    return stats


def merge_time_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the sum of several chunks' (or files') time records."""
    merged: dict[str, Any] = {"rows": 0}
    for part in parts:
        merged["rows"] += part.get("rows", 0)
        if "before_day" in part:
            merged["before_day"] = merged.get("before_day", 0) + part["before_day"]
        if "delay_bins" in part:
            bins = merged.setdefault("delay_bins", {})
            for index, rows in part["delay_bins"].items():
                bins[int(index)] = bins.get(int(index), 0) + rows
            merged["delay_max_s"] = max(
                merged.get("delay_max_s", float("-inf")), part["delay_max_s"]
            )
            merged["delay_min_s"] = min(
                merged.get("delay_min_s", float("inf")), part["delay_min_s"]
            )
    return merged


def delay_quantile_s(bins: dict[Any, int], quantile: float) -> float | None:
    """Return an upper bound of a delay quantile from a histogram of delays.

    The result is the upper edge of the bin holding the quantile, at most
    5 % above the true value (``inf`` if it falls in the open last bin).
    """
    if not bins:
        return None
    index = np.array([int(b) for b in bins], dtype=np.int64)
    rows = np.array(list(bins.values()), dtype=np.int64)
    order = np.argsort(index)
    index, rows = index[order], rows[order]
    cumulative = np.cumsum(rows)
    at = int(np.searchsorted(cumulative, quantile * cumulative[-1], side="left"))
    edge = int(index[min(at, len(index) - 1)])
    return float(DELAY_EDGES_S[edge]) if edge < len(DELAY_EDGES_S) else float("inf")


def source_quality_record(
    name: str,
    arrived_at_s: float | None,
    day: dt.date | None,
    checks: dict[str, int],
    time_parts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Return the quality record of one ingested file (JSON-serialisable)."""
    record: dict[str, Any] = {"name": name, "checks": dict(checks)}
    if arrived_at_s is not None:
        record["arrived_at"] = dt.datetime.fromtimestamp(
            arrived_at_s, dt.UTC
        ).isoformat(timespec="seconds")
    if day is not None:
        record["day"] = day.isoformat()
    if time_parts:
        record["time"] = merge_time_stats(time_parts)
    return record


def batch_quality_record(sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a batch's quality record: check counts summed, files kept apart."""
    checks: dict[str, int] = {}
    for source in sources:
        for name, rows in source["checks"].items():
            checks[name] = checks.get(name, 0) + rows
    return {"checks": checks, "sources": sorted(sources, key=lambda s: s["name"])}
