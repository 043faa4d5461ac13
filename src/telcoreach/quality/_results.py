"""Quality results: one row per (batch, kind, check, field, day) with its gate.

Figures measured at ingest (stored with each batch in the lake manifest) and
figures counted on the lake become rows of one table, stored in the
warehouse as ``quality_results``. A row with an empty ``day`` is a batch's
gated figure; a row with a day is that day's figure, kept for the history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from telcoreach.config import QualityConfig
from telcoreach.lake import BatchRecord
from telcoreach.quality._arrival import delay_quantile_s
from telcoreach.schemas import schema_for

__all__ = ["RESULT_SCHEMA", "QualityResult", "batch_results", "lake_results"]

RESULT_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("batch_seq", pa.int64()),
        ("kind", pa.string()),
        ("check", pa.string()),
        ("field", pa.string()),
        ("day", pa.string()),
        ("value", pa.float64()),
        ("failing", pa.int64()),
        ("rows", pa.int64()),
        ("threshold", pa.float64()),
        ("severity", pa.string()),
        ("status", pa.string()),
        ("detail", pa.string()),
        ("measured_at", pa.string()),
    ]
)
#: Checks whose figure must reach the threshold rather than stay under it.
AT_LEAST = frozenset({"identity"})


@dataclass
class QualityResult:
    """One figure of one check, with its gate and outcome.

    ``status`` is ``pass`` or ``fail`` for a gated figure, ``info`` for a
    figure kept without a gate (a day's figure, a gate turned ``off``, an
    optional field's missing share).
    """

    batch_id: str
    batch_seq: int
    kind: str
    check: str
    field: str
    day: str
    value: float
    failing: int | None
    rows: int | None
    threshold: float | None
    severity: str
    status: str
    detail: str = ""
    measured_at: str = ""

    def figure(self) -> str:
        """Return the figure as a person reads it (share, hours or count)."""
        if self.check == "freshness":
            return f"p95 delay {self.value:,.1f} h"
        if self.check == "volume":
            return f"{self.value:,.0f} rows"
        share = f"{self.value:.2%}"
        if self.failing is not None and self.rows is not None:
            unit = "subscribers" if self.check == "identity" else "rows"
            share += f" ({self.failing:,} of {self.rows:,} {unit})"
        return share

    def limit(self) -> str:
        """Return the gate as text, e.g. ``<= 1.50 %``."""
        if self.threshold is None:
            return ""
        sign = ">=" if self.check in AT_LEAST else "<="
        if self.check == "freshness":
            return f"{sign} {self.threshold:g} h"
        return f"{sign} {self.threshold:.2%}"

    def describe(self) -> str:
        """Return one line naming the check, the figure and the threshold."""
        where = f"{self.kind} {self.check}" + (f" ({self.field})" if self.field else "")
        text = f"{where}: {self.figure()}; {self.severity} gate {self.limit()}"
        return f"{text}; {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict."""
        return asdict(self)


def _gated(
    config: QualityConfig,
    check: str,
    kind: str,
    value: float,
    **fields: Any,
) -> QualityResult:
    gate = config.gate(check, kind)
    if gate.severity == "off":
        status, severity = "info", "off"
    else:
        passed = (
            value >= gate.threshold if check in AT_LEAST else value <= gate.threshold
        )
        status, severity = ("pass" if passed else "fail"), gate.severity
    return QualityResult(
        kind=kind,
        check=check,
        value=value,
        threshold=gate.threshold,
        severity=severity,
        status=status,
        **fields,
    )


def _info(kind: str, check: str, value: float, **fields: Any) -> QualityResult:
    return QualityResult(
        kind=kind,
        check=check,
        value=value,
        threshold=None,
        severity="info",
        status="info",
        **fields,
    )


def _share(failing: int, rows: int) -> float:
    return failing / rows if rows else 0.0


def _field_counts(checks: dict[str, int], marker: str) -> dict[str, int]:
    """Return ``{field: rows}`` of the reasons ``"<field>: <marker>..."``."""
    counts: dict[str, int] = {}
    for reason, rows in checks.items():
        name, _, text = reason.partition(": ")
        if text.startswith(marker):
            counts[name] = counts.get(name, 0) + rows
    return counts


def batch_results(
    record: BatchRecord, config: QualityConfig, measured_at: str
) -> list[QualityResult]:
    """Return the gated figures a batch's ingest measured.

    Missing values of required fields, duplicates, invalid values (unparsable,
    outside the allowed set or range), malformed raw identifiers, IMEI check
    digits, events before their file's day and arrival delays.
    """
    schema = schema_for(record.kind)
    checks = record.quality.get("checks", {})
    rows_in = record.rows_in
    base = {
        "batch_id": record.batch_id,
        "batch_seq": record.seq,
        "day": "",
        "measured_at": measured_at,
    }
    results: list[QualityResult] = []

    missing = _field_counts(checks, "required value missing")
    for item in schema.fields:
        if item.required:
            rows = missing.get(item.name, 0)
            results.append(
                _gated(
                    config,
                    "missing",
                    record.kind,
                    _share(rows, rows_in),
                    field=item.name,
                    failing=rows,
                    rows=rows_in,
                    **base,
                )
            )

    duplicates = sum(
        rows
        for reason, rows in record.quarantined.items()
        if reason.startswith("duplicate")
    )
    results.append(
        _gated(
            config,
            "duplicates",
            record.kind,
            _share(duplicates, rows_in),
            field="",
            failing=duplicates,
            rows=rows_in,
            **base,
        )
    )

    invalid: dict[str, int] = {}
    for marker in ("expected", "below minimum", "above maximum"):
        for name, rows in _field_counts(checks, marker).items():
            invalid[name] = invalid.get(name, 0) + rows
    for item in schema.fields:
        if item.allowed and item.required:
            # An empty required value also fails its allowed set: count it once.
            invalid[item.name] = max(
                0, invalid.get(item.name, 0) - missing.get(item.name, 0)
            )
    for name, rows in sorted(invalid.items()):
        results.append(
            _gated(
                config,
                "invalid_values",
                record.kind,
                _share(rows, rows_in),
                field=name,
                failing=rows,
                rows=rows_in,
                **base,
            )
        )

    for identifier in ("msisdn", "imsi", "imei"):
        present = checks.get(f"{identifier}.present")
        if present is None:
            continue
        malformed = checks.get(f"{identifier}.malformed", 0)
        detail = ""
        if identifier == "imsi" and malformed:
            detail = (
                f"{checks.get('imsi.mcc', 0):,} without MCC 460, "
                f"{checks.get('imsi.length', 0):,} not 15 digits"
            )
        results.append(
            _gated(
                config,
                "malformed_ids",
                record.kind,
                _share(malformed, present),
                field=identifier,
                failing=malformed,
                rows=present,
                detail=detail,
                **base,
            )
        )
        if identifier == "imei":
            digits = present - malformed
            luhn = checks.get("imei.luhn", 0)
            results.append(
                _gated(
                    config,
                    "imei_luhn",
                    record.kind,
                    _share(luhn, digits),
                    field="imei",
                    failing=luhn,
                    rows=digits,
                    detail="15 digits but a wrong Luhn check digit" if luhn else "",
                    **base,
                )
            )

    results.extend(_time_results(record, config, base))
    return results


def _time_results(
    record: BatchRecord, config: QualityConfig, base: dict[str, Any]
) -> list[QualityResult]:
    """Return events before their file's day and arrival delays, batch and day."""
    sources = [s for s in record.quality.get("sources", []) if "time" in s]
    results: list[QualityResult] = []
    dated = [s for s in sources if "before_day" in s["time"]]
    if dated:
        late = sum(s["time"]["before_day"] for s in dated)
        rows = sum(s["time"]["rows"] for s in dated)
        worst = max(
            dated, key=lambda s: _share(s["time"]["before_day"], s["time"]["rows"])
        )
        detail = ""
        if late:
            detail = (
                f"worst file {worst['name']}: {worst['time']['before_day']:,} events "
                f"from before {worst['day']}"
            )
        results.append(
            _gated(
                config,
                "before_batch_day",
                record.kind,
                _share(late, rows),
                field=schema_for(record.kind).time_field or "",
                failing=late,
                rows=rows,
                detail=detail,
                **base,
            )
        )
        for source in dated:
            time = source["time"]
            results.append(
                _info(
                    record.kind,
                    "before_batch_day",
                    _share(time["before_day"], time["rows"]),
                    field=schema_for(record.kind).time_field or "",
                    failing=time["before_day"],
                    rows=time["rows"],
                    detail=source["name"],
                    **{**base, "day": source["day"]},
                )
            )

    # Freshness is how late each file was delivered: its arrival minus the
    # newest event inside. (Arrival minus every event would put a daily file's
    # first events ~24 h "late" however promptly the file came.)
    timed = [s for s in sources if "delay_min_s" in s["time"]]
    if timed:
        lag_h = {s["name"]: max(s["time"]["delay_min_s"], 0.0) / 3600 for s in timed}
        threshold_h = config.gate("freshness", record.kind).threshold
        p95_h = float(np.percentile(list(lag_h.values()), 95))
        slowest = max(lag_h, key=lag_h.__getitem__)
        event_p95_h = [
            (delay_quantile_s(s["time"]["delay_bins"], 0.95) or 0.0) / 3600
            for s in timed
        ]
        results.append(
            _gated(
                config,
                "freshness",
                record.kind,
                p95_h,
                field="",
                failing=sum(hours > threshold_h for hours in lag_h.values()),
                rows=len(timed),
                detail=(
                    f"{len(timed)} files; slowest {slowest} delivered "
                    f"{lag_h[slowest]:,.1f} h after its newest event (p95 delay "
                    f"of single events up to {max(event_p95_h):,.1f} h)"
                ),
                **base,
            )
        )
        for source in timed:
            if "day" not in source:
                continue
            results.append(
                _info(
                    record.kind,
                    "freshness",
                    lag_h[source["name"]],
                    field="",
                    failing=None,
                    rows=source["time"]["rows"],
                    detail=source["name"],
                    **{**base, "day": source["day"]},
                )
            )
    return results


def lake_results(
    kind: str,
    counts: pa.Table,
    batches: dict[int, BatchRecord],
    config: QualityConfig,
    measured_at: str,
) -> list[QualityResult]:
    """Return figures counted on the lake: per batch (gated) and per day (info).

    Per batch: events in the future, unknown cell ids, unknown TACs, and the
    missing share of optional fields (kept, not gated: an optional field may
    be empty by design). Per day: volume and every count, for the history.
    """
    schema = schema_for(kind)
    required = {f.stored_as for f in schema.fields if f.required}
    rows = counts.to_pylist()
    results: list[QualityResult] = []
    names = [c for c in counts.column_names if c not in {"_batch_seq", "_day", "rows"}]

    by_batch: dict[int, dict[str, int]] = {}
    for row in rows:
        totals = by_batch.setdefault(
            row["_batch_seq"], dict.fromkeys(["rows", *names], 0)
        )
        for name in ("rows", *names):
            totals[name] += row[name] or 0
        record = batches.get(row["_batch_seq"])
        if record is None or not row["_day"]:
            continue
        base = {
            "batch_id": record.batch_id,
            "batch_seq": record.seq,
            "day": row["_day"],
            "measured_at": measured_at,
        }
        results.append(
            _info(
                kind,
                "volume",
                float(row["rows"]),
                field="",
                failing=None,
                rows=row["rows"],
                **base,
            )
        )
        results.extend(_count_results(kind, row, names, base, config, gated=False))

    for seq, totals in by_batch.items():
        record = batches.get(seq)
        if record is None:
            continue
        base = {
            "batch_id": record.batch_id,
            "batch_seq": record.seq,
            "day": "",
            "measured_at": measured_at,
        }
        results.extend(
            _count_results(
                kind, totals, names, base, config, gated=True, skip_missing=required
            )
        )
    return results


def _count_results(
    kind: str,
    row: dict[str, int],
    names: list[str],
    base: dict[str, Any],
    config: QualityConfig,
    *,
    gated: bool,
    skip_missing: set[str] | frozenset[str] = frozenset(),
) -> list[QualityResult]:
    total = row["rows"] or 0
    results = []
    make = (
        (lambda check, value, **f: _gated(config, check, kind, value, **f))
        if gated
        else (lambda check, value, **f: _info(kind, check, value, **f))
    )
    for name in names:
        if name.startswith("missing__"):
            column = name.removeprefix("missing__")
            if column in skip_missing:
                continue
            # Optional fields are empty by design: kept, never gated.
            results.append(
                _info(
                    kind,
                    "missing",
                    _share(row[name] or 0, total),
                    field=column,
                    failing=row[name] or 0,
                    rows=total,
                    **base,
                )
            )
    if "future" in row:
        time_field = schema_for(kind).time_field or ""
        results.append(
            make(
                "future_times",
                _share(row["future"] or 0, total),
                field=time_field,
                failing=row["future"] or 0,
                rows=total,
                **base,
            )
        )
    for check, present in (
        ("unknown_cells", "cells_present"),
        ("unknown_tac", "tacs_present"),
    ):
        if check in row:
            field = "cell_id" if check == "unknown_cells" else "tac"
            results.append(
                make(
                    check,
                    _share(row[check] or 0, row[present] or 0),
                    field=field,
                    failing=row[check] or 0,
                    rows=row[present] or 0,
                    **base,
                )
            )
    return results


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
