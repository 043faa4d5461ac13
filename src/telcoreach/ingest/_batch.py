"""Ingest a batch of files of one record kind into the lake.

A batch is identified by the content hashes of its files: a file already
ingested is skipped, so re-running a batch adds nothing. Rows are validated
and pseudonymised in streaming chunks, deduplicated within the batch and
against the lake, written to a staging folder and committed atomically.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from telcoreach.engine import Engine
from telcoreach.errors import DataSourceError
from telcoreach.ingest._validate import QUARANTINE_SCHEMA, validate_chunk
from telcoreach.lake import BatchRecord, Lake
from telcoreach.privacy import redact_digit_runs
from telcoreach.quality._arrival import (
    batch_quality_record,
    chunk_time_stats,
    file_arrival,
    file_day,
    source_quality_record,
)
from telcoreach.schemas import RecordSchema, schema_for
from telcoreach.workspace import Workspace

__all__ = ["IngestSummary", "ProgressCallback", "SourceChunks", "ingest_batch"]

logger = logging.getLogger(__name__)

#: ``callback(description, done, total)`` reports progress of long work.
ProgressCallback = Callable[[str, int, int], None]

_BLOCK_BYTES = 32 << 20
_DUPLICATE_IN_BATCH = "duplicate: same key as an earlier row of this batch"
_DUPLICATE_IN_LAKE = "duplicate: same key as a row already in the lake"


@dataclass
class SourceChunks:
    """One input source: its name, identity hash and a stream of row chunks.

    ``chunks`` yields ``(table, first_line)`` pairs. ``rejected`` collects
    rows the reader itself could not parse (already in quarantine layout).
    """

    name: str
    sha256: str
    size: int
    chunks: Iterator[tuple[pa.Table, int | pa.Array]]
    check_ids: bool = True
    rejected: list[pa.Table] = field(default_factory=list)
    #: When the file arrived (UTC epoch seconds), for freshness checks.
    arrived_at: float | None = None


@dataclass
class IngestSummary:
    """What one ``ingest`` did."""

    kind: str
    batch_id: str | None
    files: int
    files_skipped: int
    rows_in: int = 0
    rows_stored: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    days: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped_sources: list[str] = field(default_factory=list)
    #: Rows of erased subscribers (``telcoreach forget``), dropped, not stored.
    rows_forgotten: int = 0
    #: Personal data masked in free-text fields, by kind (mobile, id_card...).
    pii_masked: dict[str, int] = field(default_factory=dict)
    #: New inputs that held no data row (empty or a header only).
    empty_sources: list[str] = field(default_factory=list)

    @property
    def rows_quarantined(self) -> int:
        """Rows sent to quarantine."""
        return sum(self.quarantined.values())

    @property
    def status(self) -> str:
        """Return the outcome: ``stored``, ``nothing stored`` or why not stored.

        ``already ingested``, ``no data rows`` (the new inputs held none) or
        ``all rows erased`` (every row was of an erased subscriber).
        """
        if self.batch_id is None:
            return "no data rows" if self.empty_sources else "already ingested"
        if self.rows_stored:
            return "stored"
        if self.rows_forgotten and not self.rows_quarantined:
            return "all rows erased"  # every row was of an erased subscriber
        return "nothing stored"

    @property
    def problem(self) -> str | None:
        """Return why nothing was stored (top quarantine reasons), else None."""
        if self.status == "no data rows":
            names = ", ".join(self.empty_sources)
            return (
                f"file {names} has no data rows (empty or a header only); expected "
                f"at least one row of {self.kind}; nothing was stored, so the file "
                "can be ingested again once it is delivered in full"
            )
        if self.status != "nothing stored":
            return None
        top = sorted(self.quarantined.items(), key=lambda item: -item[1])[:3]
        reasons = "; ".join(f"{reason} ({rows:,} rows)" for reason, rows in top)
        more = len(self.quarantined) - len(top)
        others = f"; and {more} other reasons" if more > 0 else ""
        return (
            f"no row of {self.kind} could be stored: all {self.rows_quarantined:,} "
            f"rows went to the quarantine (batch {self.batch_id}). Top reasons: "
            f"{reasons}{others}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "kind": self.kind,
            "status": self.status,
            "batch_id": self.batch_id,
            "files": self.files,
            "files_skipped": self.files_skipped,
            "skipped_sources": self.skipped_sources,
            "empty_sources": self.empty_sources,
            "rows_in": self.rows_in,
            "rows_stored": self.rows_stored,
            "rows_quarantined": self.rows_quarantined,
            "quarantined_by_reason": self.quarantined,
            "rows_forgotten": self.rows_forgotten,
            "pii_masked": self.pii_masked,
            "days": len(self.days),
            "first_day": self.days[0] if self.days else None,
            "last_day": self.days[-1] if self.days else None,
            "seconds": round(self.seconds, 2),
            "problem": self.problem,
        }


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _drop_forgotten(
    valid: pa.Table, rejected: pa.Table, forgotten: pa.Array
) -> tuple[pa.Table, pa.Table, int]:
    """Remove rows of erased subscribers; return what is left and rows dropped.

    A quarantined row names its subscriber as ``subscriber=<token>`` in its
    text, so erased people leave no trace in the quarantine either.
    """
    dropped = 0
    if "subscriber" in valid.column_names and valid.num_rows:
        erased = pc.is_in(valid.column("subscriber"), value_set=forgotten)
        erased = pc.fill_null(erased, False)
        dropped += pc.sum(erased).as_py() or 0
        valid = valid.filter(pc.invert(erased))
    if rejected.num_rows:
        named = pc.extract_regex(
            rejected.column("row"), r"(?:^|\| )subscriber=(?P<token>[a-z2-7]{24})"
        )
        erased = pc.fill_null(
            pc.is_in(pc.struct_field(named, "token"), value_set=forgotten), False
        )
        dropped += pc.sum(erased).as_py() or 0
        rejected = rejected.filter(pc.invert(erased))
    return valid, rejected, dropped


def _garbage_rows(path: Path, name: str, kind: str, reason: str) -> pa.Table:
    """Quarantine every line of an unreadable file with one reason."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    count = len(lines)
    return pa.table(
        {
            "kind": pa.array([kind] * count, pa.string()),
            "source_file": pa.array([name] * count, pa.string()),
            "line": pa.array(range(1, count + 1), pa.int64()),
            "reason": pa.array([reason] * count, pa.string()),
            "detail": pa.nulls(count, pa.string()),
            "row": redact_digit_runs(
                pa.array([line[:500] for line in lines], pa.string())
            ),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _read_header(path: Path) -> list[str] | None:
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16)
    except (OSError, pa.ArrowInvalid):
        return None
    line = head.split(b"\n", 1)[0]
    try:
        first = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        if _guess_encoding(line) is not None:
            raise _not_utf8(path) from None
        return None  # binary garbage: quarantined line by line
    names = [name.strip().strip('"') for name in first.rstrip("\r\n").split(",")]
    return names if any(names) else None


def _guess_encoding(data: bytes) -> str | None:
    """Return ``gbk`` when ``data`` reads as Chinese GBK/GB18030 text, else None."""
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\r\t" for ch in text)
    return "gbk" if text and printable == len(text) else None


def _first_invalid_utf8(path: Path) -> tuple[int, int, bytes] | None:
    """Return (byte offset, line, that line's bytes) of the first non-UTF-8 byte.

    Reads the (decompressed) file in blocks; a multi-byte character cut by a
    block boundary is carried over to the next block.
    """
    offset = 0
    newlines = 0
    carry = b""
    with pa.input_stream(str(path), compression="detect") as stream:
        while True:
            block = stream.read(1 << 20)
            data = carry + block
            if not data:
                return None
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as error:
                cut = error.start
                if block and error.end == len(data) and len(data) - cut < 4:
                    carry = data[cut:]  # maybe a character cut by the block end
                else:
                    start = data.rfind(b"\n", 0, cut) + 1
                    stop = data.find(b"\n", cut)
                    line_bytes = data[start : stop if stop >= 0 else len(data)]
                    return (
                        offset + cut,
                        newlines + data.count(b"\n", 0, cut) + 1,
                        line_bytes,
                    )
            else:
                cut, carry = len(data), b""
            if not block:
                return None
            newlines += data.count(b"\n", 0, cut)
            offset += cut


def _not_utf8(path: Path) -> DataSourceError:
    """Return the error for a text file that is not UTF-8, naming where and how.

    The message never quotes the file's content.
    """
    where = ""
    guess = None
    try:
        found = _first_invalid_utf8(path)
    except (OSError, pa.ArrowInvalid):
        found = None
    if found is not None:
        offset, line, line_bytes = found
        where = f" at line {line} (byte offset {offset})"
        guess = _guess_encoding(line_bytes)
    source = f"-f {guess}" if guess else "-f ENCODING"
    looks = f"; it looks like {guess.upper()} (Chinese)" if guess else ""
    gzipped = path.name.endswith(".gz")
    command = (
        f"gunzip -c {path} | iconv {source} -t utf-8 > {path.with_suffix('')}.utf8"
        if gzipped
        else f"iconv {source} -t utf-8 {path} > {path}.utf8"
    )
    return DataSourceError(
        f"{path} is not UTF-8 text: invalid byte{where}; expected UTF-8{looks}. "
        f"Convert it with `{command}` and ingest the converted file; nothing "
        "was stored"
    )


def csv_source(path: Path, schema: RecordSchema) -> SourceChunks:
    """Return a streaming reader of a carrier CSV file (optionally gzip)."""
    name = path.name
    source = SourceChunks(name, file_sha256(path), path.stat().st_size, iter(()))
    source.arrived_at = file_arrival(path)
    header = _read_header(path)
    missing = [
        f.name for f in schema.fields if f.required and f.name not in (header or [])
    ]
    if header is None or missing:
        found = ", ".join(header[:12]) if header else "no readable header"
        reason = (
            f"file header does not match kind {schema.kind}: missing "
            f"{', '.join(missing) or 'every column'} (expected "
            f"{', '.join(schema.field_names)}; found {found})"
        )
        source.rejected.append(_garbage_rows(path, name, schema.kind, reason))
        return source

    bad_lines: list[int] = []
    bad_rows: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        line = row.number if row.number is not None else -1
        bad_lines.append(line)
        bad_rows.append(
            (line, row.text[:500], row.expected_columns, row.actual_columns)
        )
        return "skip"

    def chunks() -> Iterator[tuple[pa.Table, pa.Array]]:
        try:
            yield from read()
        except pa.ArrowInvalid as error:
            if "UTF8" in str(error) or "UTF-8" in str(error):
                raise _not_utf8(path) from None
            # Arrow may quote the offending row: keep only its first clause.
            message = str(error).split(":", 1)[0]
            raise DataSourceError(
                f"{path} could not be read as CSV ({message}); expected a "
                "comma-separated UTF-8 file with a header line; nothing was stored"
            ) from None

    def read() -> Iterator[tuple[pa.Table, pa.Array]]:
        reader = pacsv.open_csv(
            pa.input_stream(str(path), compression="detect"),
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
            ),
        )
        parsed_rows = 0
        for batch in reader:
            table = pa.Table.from_batches([batch])
            lines = _line_numbers(parsed_rows, table.num_rows, bad_lines)
            parsed_rows += table.num_rows
            yield table, lines
        if bad_rows:
            source.rejected.append(_unparsable_rows(bad_rows, name, schema.kind))

    source.chunks = chunks()
    return source


