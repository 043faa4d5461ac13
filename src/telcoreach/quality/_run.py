"""Run every quality check of a workspace, store the results, apply the gates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ibis
import pyarrow as pa

from telcoreach.engine import Engine
from telcoreach.errors import ConfigError, QualityGateError, WorkspaceError
from telcoreach.lake import BatchRecord, Lake
from telcoreach.quality._history import series_with_jumps
from telcoreach.quality._lake import (
    identity_consistency,
    known_cells,
    lake_counts,
    local_now,
    read_tacs,
)
from telcoreach.quality._results import (
    RESULT_SCHEMA,
    QualityResult,
    _gated,
    batch_results,
    lake_results,
    now_iso,
)
from telcoreach.workspace import Workspace

__all__ = [
    "RESULTS_TABLE",
    "gate_error",
    "quality_history",
    "run_quality",
    "stored_failures",
]

logger = logging.getLogger(__name__)

#: Warehouse table holding every quality result, keyed by batch.
RESULTS_TABLE = "quality_results"
FAIL_ON = ("error", "warn")


def _latest_batches(batches: list[BatchRecord]) -> dict[str, BatchRecord]:
    latest: dict[str, BatchRecord] = {}
    for record in batches:
        if record.kind not in latest or record.seq > latest[record.kind].seq:
            latest[record.kind] = record
    return latest


def _device_tacs(workspace: Workspace) -> ibis.Table | None:
    path = workspace.config.quality.device_table
    if path is None:
        return None
    return ibis.memtable(read_tacs(workspace.resolve(path)))


def _identity_result(
    engine: Engine, latest: dict[str, BatchRecord], measured_at: str
) -> tuple[QualityResult | None, dict[str, Any] | None]:
    config = engine.workspace.config.quality
    figures = identity_consistency(engine, config.conflicts_listed)
    if figures is None:
        return None, None
    anchor = max(
        (latest[k] for k in ("signalling", "dpi", "subscribers") if k in latest),
        key=lambda r: r.seq,
    )
    reasons = {
        "several IMSIs": figures.several_imsis,
        "IMSI shared": figures.shared_imsis,
        "several IMEIs": figures.several_imeis,
        "IMEI shared": figures.shared_imeis,
        "not in the subscriber table": figures.not_in_subscriber_table,
    }
    detail = ", ".join(f"{n:,} {why}" for why, n in reasons.items() if n)
    result = _gated(
        config,
        "identity",
        "subscribers",
        figures.share,
        batch_id=anchor.batch_id,
        batch_seq=anchor.seq,
        field="msisdn/imsi/imei",
        day="",
        failing=figures.subscribers - figures.consistent,
        rows=figures.subscribers,
        detail=detail,
        measured_at=measured_at,
    )
    summary = {
        "subscribers": figures.subscribers,
        "one_to_one": figures.consistent,
        "share": round(figures.share, 6),
        "problems": reasons,
        "conflicting_pairs": figures.conflicts,
    }
    return result, summary


def _results_table(results: list[QualityResult]) -> pa.Table:
    rows = [r.to_dict() for r in results]
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def run_quality(
    workspace: Workspace,
    engine_name: str | None = None,
    *,
    fail_on: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Check every batch in the lake, store the results and return a summary.

    Figures measured at ingest (stored with each batch) and figures counted
    on the lake (one aggregate query per table) become rows of the warehouse
    table ``quality_results``, replaced as a whole on each run. The gates of
    ``config.quality`` are applied to the newest batch of each kind.

    Parameters
    ----------
    workspace : Workspace
        Workspace whose lake is checked.
    engine_name : {"duckdb", "spark"}, optional
        Engine; defaults to the workspace configuration.
    fail_on : {"error", "warn"}, optional
        Raise :class:`~telcoreach.errors.QualityGateError` when a gate of this
        severity (``warn`` includes ``error``) fails; by default never raise.
    progress : callable, optional
        ``progress(description, done, total)`` after each table.

    Returns
    -------
    dict
        ``passed`` (bool), ``errors`` and ``warnings`` (failed gates, one
        line each naming check, figure and threshold), ``failed`` (the same
        as records), ``batches`` (newest batch id per kind), ``freshness_p95_h``
        per kind, ``identity``, ``jumps``, ``results`` (every gated figure of
        the newest batches), ``rows_checked`` and ``seconds``.

    Raises
    ------
    QualityGateError
        With ``fail_on``, if a gate of that severity failed.
    WorkspaceError
        If the lake holds no batch yet.
    """
    if fail_on is not None and fail_on not in FAIL_ON:
        raise ConfigError(f"fail_on must be 'error' or 'warn', found {fail_on!r}")
    started = time.perf_counter()
    lake = Lake(workspace.lake)
    batches = lake.batches()
    if not batches:
        raise WorkspaceError(
            f"the lake of {workspace.root} is empty; ingest data first "
            "(`telcoreach ingest KIND FILE...` or `telcoreach run`)"
        )
    config = workspace.config.quality
    measured_at = now_iso()
    latest = _latest_batches(batches)
    results: list[QualityResult] = []
    for record in batches:
        results.extend(batch_results(record, config, measured_at))

    engine = Engine(workspace, engine_name)
    identity: dict[str, Any] | None = None
    rows_checked = 0
    try:
        cells = known_cells(engine)
        tacs = _device_tacs(workspace)
        now = local_now()
        kinds = sorted(latest)
        by_seq = {record.seq: record for record in batches}
        for done, kind in enumerate(kinds):
            if progress:
                progress(f"quality {kind}", done, len(kinds) + 1)
            if not engine.has_lake(kind):
                continue
            counts = lake_counts(engine, kind, cells=cells, tacs=tacs, now_local=now)
            rows_checked += sum(counts.column("rows").to_pylist())
            results.extend(lake_results(kind, counts, by_seq, config, measured_at))
        if progress:
            progress("quality identity", len(kinds), len(kinds) + 1)
        identity_result, identity = _identity_result(engine, latest, measured_at)
        if identity_result is not None:
            results.append(identity_result)
        engine.save(RESULTS_TABLE, _results_table(results))
    finally:
        engine.close()

    latest_ids = {record.batch_id for record in latest.values()}
    gated = [
        r
        for r in results
        if r.day == "" and r.batch_id in latest_ids and r.status in {"pass", "fail"}
    ]
    failed = sorted(
        (r for r in gated if r.status == "fail"),
        key=lambda r: (r.severity != "error", r.kind, r.check, r.field),
    )
    jumps = [
        jump
        for series in series_with_jumps(
            _daily(results),
            window_days=config.history.window_days,
            min_days=config.history.min_days,
            z=config.history.z,
        )
        for jump in series.jumps
    ]
    summary = {
        "passed": not any(r.severity == "error" for r in failed),
        "errors": [r.describe() for r in failed if r.severity == "error"],
        "warnings": [r.describe() for r in failed if r.severity == "warn"],
        "failed": [r.to_dict() for r in failed],
        "checks_run": len(gated),
        "batches": {kind: record.batch_id for kind, record in sorted(latest.items())},
        "freshness_p95_h": {
            r.kind: round(r.value, 2) for r in gated if r.check == "freshness"
        },
        "identity": identity,
        "jumps": jumps,
        "results": [r.to_dict() for r in gated],
        "rows_checked": rows_checked,
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info(
        "quality: %d gates on %d kinds, %d errors, %d warnings, %d jumps",
        len(gated),
        len(latest),
        len(summary["errors"]),
        len(summary["warnings"]),
        len(jumps),
    )
    error = gate_error(summary, fail_on)
    if error is not None:
        raise error
    return summary


def gate_error(summary: dict[str, Any], fail_on: str | None) -> QualityGateError | None:
    """Return the error a quality summary raises at ``fail_on``, or None."""
    if fail_on is None:
        return None
    failures = summary["errors"] + (summary["warnings"] if fail_on == "warn" else [])
    if not failures:
        return None
    more = f" (and {len(failures) - 1} more: {'; '.join(failures[1:])})"
    return QualityGateError(
        f"quality gate failed: {failures[0]}"
        + (more if len(failures) > 1 else "")
        + "; fix the source data and re-ingest, or change the gate under "
        "`quality:` in config.yaml (see docs/quality.md)"
    )


def _daily(results: list[QualityResult]) -> list[dict[str, Any]]:
    """Return one figure per (kind, check, field, day), summed over batches."""
    sums: dict[tuple[str, str, str, str], list[float]] = {}
    for r in results:
        if not r.day:
            continue
        key = (r.kind, r.check, r.field, r.day)
        entry = sums.setdefault(key, [0.0, 0.0, 0.0, 0.0])
        if r.check in {"volume", "freshness"}:
            # Volumes add up; a delay keeps its worst file.
            entry[0] = (
                entry[0] + r.value if r.check == "volume" else max(entry[0], r.value)
            )
            entry[3] = 1.0
        else:
            entry[1] += r.failing or 0
            entry[2] += r.rows or 0
    daily = []
    for (kind, check, name, day), (value, failing, rows, direct) in sums.items():
        daily.append(
            {
                "kind": kind,
                "check": check,
                "field": name,
                "day": day,
                "value": value if direct else (failing / rows if rows else 0.0),
                "rows": None if direct else int(rows),
            }
        )
    return daily


def quality_history(
    workspace: Workspace,
    engine_name: str | None = None,
    *,
    kind: str | None = None,
    check: str | None = None,
) -> dict[str, Any]:
    """Return the daily trend of stored quality figures and the jumps in them.

    Reads ``quality_results`` (written by :func:`run_quality`); a day is a
    jump when its robust z-score against the previous
    ``quality.history.window_days`` days exceeds ``quality.history.z``.

    Raises
    ------
    ConfigError
        If ``kind`` or ``check`` is not one telcoreach knows.
    WorkspaceError
        If ``telcoreach quality`` has not run yet.
    """
    from telcoreach.config import QualityChecks
    from telcoreach.schemas import KINDS

    checks = sorted({*QualityChecks.model_fields, "volume"})
    if kind is not None and kind not in KINDS:
        raise ConfigError(
            f"unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}"
        )
    if check is not None and check not in checks:
        raise ConfigError(
            f"unknown check {check!r}; expected one of {', '.join(checks)}"
        )
    config = workspace.config.quality.history
    engine = Engine(workspace, engine_name)
    try:
        if not engine.has_table(RESULTS_TABLE):
            raise WorkspaceError(
                f"no quality results in {workspace.root} yet; run "
                "`telcoreach quality` (or `telcoreach run`) first"
            )
        table = engine.table(RESULTS_TABLE)
        table = table.filter(table.day != "")
        if kind:
            table = table.filter(table.kind == kind)
        if check:
            table = table.filter(table.check == check)
        rows = table.to_pyarrow().to_pylist()
    finally:
        engine.close()
    results = [QualityResult(**row) for row in rows]
    series = series_with_jumps(
        _daily(results),
        window_days=config.window_days,
        min_days=config.min_days,
        z=config.z,
    )
    return {
        "series": [s.to_dict() for s in series],
        "jumps": [jump for s in series for jump in s.jumps],
        "days": sorted({r.day for r in results}),
    }


def stored_failures(engine: Engine) -> list[QualityResult] | None:
    """Return the failed gates of the newest batches as last stored, or None.

    None means ``telcoreach quality`` has not run in this workspace.
    """
    if not engine.has_table(RESULTS_TABLE):
        return None
    latest = _latest_batches(Lake(engine.workspace.lake).batches())
    latest_ids = [record.batch_id for record in latest.values()]
    table = engine.table(RESULTS_TABLE)
    failed = table.filter(
        (table.day == "") & (table.status == "fail") & table.batch_id.isin(latest_ids)
    )
    rows = failed.to_pyarrow().to_pylist()
    return sorted(
        (QualityResult(**row) for row in rows),
        key=lambda r: (r.severity != "error", r.kind, r.check, r.field),
    )
