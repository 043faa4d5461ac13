"""Delivery: pull new files of a source (folder, SFTP, HTTP) into the inbox."""

from telcoreach.fetch._fetch import (
    FetchSummary,
    fetch_source,
    find_source,
    open_transport,
)
from telcoreach.fetch._ledger import FetchLedger
from telcoreach.fetch._remote import RemoteFile, TransferInterruptedError, matching

__all__ = [
    "FetchLedger",
    "FetchSummary",
    "RemoteFile",
    "TransferInterruptedError",
    "fetch_source",
    "find_source",
    "matching",
    "open_transport",
]