def _line_numbers(offset: int, count: int, skipped: list[int]) -> pa.Array:
    """Return file line numbers of parsed rows ``offset..offset+count``.

    Line 1 is the header; rows the parser skipped shift the numbering.
    """
    import numpy as np

    logical = np.arange(offset, offset + count, dtype=np.int64) + 2
    if skipped:
        known = np.sort(np.array([s for s in skipped if s >= 0], dtype=np.int64))
        # Each skipped physical line at or before a row's position pushes it down.
        shift = np.searchsorted(known, logical, side="right")
        logical = logical + shift
        shift_again = np.searchsorted(known, logical, side="right")
        logical = logical + (shift_again - shift)
    return pa.array(logical)


def _unparsable_rows(
    rows: list[tuple[int, str, int, int]], name: str, kind: str
) -> pa.Table:
    count = len(rows)
    return pa.table(
        {
            "kind": pa.array([kind] * count, pa.string()),
            "source_file": pa.array([name] * count, pa.string()),
            "line": pa.array([line for line, *_ in rows], pa.int64()),
            "reason": pa.array(
                ["row has the wrong number of columns"] * count, pa.string()
            ),
            "detail": pa.array(
                [f"expected {e} columns, found {a}" for _, _, e, a in rows],
                pa.string(),
            ),
            "row": redact_digit_runs(
                pa.array([text for _, text, *_ in rows], pa.string())
            ),
        },
        schema=QUARANTINE_SCHEMA,
    )


