"""A local or mounted folder as a delivery channel."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from telcoreach.errors import DataSourceError
from telcoreach.fetch._remote import RemoteFile, TransferInterruptedError

__all__ = ["FolderTransport"]

_BLOCK = 1 << 20


class FolderTransport:
    """Copy files from a folder (a drop folder, an NFS or SMB mount)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def list_files(self) -> list[RemoteFile]:
        """Return the regular files directly inside the folder."""
        if not self.folder.is_dir():
            raise DataSourceError(
                f"fetch folder {self.folder} does not exist or is not a folder; "
                "check fetch.path (relative paths start at the workspace)"
            )
        files = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=True):
                    continue
                stat = entry.stat()
                files.append(
                    RemoteFile(
                        name=entry.name,
                        size=stat.st_size,
                        version=str(stat.st_mtime_ns),
                        sha256=None,
                        location=entry.path,
                        # The drop-folder time is when the carrier delivered.
                        modified_ns=stat.st_mtime_ns,
                    )
                )
        return files

    def download(self, remote: RemoteFile, sink: BinaryIO, offset: int) -> None:
        """Append the file's bytes from ``offset`` to ``sink``."""
        try:
            with open(remote.location, "rb") as source:
                source.seek(offset)
                shutil.copyfileobj(source, sink, _BLOCK)
        except FileNotFoundError:
            raise DataSourceError(
                f"{remote.name} disappeared from {self.folder} while being fetched; "
                "run fetch again once the delivery is complete"
            ) from None
        except OSError as error:
            # A network mount that stalls or drops is worth another attempt.
            raise TransferInterruptedError(str(error)) from error

    def reset(self) -> None:
        """Nothing to reconnect for a folder."""

    def close(self) -> None:
        """Nothing to release for a folder."""
