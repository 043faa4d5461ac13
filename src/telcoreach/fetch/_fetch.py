"""Pull new files of a configured source into the workspace inbox.

Each file is downloaded to ``fetch/partial/<source>/<name>.part``, checked
(size, and SHA-256 where the channel announces one), and only then moved
into ``inbox/<source>/`` with an atomic rename, so the inbox and the lake
never see half a file. A dropped connection is retried with exponential
backoff, resuming from the bytes already in the ``.part`` file; a ``.part``
left by a failed run is resumed by the next run if the remote file has not
changed meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telcoreach.config import Config, FetchConfig, SourceConfig
from telcoreach.errors import ConfigError, DataSourceError
from telcoreach.fetch._folder import FolderTransport
from telcoreach.fetch._http import HttpTransport
from telcoreach.fetch._ledger import FetchLedger
from telcoreach.fetch._remote import (
    RemoteFile,
    TransferInterruptedError,
    Transport,
    matching,
)
from telcoreach.fetch._sftp import SftpTransport
from telcoreach.workspace import Workspace

__all__ = ["FetchSummary", "fetch_source", "find_source", "open_transport"]

logger = logging.getLogger(__name__)

#: ``callback(description, done, total)`` after each file.
ProgressCallback = Callable[[str, int, int], None]

_MAX_BACKOFF_S = 60.0


@dataclass
class FetchSummary:
    """What one ``fetch`` did."""

    source: str
    protocol: str
    inbox: str
    listed: int = 0
    fetched: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes: int = 0
    resumed: int = 0
    retries: int = 0
    seconds: float = 0.0
    ingest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "source": self.source,
            "protocol": self.protocol,
            "inbox": self.inbox,
            "listed": self.listed,
            "fetched": len(self.fetched),
            "fetched_files": self.fetched,
            "already_fetched": self.skipped,
            "bytes": self.bytes,
            "resumed": self.resumed,
            "retries": self.retries,
            "seconds": round(self.seconds, 2),
            "ingest": self.ingest,
        }


def _source_name(source: SourceConfig) -> str:
    return source.name or source.kind


def find_source(config: Config, name: str) -> SourceConfig:
    """Return the source called ``name`` (its ``name``, else its kind).

    Raises
    ------
    ConfigError
        If no source, or more than one, has that name and a ``fetch`` section.
    """
    fetchable = [s for s in config.sources if s.fetch is not None]
    found = [s for s in fetchable if _source_name(s) == name]
    if len(found) == 1:
        return found[0]
    names = ", ".join(sorted({_source_name(s) for s in fetchable})) or "none"
    if found:
        raise ConfigError(
            f"{len(found)} sources are called {name!r}; give each a distinct "
            "`name:` in the configuration"
        )
    raise ConfigError(
        f"no source called {name!r} with a fetch section; sources that can be "
        f"fetched: {names} (see docs/delivery.md)"
    )


def _password(settings: FetchConfig) -> str | None:
    if settings.password_env is None:
        return None
    value = os.environ.get(settings.password_env)
    if value is None:
        raise ConfigError(
            f"fetch.password_env names ${settings.password_env}, which is not set; "
            f"export it with the password before running fetch"
        )
    return value


def open_transport(workspace: Workspace, settings: FetchConfig) -> Transport:
    """Return the transport of a ``fetch`` section (not yet connected)."""
    if settings.protocol == "folder":
        return FolderTransport(workspace.resolve(settings.path))
    if settings.protocol == "sftp":
        return SftpTransport(
            settings.host,
            settings.port or 22,
            settings.username,
            settings.path or ".",
            password=_password(settings),
            key_file=workspace.resolve(settings.key_file)
            if settings.key_file
            else None,
            known_hosts=workspace.resolve(settings.known_hosts)
            if settings.known_hosts
            else None,
            timeout_s=settings.timeout_s,
        )
    return HttpTransport(
        settings.url,
        username=settings.username,
        password=_password(settings),
        timeout_s=settings.timeout_s,
        pattern=settings.pattern,
    )


def _with_retries(
    action: Callable[[], Any],
    transport: Transport,
    settings: FetchConfig,
    what: str,
    sleep: Callable[[float], None],
) -> tuple[Any, int]:
    """Run ``action``, retrying interruptions; return its result and retries.

    A complete download whose SHA-256 differs from the announced one is not a
    network problem: it is tried once more (the file may have been replaced
    mid-download), then reported as changed or corrupted at the source.
    """
    drops = 0
    hash_retried = False
    while True:
        try:
            return action(), drops + hash_retried
        except _HashMismatchError as error:
            if hash_retried or settings.retries == 0:
                raise DataSourceError(
                    f"{what}: file changed or corrupted at the source: expected "
                    f"sha256 {error.expected} got {error.found}; ask the sender to "
                    "re-publish the file or its checksum, then run fetch again"
                ) from None
            hash_retried = True
            logger.warning("%s: SHA-256 mismatch; downloading once more", what)
            transport.reset()
        except TransferInterruptedError as error:
            if drops == settings.retries:
                raise DataSourceError(
                    f"{what} failed after {drops + 1} attempts ({error}); "
                    "check the connection and run fetch again (a partial "
                    "download resumes where it stopped)"
                ) from None
            wait_s = min(settings.backoff_s * 2**drops, _MAX_BACKOFF_S)
            drops += 1
            logger.warning(
                "%s interrupted (%s); retrying in %.1f s", what, error, wait_s
            )
            transport.reset()
            sleep(wait_s)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class _MismatchError(TransferInterruptedError):
    """Fewer or more bytes arrived than announced: a transfer problem."""


class _HashMismatchError(Exception):
    """All announced bytes arrived but their SHA-256 is not the announced one."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"expected sha256 {expected} got {found}")
        self.expected = expected
        self.found = found