def parquet_source(path: Path) -> SourceChunks:
    """Return a streaming reader of a Parquet file."""
    parquet = pq.ParquetFile(path)

    def chunks() -> Iterator[tuple[pa.Table, int]]:
        line = 1
        for batch in parquet.iter_batches(batch_size=1 << 20):
            yield pa.Table.from_batches([batch]), line
            line += batch.num_rows

    source = SourceChunks(path.name, file_sha256(path), path.stat().st_size, chunks())
    source.arrived_at = file_arrival(path)
    return source


def table_source(
    name: str, table: pa.Table, identity: str, *, check_ids: bool = False
) -> SourceChunks:
    """Wrap a table made by an adapter as a source with a stable identity."""
    sha = hashlib.sha256(identity.encode()).hexdigest()
    return SourceChunks(
        name, sha, table.nbytes, iter([(table, 1)]), check_ids=check_ids
    )


def file_sources(kind: str, paths: Iterable[Path]) -> list[SourceChunks]:
    """Return readers for CSV (``.csv``, ``.csv.gz``, ``.txt``) and Parquet files.

    Folders are expanded to the data files they contain, sorted by name.
    """
    schema = schema_for(kind)
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and _is_data(p))
            )
        elif path.is_file():
            expanded.append(path)
        else:
            raise DataSourceError(
                f"input {path} does not exist; expected a CSV/Parquet file or a "
                "folder of them"
            )
    if not expanded:
        raise DataSourceError(
            f"no data files (.csv, .csv.gz, .txt, .parquet) in "
            f"{', '.join(str(p) for p in paths)}"
        )
    return [
        parquet_source(p) if p.suffix == ".parquet" else csv_source(p, schema)
        for p in expanded
    ]


