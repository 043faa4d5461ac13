"""Erase one subscriber everywhere the workspace holds them (PIPL Art. 47).

``forget`` removes a subscriber token from

- the lake: every Parquet file holding one of their rows is rewritten
  without it, and the new files replace the old in a single atomic manifest
  update (see :meth:`telcoreach.lake.Lake.replace_files`);
- the quarantine: rejected rows whose text names the token;
- the warehouse: every table with a ``subscriber`` column (profiles, tiers,
  scores, stay points, consent events...);
- exports: CSV lines naming the token in ``exports/``;

then scans everything again and reports, per table, rows removed and rows
remaining (which must be 0). The token goes on the workspace's forget list
(``forgotten.tokens``) before anything is erased, so an interrupted erasure
can be re-run, and ingest drops rows of forgotten subscribers: re-ingesting
an old file does not bring them back.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcoreach.errors import ConsentError
from telcoreach.lake import Lake

__all__ = ["ForgetSummary", "forget_subscriber"]

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"^[a-z2-7]{24}$")


@dataclass
class ForgetSummary:
    """Rows removed and remaining per place, for one erased subscriber."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    files_rewritten: int = 0
    exports_rewritten: int = 0
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        """Rows still naming the subscriber after the erasure (0 when complete)."""
        return sum(item["remaining"] for item in self.tables)

    @property
    def removed(self) -> int:
        """Rows removed in all places."""
        return sum(item["removed"] for item in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "removed": self.removed,
            "remaining": self.remaining,
            "complete": self.remaining == 0,
            "files_rewritten": self.files_rewritten,
            "exports_rewritten": self.exports_rewritten,
            "tables": self.tables,
            "seconds": round(self.seconds, 2),
        }


def _add_to_forget_list(workspace: Any, token: str) -> bool:
    if token in workspace.forgotten_tokens():
        return False
    with workspace.forget_list_path.open("a", encoding="utf-8") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _naming(table: pa.Table, token: str, quarantine: bool) -> pa.Array:
    """Return a mask of rows that belong to ``token``."""
    if quarantine:
        masks = [
            pc.fill_null(pc.match_substring(table.column(c), token), False)
            for c in ("row", "detail")
            if c in table.column_names
        ]
        mask = masks[0]
        for other in masks[1:]:
            mask = pc.or_(mask, other)
        return mask
    if "subscriber" not in table.column_names:
        return pa.array([False] * table.num_rows)
    return pc.fill_null(pc.equal(table.column("subscriber"), token), False)


def _columns_to_check(path: Path, quarantine: bool) -> list[str]:
    names = pq.ParquetFile(path).schema_arrow.names
    wanted = ("row", "detail") if quarantine else ("subscriber",)
    return [n for n in names if n in wanted]


def _count_in_file(path: Path, token: str, quarantine: bool) -> int:
    columns = _columns_to_check(path, quarantine)
    if not columns:
        return 0
    table = pq.read_table(path, columns=columns)
    return pc.sum(_naming(table, token, quarantine)).as_py() or 0


def _erase_from_lake(lake: Lake, token: str, stamp: str) -> tuple[dict[str, int], int]:
    """Rewrite lake files without ``token``; return removed rows per place."""
    replacements: dict[str, str | None] = {}
    erased: dict[str, tuple[int, int]] = {}
    removed: dict[str, int] = {}
    for record in lake.batches():
        rows = quarantined = 0
        listed = [(f, False) for f in record.files]
        listed += [(f, True) for f in record.quarantine_files]
        for relative, quarantine in listed:
            path = lake.root / relative
            place = "quarantine" if quarantine else f"lake:{record.kind}"
            removed.setdefault(place, 0)
            if _count_in_file(path, token, quarantine) == 0:
                continue
            table = pq.read_table(path)
            mask = _naming(table, token, quarantine)
            count = pc.sum(mask).as_py() or 0
            kept = table.filter(pc.invert(mask))
            if kept.num_rows:
                target = path.with_name(f"{path.stem}-e{stamp}.parquet")
                pq.write_table(kept, target)
                replacements[relative] = str(target.relative_to(lake.root))
            else:
                replacements[relative] = None
            removed[place] += count
            if quarantine:
                quarantined += count
            else:
                rows += count
        if rows or quarantined:
            erased[record.batch_id] = (rows, quarantined)
    if replacements:
        lake.replace_files(replacements, erased)
    return removed, len(replacements)


def _rescan_lake(lake: Lake, token: str) -> dict[str, int]:
    remaining: dict[str, int] = {}
    for record in lake.batches():
        place = f"lake:{record.kind}"
        remaining[place] = remaining.get(place, 0) + sum(
            _count_in_file(lake.root / f, token, False) for f in record.files
        )
        remaining["quarantine"] = remaining.get("quarantine", 0) + sum(
            _count_in_file(lake.root / f, token, True) for f in record.quarantine_files
        )
    return remaining


