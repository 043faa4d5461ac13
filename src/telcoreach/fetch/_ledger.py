"""The fetch ledger: which version of each remote file is already in the inbox."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telcoreach.errors import WorkspaceError
from telcoreach.fetch._remote import RemoteFile

__all__ = ["FetchLedger"]


class FetchLedger:
    """A JSON file of fetched files per source: name, size, SHA-256, version.

    The file is replaced atomically after each fetched file, so a crash
    loses at most the record of the file being fetched (which is then
    fetched again, harmlessly).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._data: dict[str, dict[str, dict[str, Any]]] = self._read()

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise WorkspaceError(
                f"fetch ledger {self.path} is corrupt ({error}); restore it from a "
                "backup, or delete it to fetch every file again"
            ) from None
        return data.get("sources", {})

    def entry(self, source: str, name: str) -> dict[str, Any] | None:
        """Return what was recorded for ``name`` of ``source``, if anything."""
        return self._data.get(source, {}).get(name)

    def is_current(self, source: str, remote: RemoteFile) -> bool:
        """Whether the version of ``remote`` the source offers was fetched already.

        A file counts as changed when its size, its version (modification
        time or ETag) or its announced SHA-256 differs from the recorded one.
        """
        entry = self.entry(source, remote.name)
        if entry is None:
            return False
        checks = (
            (remote.size, entry.get("size")),
            (remote.version, entry.get("version")),
            (remote.sha256, entry.get("sha256")),
        )
        return all(offered is None or offered == kept for offered, kept in checks)

    def record(self, source: str, remote: RemoteFile, sha256: str, size: int) -> None:
        """Record a fetched file and write the ledger."""
        self._data.setdefault(source, {})[remote.name] = {
            "size": size,
            "sha256": sha256,
            "version": remote.version,
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"sources": self._data}, indent=1, sort_keys=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
