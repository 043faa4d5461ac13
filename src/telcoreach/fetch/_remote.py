"""What a delivery channel offers: remote files and the transports that read them."""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol

__all__ = ["RemoteFile", "TransferInterruptedError", "Transport", "matching"]

logger = logging.getLogger(__name__)

_PLAIN_NAME = re.compile(r"^[^/\\\x00]+$")


@dataclass(frozen=True)
class RemoteFile:
    """One file offered by a source.

    Parameters
    ----------
    name : str
        File name (no folder part); the name it gets in the inbox.
    size : int or None
        Size in bytes, when the channel says it.
    version : str or None
        Modification time, ETag or Last-Modified: changes when the file does.
    sha256 : str or None
        SHA-256 announced by the channel (an HTTP listing may carry it).
    location : str
        Where the transport reads it (a path or a URL).
    modified_ns : int or None
        Modification time (ns since the epoch) the inbox copy keeps, when it
        is the real arrival time (a drop folder). None: the copy is stamped
        with the fetch time, the arrival at the carrier's side (SFTP, HTTP).
    """

    name: str
    size: int | None
    version: str | None
    sha256: str | None
    location: str
    modified_ns: int | None = None

    def identity(self) -> dict[str, object]:
        """Return what identifies this version of the file."""
        return {"size": self.size, "version": self.version, "sha256": self.sha256}


class TransferInterruptedError(Exception):
    """A connection dropped or timed out; the transfer can resume later."""


class Transport(Protocol):
    """A delivery channel: lists files and copies one from a byte offset."""

    def list_files(self) -> list[RemoteFile]:
        """Return the files the source offers (before the name pattern)."""
        ...

    def download(self, remote: RemoteFile, sink: BinaryIO, offset: int) -> None:
        """Append ``remote``'s bytes from ``offset`` to ``sink``.

        Raises :class:`TransferInterruptedError` when the connection fails; the
        bytes written so far stay in ``sink``. A transport that cannot start
        at ``offset`` truncates ``sink`` and writes the whole file.
        """
        ...

    def reset(self) -> None:
        """Drop the connection, so the next call opens a new one."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def matching(files: list[RemoteFile], pattern: str) -> list[RemoteFile]:
    """Return the files whose name matches ``pattern``, sorted by name.

    Names with a folder part, hidden names and ``.part`` files are left out:
    a name becomes a path in the inbox, so it must stay inside it.
    """
    kept = []
    for remote in files:
        plain = _PLAIN_NAME.match(remote.name) and remote.name not in {".", ".."}
        if not plain:
            logger.warning("skipping a remote name with a folder part or a NUL byte")
            continue
        if remote.name.startswith(".") or remote.name.endswith(".part"):
            continue
        if fnmatch.fnmatchcase(remote.name, pattern):
            kept.append(remote)
    return sorted(kept, key=lambda remote: remote.name)