def _fetch_one(
    transport: Transport,
    remote: RemoteFile,
    part: Path,
    target: Path,
) -> tuple[str, int, int]:
    """Download ``remote`` into ``part`` (resuming), check it, move it to target.

    Returns the SHA-256, the size and the offset the download resumed from.
    """
    identity_path = part.with_name(part.name + ".json")
    identity = json.dumps(remote.identity(), sort_keys=True)
    known = identity_path.read_text() if identity_path.exists() else None
    if part.exists() and known != identity:
        part.unlink()  # a different version of the file: start again
    identity_path.write_text(identity)

    with part.open("ab") as sink:
        offset = sink.tell()
        if remote.size is not None and offset > remote.size:
            sink.truncate(0)
            offset = 0
        try:
            transport.download(remote, sink, offset)
        finally:
            sink.flush()
            os.fsync(sink.fileno())

    size = part.stat().st_size
    sha256 = _sha256(part)
    if remote.size is not None and size != remote.size:
        part.unlink()
        raise _MismatchError(
            f"{remote.name}: got {size} bytes, the source announced {remote.size}"
        )
    if remote.sha256 is not None and sha256 != remote.sha256:
        part.unlink()
        raise _HashMismatchError(remote.sha256, sha256)

    if remote.modified_ns is not None:
        # Like shutil.copy2: the copy keeps the time the file was delivered.
        os.utime(part, ns=(remote.modified_ns, remote.modified_ns))
    os.replace(part, target)
    identity_path.unlink()
    _fsync_folder(target.parent)
    return sha256, size, offset


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fetch_source(
    workspace: Workspace,
    name: str,
    *,
    ingest: bool = False,
    progress: ProgressCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchSummary:
    """Fetch the files of source ``name`` not fetched before; optionally ingest.

    Parameters
    ----------
    workspace : Workspace
        Workspace whose configuration lists the source.
    name : str
        The source's ``name`` (or its record kind when it has none).
    ingest : bool
        Ingest every inbox file of the source not yet in the lake (new or
        fetched earlier without ``ingest``) with
        :func:`telcoreach.pipeline.run_ingest`.
    progress : callable, optional
        ``progress(description, done, total)`` after each file.
    sleep : callable
        Waits between retries (tests pass a no-op).

    Returns
    -------
    FetchSummary
        Files listed, fetched and already fetched; bytes; resumptions.

    Raises
    ------
    ConfigError
        If the source is unknown or its password variable is not set.
    DataSourceError
        If the channel refuses the login, or a transfer still fails after
        ``fetch.retries`` retries (the ``.part`` file is kept for the next run).
    """
    started = time.perf_counter()
    source = find_source(workspace.config, name)
    settings = source.fetch
    if ingest and source.adapter not in ("csv", "parquet"):
        raise ConfigError(
            f"source {name!r} uses adapter {source.adapter!r}; fetched files are "
            "ingested with the csv or parquet adapter"
        )
    inbox = workspace.root / "inbox" / name
    partial = workspace.root / "fetch" / "partial" / name
    inbox.mkdir(parents=True, exist_ok=True)
    partial.mkdir(parents=True, exist_ok=True)
    ledger = FetchLedger(workspace.root / "fetch" / "ledger.json")
    summary = FetchSummary(source=name, protocol=settings.protocol, inbox=str(inbox))

    transport = open_transport(workspace, settings)
    try:
        offered, retried = _with_retries(
            transport.list_files, transport, settings, f"listing {name}", sleep
        )
        summary.retries += retried
        offered = matching(offered, settings.pattern)
        summary.listed = len(offered)
        wanted = [r for r in offered if not ledger.is_current(name, r)]
        summary.skipped = len(offered) - len(wanted)
        for done, remote in enumerate(wanted, start=1):
            (sha256, size, offset), retried = _with_retries(
                lambda remote=remote: _fetch_one(
                    transport,
                    remote,
                    partial / f"{remote.name}.part",
                    inbox / remote.name,
                ),
                transport,
                settings,
                f"fetching {remote.name}",
                sleep,
            )
            ledger.record(name, remote, sha256, size)
            summary.fetched.append(remote.name)
            summary.bytes += size
            summary.retries += retried
            summary.resumed += bool(offset) or bool(retried)
            if progress:
                progress(f"fetch {name}", done, len(wanted))
    finally:
        transport.close()
    logger.info(
        "fetch %s: %d listed, %d fetched (%d bytes), %d already fetched",
        name,
        summary.listed,
        len(summary.fetched),
        summary.bytes,
        summary.skipped,
    )
    workspace.audit(
        action="fetch",
        purpose="operations",
        tables=[source.kind],
        details={"source": name, "files": len(summary.fetched), "bytes": summary.bytes},
    )

    if ingest:
        summary.ingest = _ingest(workspace, source, inbox, ledger, progress)
    summary.seconds = time.perf_counter() - started
    return summary


def _not_in_lake(
    workspace: Workspace, source: SourceConfig, inbox: Path, ledger: FetchLedger
) -> list[Path]:
    """Return the inbox files of ``source`` whose content the lake lacks.

    A file's SHA-256 comes from the ledger when the file still has the size
    recorded at fetch time, so a large inbox is not read again on each run.
    """
    from telcoreach.ingest._batch import file_sha256
    from telcoreach.lake import Lake

    known = Lake(workspace.lake).known_source_hashes(source.kind)
    name = _source_name(source)
    pending = []
    for path in sorted(inbox.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        entry = ledger.entry(name, path.name) or {}
        sha256 = entry.get("sha256")
        if sha256 is None or entry.get("size") != path.stat().st_size:
            sha256 = file_sha256(path)
        if sha256 not in known:
            pending.append(path)
    return pending


def _ingest(
    workspace: Workspace,
    source: SourceConfig,
    inbox: Path,
    ledger: FetchLedger,
    progress: ProgressCallback | None,
) -> dict[str, Any]:
    """Ingest every inbox file of ``source`` not yet in the lake.

    That includes files fetched by an earlier run without ``--ingest``.
    """
    from telcoreach.pipeline import run_ingest

    pending = _not_in_lake(workspace, source, inbox, ledger)
    if not pending:
        return {"kind": source.kind, "status": "nothing new to ingest"}
    # A redelivery whose rows are all in the lake already stores nothing: the
    # summary says so (with the quarantine reasons) instead of failing the fetch.
    return run_ingest(
        workspace,
        source.kind,
        pending,
        adapter=source.adapter,
        options=source.options,
        progress=progress,
        fail_if_nothing_stored=False,
    )