def _is_data(path: Path) -> bool:
    return path.suffix in {".csv", ".parquet", ".txt"} or path.name.endswith(".csv.gz")


def ingest_batch(
    workspace: Workspace,
    kind: str,
    sources: list[SourceChunks],
    *,
    progress: ProgressCallback | None = None,
) -> IngestSummary:
    """Validate, pseudonymise, deduplicate and commit a batch of ``kind``.

    Parameters
    ----------
    workspace : Workspace
        Target workspace.
    kind : str
        Record kind (see :data:`telcoreach.schemas.KINDS`).
    sources : list of SourceChunks
        Inputs; sources whose content hash was ingested before are skipped.
    progress : callable, optional
        ``progress(description, done, total)`` after each source.

    Returns
    -------
    IngestSummary
        Rows in, stored and quarantined by reason.
    """
    started = time.perf_counter()
    schema = schema_for(kind)
    lake = Lake(workspace.lake)
    lake.recover()

    known = lake.known_source_hashes(kind)
    fresh = [s for s in sources if s.sha256 not in known]
    summary = IngestSummary(
        kind=kind,
        batch_id=None,
        files=len(sources),
        files_skipped=len(sources) - len(fresh),
        skipped_sources=[s.name for s in sources if s.sha256 in known],
    )
    if not fresh:
        logger.info(
            "%s: all %d inputs were ingested before; nothing added", kind, len(sources)
        )
        summary.seconds = time.perf_counter() - started
        return summary

    batch_id = hashlib.sha256(
        (kind + "".join(sorted(s.sha256 for s in fresh))).encode()
    ).hexdigest()[:16]
    staging = lake.staging_dir(batch_id)
    empty: list[str] = []
    try:
        pseudonymiser = workspace.pseudonymiser
        reasons: Counter[str] = Counter()
        rows_in = 0
        forgotten = pa.array(sorted(workspace.forgotten_tokens()), pa.string())
        forgotten_counts: list[int] = []
        source_quality: dict[int, dict[str, Any]] = {}
        pii_masked: Counter[str] = Counter()

        def stage(number: int, source: SourceChunks) -> tuple[int, Counter[str]]:
            """Validate one source into staging files; return rows read, PII masked."""
            rows = 0
            part = 0
            checks: Counter[str] = Counter()
            masked: Counter[str] = Counter()
            time_parts: list[dict[str, Any]] = []
            day = file_day(source.name) if schema.time_field else None
            for chunk, first_line in source.chunks:
                result = validate_chunk(
                    schema,
                    chunk,
                    pseudonymiser,
                    source_file=source.name,
                    first_line=first_line,
                    check_ids=source.check_ids,
                )
                rows += chunk.num_rows
                checks.update(result.checks)
                masked.update(result.pii_masked)
                if schema.time_field is not None:
                    time_parts.append(
                        chunk_time_stats(
                            result.valid,
                            schema.time_field,
                            day=day,
                            arrived_at_s=source.arrived_at,
                        )
                    )
                valid, rejected = result.valid, result.rejected
                if len(forgotten):
                    valid, rejected, dropped = _drop_forgotten(
                        valid, rejected, forgotten
                    )
                    forgotten_counts.append(dropped)
                name = f"{number:05d}-{part:05d}.parquet"
                if valid.num_rows:
                    pq.write_table(valid, staging / f"valid-{name}")
                if rejected.num_rows:
                    pq.write_table(rejected, staging / f"rejected-{name}")
                part += 1
            for rejected in source.rejected:
                rows += rejected.num_rows
                name = f"{number:05d}-{part:05d}.parquet"
                pq.write_table(rejected, staging / f"rejected-{name}")
                part += 1
            source_quality[number] = source_quality_record(
                source.name, source.arrived_at, day, checks, time_parts
            )
            return rows, masked

        # Arrow compute releases the GIL, so files validate in parallel.
        threads = workspace.config.engine.threads
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pending = {
                pool.submit(stage, n, s): s.name for n, s in enumerate(fresh, start=1)
            }
            for done, future in enumerate(as_completed(pending), start=1):
                rows, masked = future.result()
                rows_in += rows
                if not rows:
                    empty.append(pending[future])
                pii_masked.update(masked)
                if progress:
                    progress(f"ingest {kind}", done, len(fresh))

        summary.empty_sources = sorted(empty)
        if empty and rows_in:
            logger.warning("%s: no data rows in %s", kind, ", ".join(sorted(empty)))
        if not rows_in:
            # Nothing to commit: leave no record, so a full re-delivery is ingested.
            shutil.rmtree(staging, ignore_errors=True)
            summary.seconds = time.perf_counter() - started
            return summary

        seq = lake.next_seq()
        stored, days, duplicates = _deduplicate_and_partition(
            Engine(workspace), schema, staging, batch_id, seq
        )
        rejected_path = staging / "quarantine.parquet"
        rejected_table = _collect_rejected(staging, duplicates)
        if rejected_table.num_rows:
            pq.write_table(rejected_table, rejected_path)
            reasons.update(rejected_table.column("reason").to_pylist())

        moves: list[tuple[Path, Path]] = []
        files: list[str] = []
        for day in days:
            for index, staged in enumerate(
                sorted((staging / "out" / f"day={day}").glob("*.parquet"))
            ):
                target = lake.partition_dir(kind, day) / f"{batch_id}-{index}.parquet"
                moves.append((staged, target))
                files.append(str(target.relative_to(lake.root)))
        quarantine_files: list[str] = []
        if rejected_table.num_rows:
            target = lake.quarantine_dir(kind) / f"{batch_id}.parquet"
            moves.append((rejected_path, target))
            quarantine_files.append(str(target.relative_to(lake.root)))

        rows_forgotten = sum(forgotten_counts)
        if stored + sum(reasons.values()) + rows_forgotten != rows_in:
            raise DataSourceError(
                f"internal accounting error in batch {batch_id}: {rows_in} rows "
                f"read but {stored} stored, {sum(reasons.values())} quarantined and "
                f"{rows_forgotten} dropped as erased; the batch was not committed, "
                "please report this"
            )
        record = BatchRecord(
            batch_id=batch_id,
            kind=kind,
            seq=seq,
            sources=[
                {"name": s.name, "sha256": s.sha256, "size": s.size} for s in fresh
            ],
            files=files,
            quarantine_files=quarantine_files,
            rows_in=rows_in,
            rows_stored=stored,
            quarantined=dict(reasons.most_common()),
            days=days,
            rows_forgotten=rows_forgotten,
            quality=batch_quality_record(list(source_quality.values())),
        )
        lake.commit(record, moves)
    except BaseException:
        # A failed batch leaves neither staged files nor lake changes behind.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.rows_forgotten = rows_forgotten
    summary.pii_masked = {pii: n for pii, n in pii_masked.most_common() if n}
    if rows_forgotten:
        logger.info(
            "%s batch %s: %d rows of erased subscribers dropped",
            kind,
            batch_id,
            rows_forgotten,
        )

    summary.batch_id = batch_id
    summary.rows_in = record.rows_in
    summary.rows_stored = stored
    summary.quarantined = record.quarantined
    summary.days = days
    summary.seconds = time.perf_counter() - started
    logger.info(
        "%s batch %s: %d rows in, %d stored, %d quarantined",
        kind,
        batch_id,
        summary.rows_in,
        stored,
        summary.rows_quarantined,
    )
    return summary


