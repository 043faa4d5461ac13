"""Checks on the lake, each table read in one aggregate query.

Every figure a table needs (rows, empty values per field, events in the
future, cell ids missing from the cell table, TACs missing from the device
table) is one column of a single ``group_by(batch, day).aggregate(...)``
Ibis expression, so DuckDB and Spark scan the table once whatever the number
of checks. Cross-channel identity consistency reads the identifier columns
of signalling, DPI and the subscriber table once more.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from telcoreach.engine import Engine
from telcoreach.errors import ConfigError
from telcoreach.schemas import schema_for

__all__ = ["IdentityFigures", "identity_consistency", "lake_counts", "read_tacs"]

logger = logging.getLogger(__name__)

#: Events this far past the clock still count as on time (clock skew).
FUTURE_TOLERANCE = dt.timedelta(minutes=10)
_LOCAL_OFFSET = dt.timedelta(hours=8)


def read_tacs(path: Path) -> pa.Table:
    """Return the distinct TACs of a device table (CSV or Parquet with ``tac``).

    A TAC (type allocation code) is the first 8 digits of an IMEI and names a
    handset model; carriers license the GSMA's table of them.

    Raises
    ------
    ConfigError
        If the file is missing or has no ``tac`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"quality.device_table: {path} not found; expected a CSV or Parquet "
            "file with a `tac` column (8-digit type allocation codes)"
        )
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types={"tac": pa.string()}),
        )
    if "tac" not in table.column_names:
        raise ConfigError(
            f"quality.device_table: {path} has no `tac` column (found "
            f"{', '.join(table.column_names[:10])}); expected 8-digit TACs"
        )
    tacs = table.column("tac").cast(pa.string()).unique().drop_null()
    return pa.table({"_tac": tacs, "_tac_known": pa.array([True] * len(tacs))})


def _empty(column: ibis.Value) -> ibis.BooleanValue:
    empty = column.isnull()
    if column.type().is_string():
        empty = empty | (column == "")
    return empty


def _count(condition: ibis.BooleanValue) -> ibis.IntegerScalar:
    return condition.ifelse(1, 0).sum()


def lake_counts(
    engine: Engine,
    kind: str,
    *,
    cells: ibis.Table | None,
    tacs: ibis.Table | None,
    now_local: dt.datetime,
) -> pa.Table:
    """Return the figures of one lake table per (batch, day), in one query.

    Parameters
    ----------
    engine : Engine
        Open engine of the workspace.
    kind : str
        Record kind to check.
    cells : ibis.Table or None
        Known cell ids (column ``_cell``, flag ``_cell_known``); None skips
        the unknown-cell count.
    tacs : ibis.Table or None
        Known TACs (``_tac``, ``_tac_known``); None skips the unknown TAC count.
    now_local : datetime
        The current Beijing local time; later events are in the future.

    Returns
    -------
    pyarrow.Table
        ``_batch_seq``, ``_day`` (event day; empty for reference kinds),
        ``rows``, ``missing__<column>`` per stored column, and when they
        apply ``future``, ``cells_present``, ``unknown_cells``,
        ``tacs_present``, ``unknown_tac``.
    """
    schema = schema_for(kind)
    table = engine.lake(kind)
    columns = [c for c in table.columns if not c.startswith("_") and c != "day"]

    if schema.time_field is not None:
        table = table.mutate(_day=table[schema.time_field].date().cast("string"))
    else:
        table = table.mutate(_day=ibis.literal(""))
    if cells is not None and "cell_id" in columns:
        table = table.left_join(cells, table.cell_id == cells._cell)
    if tacs is not None and "tac" in columns:
        table = table.left_join(tacs, table.tac == tacs._tac)

    metrics: dict[str, Any] = {"rows": table.count()}
    for name in columns:
        metrics[f"missing__{name}"] = _count(_empty(table[name]))
    if schema.time_field is not None:
        limit = ibis.literal(now_local + FUTURE_TOLERANCE, "timestamp")
        metrics["future"] = _count(table[schema.time_field] > limit)
    if cells is not None and "cell_id" in columns:
        present = ~_empty(table.cell_id)
        metrics["cells_present"] = _count(present)
        metrics["unknown_cells"] = _count(present & table._cell_known.isnull())
    if tacs is not None and "tac" in columns:
        present = ~_empty(table.tac)
        metrics["tacs_present"] = _count(present)
        metrics["unknown_tac"] = _count(present & table._tac_known.isnull())
    result = table.group_by(["_batch_seq", "_day"]).aggregate(**metrics)
    return result.order_by(["_batch_seq", "_day"]).to_pyarrow()


def known_cells(engine: Engine) -> ibis.Table | None:
    """Return the distinct cell ids of the cell table, or None if there is none."""
    if not engine.has_lake("cells"):
        return None
    cells = engine.lake("cells")
    return cells.select(_cell=cells.cell_id, _cell_known=ibis.literal(True)).distinct()


def local_now() -> dt.datetime:
    """Return the current Beijing local time (UTC+8), without a time zone."""
    return (dt.datetime.now(dt.UTC) + _LOCAL_OFFSET).replace(tzinfo=None)


@dataclass
class IdentityFigures:
    """How consistently a subscriber's ids map across channels."""

    subscribers: int
    consistent: int
    several_imsis: int
    shared_imsis: int
    several_imeis: int
    shared_imeis: int
    not_in_subscriber_table: int
    conflicts: list[dict[str, str]] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of subscribers whose ids map one to one (1.0 when none)."""
        return self.consistent / self.subscribers if self.subscribers else 1.0


def _subscribers_of(engine: Engine, kind: str) -> ibis.Table | None:
    if not engine.has_lake(kind):
        return None
    table = engine.lake(kind)
    return table.filter(table.subscriber.notnull()).select("subscriber").distinct()


def identity_consistency(engine: Engine, listed: int = 20) -> IdentityFigures | None:
    """Return how one-to-one subscribers, IMSIs and IMEIs are across channels.

    A subscriber (MSISDN token) is consistent when, across signalling and the
    subscriber table, it has exactly one IMSI token and one IMEI token, that
    IMSI and IMEI belong to no other subscriber, and it is in the subscriber
    table. Signalling, DPI and the subscriber table each contribute the
    subscribers they see. Returns None without a subscriber table.
    """
    if not engine.has_lake("subscribers"):
        return None
    triples = []
    for kind in ("signalling", "subscribers"):
        if engine.has_lake(kind):
            table = engine.lake(kind)
            triples.append(
                table.filter(table.subscriber.notnull())
                .select("subscriber", "imsi_token", "imei_token")
                .distinct()
                .to_pyarrow()
            )
    # The distinct id triples are few (about one per subscriber): reading them
    # once keeps the big tables out of the joins below.
    ids = ibis.memtable(pa.concat_tables(triples))
    seen_parts = [ids.select("subscriber")]
    dpi = _subscribers_of(engine, "dpi")
    if dpi is not None:
        seen_parts.append(ibis.memtable(dpi.to_pyarrow()))
    # ``union`` of a single table returns it as it is, duplicates and all.
    seen = ibis.union(*seen_parts, distinct=True).distinct()
    registered = _subscribers_of(engine, "subscribers")

    flags: dict[str, ibis.Table] = {}
    conflict_tables = []
    for token, several, shared in (
        ("imsi_token", "several_imsis", "shared_imsis"),
        ("imei_token", "several_imeis", "shared_imeis"),
    ):
        links = ids.filter(ids[token].notnull()).select("subscriber", token).distinct()
        per_subscriber = links.group_by("subscriber").aggregate(_n=links.count())
        per_token = links.group_by(token).aggregate(_m=links.count())
        flags[several] = per_subscriber.filter(per_subscriber._n > 1).select(
            "subscriber"
        )
        shared_tokens = per_token.filter(per_token._m > 1).select(token)
        flags[shared] = links.semi_join(shared_tokens, token).select("subscriber")
        conflicted = links.semi_join(flags[several], "subscriber").union(
            links.semi_join(shared_tokens, token)
        )
        conflict_tables.append(
            conflicted.distinct().select(
                subscriber="subscriber",
                kind=ibis.literal(token.removesuffix("_token")),
                token=token,
            )
        )

    counts = {
        name: seen.semi_join(table.distinct(), "subscriber").count().execute()
        for name, table in flags.items()
    }
    bad = ibis.union(*(t.select("subscriber") for t in flags.values()), distinct=True)
    outside = seen.anti_join(registered, "subscriber")
    consistent = seen.anti_join(bad, "subscriber").anti_join(outside, "subscriber")
    pairs = (
        ibis.union(*conflict_tables)
        .order_by(["subscriber", "kind", "token"])
        .limit(listed)
        .to_pyarrow()
        .to_pylist()
        if listed
        else []
    )
    return IdentityFigures(
        subscribers=int(seen.count().execute()),
        consistent=int(consistent.count().execute()),
        not_in_subscriber_table=int(outside.count().execute()),
        conflicts=pairs,
        **{name: int(value) for name, value in counts.items()},
    )
