"""The Parquet lake and its manifest of committed batches.

The lake is exactly the set of files listed in ``lake/_manifest.json``. A batch
is written to a staging folder, moved into place, and only then added to the
manifest, which is replaced atomically. A crash at any point leaves files that
the manifest does not list; readers never see them and :meth:`Lake.recover`
removes them at the start of the next ingest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telcoreach.errors import WorkspaceError

__all__ = ["BatchRecord", "Lake"]

logger = logging.getLogger(__name__)

_MANIFEST = "_manifest.json"
_STAGING = "_staging"
_QUARANTINE = "_quarantine"


@dataclass
class BatchRecord:
    """One committed batch: what came in, what was stored, what was rejected."""

    batch_id: str
    kind: str
    seq: int
    sources: list[dict[str, Any]]
    files: list[str]
    quarantine_files: list[str]
    rows_in: int
    rows_stored: int
    quarantined: dict[str, int]
    days: list[str]
    ingested_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )
    #: Rows dropped at ingest because their subscriber was erased (``forget``).
    rows_forgotten: int = 0
    #: Rows (and quarantined rows) removed later by ``forget``.
    rows_erased: int = 0
    quarantine_rows_erased: int = 0
    #: Check counts and per-file arrival and day figures measured at ingest
    #: (see :mod:`telcoreach.quality`).
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        """Total rows sent to quarantine."""
        return sum(self.quarantined.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-serialisable dict."""
        return {
            "batch_id": self.batch_id,
            "kind": self.kind,
            "seq": self.seq,
            "sources": self.sources,
            "files": self.files,
            "quarantine_files": self.quarantine_files,
            "rows_in": self.rows_in,
            "rows_stored": self.rows_stored,
            "quarantined": self.quarantined,
            "days": self.days,
            "ingested_at": self.ingested_at,
            "rows_forgotten": self.rows_forgotten,
            "rows_erased": self.rows_erased,
            "quarantine_rows_erased": self.quarantine_rows_erased,
            "quality": self.quality,
        }


class Lake:
    """Read and commit batches of the lake under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        """The manifest file."""
        return self.root / _MANIFEST

    def batches(self, kind: str | None = None) -> list[BatchRecord]:
        """Return committed batches, optionally of one kind, oldest first."""
        if not self.manifest_path.exists():
            return []
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise WorkspaceError(
                f"lake manifest {self.manifest_path} is corrupt ({error}); restore "
                "it from a backup of the workspace"
            ) from None
        records = [BatchRecord(**item) for item in data.get("batches", [])]
        return [r for r in records if kind is None or r.kind == kind]

    def files(self, kind: str) -> list[Path]:
        """Return the committed Parquet files of ``kind``."""
        return [self.root / f for b in self.batches(kind) for f in b.files]

    def quarantine_files(self, kind: str | None = None) -> list[Path]:
        """Return the committed quarantine files."""
        return [self.root / f for b in self.batches(kind) for f in b.quarantine_files]

    def known_source_hashes(self, kind: str) -> dict[str, str]:
        """Return ``{sha256: batch_id}`` of every source file already ingested."""
        return {
            source["sha256"]: record.batch_id
            for record in self.batches(kind)
            for source in record.sources
        }

    def next_seq(self) -> int:
        """Return the sequence number of the next batch."""
        return max((b.seq for b in self.batches()), default=0) + 1

    def staging_dir(self, batch_id: str) -> Path:
        """Return a fresh staging folder for ``batch_id``."""
        path = self.root / _STAGING / batch_id
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def partition_dir(self, kind: str, day: str) -> Path:
        """Return the folder of one day of one kind."""
        return self.root / kind / f"day={day}"

    def quarantine_dir(self, kind: str) -> Path:
        """Return the quarantine folder of one kind."""
        return self.root / _QUARANTINE / kind

    def commit(self, record: BatchRecord, moves: list[tuple[Path, Path]]) -> None:
        """Move staged files into place, then record the batch in the manifest."""
        for source, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        self._write_manifest([*self.batches(), record])
        shutil.rmtree(self.root / _STAGING / record.batch_id, ignore_errors=True)

    def _write_manifest(self, records: list[BatchRecord]) -> None:
        """Replace the manifest atomically (write, fsync, rename)."""
        payload = {"version": 1, "batches": [r.to_dict() for r in records]}
        temporary = self.manifest_path.with_suffix(".json.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.manifest_path)

    def replace_files(
        self,
        replacements: dict[str, str | None],
        erased: dict[str, tuple[int, int]],
    ) -> int:
        """Swap committed files for rewritten copies in one manifest update.

        Parameters
        ----------
        replacements : dict
            ``{old relative path: new relative path or None}``; the new files
            must already be written under the lake (``None`` drops a file
            that has no rows left).
        erased : dict
            ``{batch_id: (rows removed, quarantined rows removed)}``.

        Returns
        -------
        int
            Old files deleted. A crash before the manifest is replaced leaves
            the old lake intact (the new files are unlisted and
            :meth:`recover` removes them); a crash after it leaves unlisted
            old files, removed the same way.
        """
        records = self.batches()
        for record in records:
            record.files = [
                new
                for old in record.files
                if (new := replacements.get(old, old)) is not None
            ]
            record.quarantine_files = [
                new
                for old in record.quarantine_files
                if (new := replacements.get(old, old)) is not None
            ]
            rows, quarantined = erased.get(record.batch_id, (0, 0))
            record.rows_erased += rows
            record.quarantine_rows_erased += quarantined
        self._write_manifest(records)
        removed = 0
        for old in replacements:
            path = self.root / old
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def recover(self) -> int:
        """Delete staging folders and files no committed batch lists.

        Returns the number of files removed.
        """
        shutil.rmtree(self.root / _STAGING, ignore_errors=True)
        listed = {
            str(self.root / f)
            for b in self.batches()
            for f in (*b.files, *b.quarantine_files)
        }
        removed = 0
        for path in self.root.rglob("*.parquet"):
            if str(path) not in listed:
                path.unlink()
                removed += 1
        if removed:
            logger.warning(
                "removed %d uncommitted files left by an interrupted run", removed
            )
        return removed
