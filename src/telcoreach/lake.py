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
        records = [*self.batches(), record]
        payload = {"version": 1, "batches": [r.to_dict() for r in records]}
        temporary = self.manifest_path.with_suffix(".json.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.manifest_path)
        shutil.rmtree(self.root / _STAGING / record.batch_id, ignore_errors=True)

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