def _collect_rejected(staging: Path, duplicates: pa.Table) -> pa.Table:
    tables = [pq.read_table(p) for p in sorted(staging.glob("rejected-*.parquet"))]
    tables = [t.cast(QUARANTINE_SCHEMA) for t in tables]
    if duplicates.num_rows:
        tables.append(duplicates)
    if not tables:
        return QUARANTINE_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def _row_text(table: ibis.Table, columns: list[str]) -> ibis.StringValue:
    parts = [
        ibis.literal(f"{name}=") + table[name].cast("string").fill_null("")
        for name in columns
    ]
    text = parts[0]
    for part in parts[1:]:
        text = text + " | " + part
    return text


def _deduplicate_and_partition(
    engine: Engine, schema: RecordSchema, staging: Path, batch_id: str, seq: int
) -> tuple[int, list[str], pa.Table]:
    """Drop duplicates, write day partitions to ``staging/out``.

    Returns rows stored, the days written and the duplicate rows in
    quarantine layout.
    """
    valid_files = sorted(str(p) for p in staging.glob("valid-*.parquet"))
    if not valid_files:
        return 0, [], QUARANTINE_SCHEMA.empty_table()
    con = engine.scratch()
    staged = con.read_parquet(valid_files, table_name="staged")
    key = list(schema.stored_key)
    data_columns = [c for c in staged.columns if not c.startswith("_")]

    # Rank only rows whose key occurs twice: a hash aggregate finds them far
    # faster than a window over the whole batch.
    repeated = (
        staged.group_by(key)
        .aggregate(_copies=staged.count())
        .filter(lambda t: t._copies > 1)
        .select(key)
    )
    suspects = staged.semi_join(repeated, key)
    rank = ibis.row_number().over(
        group_by=key, order_by=[suspects._source_file, suspects._line]
    )
    ranked = con.create_table("ranked", suspects.mutate(_rank=rank), temp=True)
    first = staged.anti_join(repeated, key).union(
        ranked.filter(ranked._rank == 0).drop("_rank")
    )
    duplicate_parts = [
        ranked.filter(ranked._rank > 0)
        .drop("_rank")
        .mutate(_reason=ibis.literal(_DUPLICATE_IN_BATCH))
    ]

    existing_files = [str(p) for p in engine.lake_store.files(schema.kind)]
    if existing_files and schema.time_field is not None:
        bounds = first.aggregate(
            low=first[schema.time_field].min(), high=first[schema.time_field].max()
        ).to_pyarrow()
        low, high = bounds["low"][0].as_py(), bounds["high"][0].as_py()
        existing = con.read_parquet(existing_files, table_name="existing")
        existing_keys = (
            existing.filter(existing[schema.time_field].between(low, high))
            .select(key)
            .distinct()
        )
        duplicate_parts.append(
            first.semi_join(existing_keys, key).mutate(
                _reason=ibis.literal(_DUPLICATE_IN_LAKE)
            )
        )
        first = first.anti_join(existing_keys, key)

    if schema.time_field is not None:
        day = first[schema.time_field].date().cast("string")
    else:
        day = ibis.literal(time.strftime("%Y-%m-%d"))
    output = first.select(*data_columns, _batch_seq=ibis.literal(seq, "int32"), day=day)
    out_dir = staging / "out"
    con.to_parquet(output, out_dir, partition_by="day", filename_pattern="part_{i}")
    days = sorted(p.name.removeprefix("day=") for p in out_dir.glob("day=*"))
    stored = sum(
        pq.ParquetFile(p).metadata.num_rows for p in out_dir.rglob("*.parquet")
    )

    duplicates = (
        ibis.union(*duplicate_parts)
        if len(duplicate_parts) > 1
        else (duplicate_parts[0])
    )
    duplicate_rows = duplicates.select(
        kind=ibis.literal(schema.kind),
        source_file=duplicates._source_file,
        line=duplicates._line.cast("int64"),
        reason=duplicates._reason,
        detail=ibis.literal(None, "string"),
        row=_row_text(duplicates, data_columns),
    ).to_pyarrow()
    con.disconnect()
    return stored, days, duplicate_rows.cast(QUARANTINE_SCHEMA)