def _subscriber_tables(engine: Any) -> list[str]:
    names = []
    for name in sorted(engine.con.list_tables()):
        if name.startswith("ibis_"):
            continue  # an in-memory table of this session, not warehouse data
        columns = engine.con.table(name).columns
        if "subscriber" in columns:
            names.append(name)
    return names


def _count_in_table(engine: Any, name: str, token: str) -> int:
    table = engine.con.table(name)
    return table.filter(table.subscriber == token).count().to_pyarrow().as_py()


def _erase_from_warehouse(engine: Any, token: str) -> dict[str, int]:
    removed = {}
    for name in _subscriber_tables(engine):
        count = _count_in_table(engine, name, token)
        removed[f"warehouse:{name}"] = count
        if count:
            table = engine.con.table(name)
            # Materialise first: the table cannot be replaced by a query on itself.
            kept = table.filter(
                (table.subscriber != token) | table.subscriber.isnull()
            ).to_pyarrow()
            engine.save(name, kept)
    return removed


def _erase_from_exports(exports: Path, token: str) -> tuple[int, int]:
    """Drop lines naming ``token`` from CSV exports; return (lines, files)."""
    lines_removed = files = 0
    if not exports.is_dir():
        return 0, 0
    for path in sorted(exports.rglob("*.csv")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if token not in text:
            continue
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if token not in line]
        temporary = path.with_suffix(".csv.tmp")
        temporary.write_text("".join(kept), encoding="utf-8")
        os.replace(temporary, path)
        lines_removed += len(lines) - len(kept)
        files += 1
    return lines_removed, files


def _count_in_exports(exports: Path, token: str) -> int:
    if not exports.is_dir():
        return 0
    return sum(
        path.read_text(encoding="utf-8", errors="replace").count(token)
        for path in exports.rglob("*.csv")
    )


def forget_subscriber(workspace: Any, token: str) -> ForgetSummary:
    """Erase subscriber ``token`` from lake, quarantine, warehouse and exports.

    Parameters
    ----------
    workspace : Workspace
        The workspace to erase from.
    token : str
        The subscriber token (never a phone number).

    Returns
    -------
    ForgetSummary
        Per place, rows removed and rows remaining after a fresh scan.

    Raises
    ------
    ConsentError
        If ``token`` is not a subscriber token.
    """
    from telcoreach.engine import Engine

    if not isinstance(token, str) or not _TOKEN.match(token):
        raise ConsentError(
            "forget expects a subscriber token (24 characters of a-z2-7, as in "
            "the `subscriber` column), found something else; tokenise a phone "
            "number with the workspace key first, never pass the number itself"
        )
    started = time.perf_counter()
    _add_to_forget_list(workspace, token)

    lake = Lake(workspace.lake)
    lake.recover()
    stamp = f"{time.time_ns():x}"
    removed, files = _erase_from_lake(lake, token, stamp)

    engine = Engine(workspace)
    try:
        removed.update(_erase_from_warehouse(engine, token))
        remaining = _rescan_lake(lake, token)
        for name in _subscriber_tables(engine):
            remaining[f"warehouse:{name}"] = _count_in_table(engine, name, token)
    finally:
        engine.close()
    lines, exports = _erase_from_exports(workspace.exports_dir, token)
    removed["exports"] = lines
    remaining["exports"] = _count_in_exports(workspace.exports_dir, token)

    places = sorted(set(removed) | set(remaining))
    summary = ForgetSummary(
        tables=[
            {
                "table": place,
                "removed": removed.get(place, 0),
                "remaining": remaining.get(place, 0),
            }
            for place in places
        ],
        files_rewritten=files,
        exports_rewritten=exports,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "forget: %d rows removed in %d places, %d remaining",
        summary.removed,
        len(places),
        summary.remaining,
    )
    return summary


def run_forget(workspace: Any, token: str) -> dict[str, Any]:
    """Erase a subscriber, audit the erasure and return the summary dict."""
    from telcoreach.privacy._sm import sm3

    summary = forget_subscriber(workspace, token)
    workspace.record_use(
        "forget",
        "erasure request (PIPL Art. 47)",
        tables=[item["table"] for item in summary.tables if item["removed"]],
        subscribers=1,
        details={
            # A digest, not the token: the audit log outlives the erasure.
            "token_sm3": sm3(token.encode()).hex(),
            "removed": summary.removed,
            "remaining": summary.remaining,
            "files_rewritten": summary.files_rewritten,
        },
    )
    return summary.to_dict()
