"""Append-only, hash-chained audit log.

Each line of ``audit.log`` is a JSON object. Its ``hash`` is the SM3 digest
of the previous line's hash and the line's own canonical content, so deleting,
reordering or editing any line breaks the chain from that line on, which
:func:`verify_audit_log` detects and reports by line number.

Cutting lines off the *end* leaves a shorter chain that is still whole, so
each append also rewrites a seal beside the log (``audit.seal``): the number
of entries and the last hash, authenticated with HMAC-SM3 under a key the
log does not hold. A shortened log no longer matches its seal, and a seal
rewritten without the key does not verify.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from telcoreach.privacy._sm import hmac_sm3, sm3

__all__ = [
    "ACTOR_ENV",
    "AuditVerification",
    "append_audit",
    "file_sm3",
    "verify_audit_log",
]

logger = logging.getLogger(__name__)

_GENESIS = "0" * 64
#: Names the person or service acting, instead of the operating-system user.
ACTOR_ENV = "TELCOREACH_ACTOR"


def file_sm3(path: Path) -> str:
    """Return the SM3 digest (hex) of a file's content."""
    digest = hashes.Hash(hashes.SM3())
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.finalize().hex()


def _chain_hash(previous: str, entry: dict[str, Any]) -> str:
    body = json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str)
    return sm3(f"{previous}\n{body}".encode()).hex()


def seal_path(path: Path) -> Path:
    """Return where the seal of the audit log at ``path`` is kept."""
    return path.with_suffix(".seal")


def _seal_mac(key: bytes, entries: int, last_hash: str) -> str:
    return hmac_sm3(
        key, f"telcoreach audit seal\n{entries}\n{last_hash}".encode()
    ).hex()


def _read_seal(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(seal_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _write_seal(path: Path, key: bytes, last_hash: str) -> None:
    seal = _read_seal(path)
    if seal and isinstance(seal.get("entries"), int):
        entries = seal["entries"] + 1
    else:
        with path.open("rb") as handle:
            entries = sum(1 for _ in handle)
    target = seal_path(path)
    staged = target.with_suffix(".seal.tmp")
    staged.write_text(
        json.dumps(
            {
                "entries": entries,
                "last_hash": last_hash,
                "mac": _seal_mac(key, entries, last_hash),
            }
        )
        + "\n",
        encoding="utf-8",
    )
    os.replace(staged, target)


def _last_hash(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return _GENESIS
    with path.open("rb") as handle:
        handle.seek(0, 2)
        position = handle.tell()
        block = b""
        while position > 0 and block.count(b"\n") < 2:
            step = min(4096, position)
            position -= step
            handle.seek(position)
            block = handle.read(step) + block
    last_line = block.strip().splitlines()[-1]
    return json.loads(last_line)["hash"]


def append_audit(
    path: Path,
    *,
    action: str,
    purpose: str,
    tables: list[str] | tuple[str, ...] = (),
    subscribers: int | None = None,
    output: str | None = None,
    output_sha256: str | None = None,
    details: dict[str, Any] | None = None,
    output_sm3: str | None = None,
    seal_key: bytes | None = None,
) -> dict[str, Any]:
    """Append one entry to the audit log and return it.

    Parameters
    ----------
    path : Path
        The workspace's ``audit.log``.
    action : str
        The command or function that ran, e.g. ``audience``.
    purpose : str
        Why the data was used, e.g. ``marketing``.
    tables : sequence of str
        Tables read.
    subscribers : int, optional
        How many subscribers the action touched.
    output, output_sha256 : str, optional
        What was written and its content hash.
    details : dict, optional
        Further facts (never raw identifiers).
    output_sm3 : str, optional
        SM3 digest of the output file (GB/T 32905), recorded beside or
        instead of its SHA-256.
    seal_key : bytes, optional
        Key of the seal that records the log's length (see the module notes);
        without it no seal is written.

    Notes
    -----
    ``who`` is ``$TELCOREACH_ACTOR`` when set (a named operator or service
    account), else the operating-system user.
    """
    entry: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "who": os.environ.get(ACTOR_ENV) or getpass.getuser(),
        "action": action,
        "purpose": purpose,
        "tables": list(tables),
        "subscribers": subscribers,
        "output": output,
        "output_sha256": output_sha256,
        "details": details or {},
    }
    if output_sm3 is not None:
        entry["output_sm3"] = output_sm3
    previous = _last_hash(path)
    entry["prev"] = previous
    entry["hash"] = _chain_hash(previous, entry)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    if seal_key is not None:
        _write_seal(path, seal_key, entry["hash"])
    return entry


@dataclass(frozen=True)
class AuditVerification:
    """Result of checking the audit log's hash chain."""

    entries: int
    ok: bool
    broken_line: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict."""
        return {
            "entries": self.entries,
            "ok": self.ok,
            "broken_line": self.broken_line,
            "reason": self.reason,
        }


def verify_audit_log(path: Path, seal_key: bytes | None = None) -> AuditVerification:
    """Check every line's hash chain and return where it first breaks.

    With ``seal_key``, the log's length and last hash are also checked
    against its seal, which detects lines cut off the end.
    """
    previous = _GENESIS
    if not path.exists():
        return AuditVerification(entries=0, ok=True)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        return AuditVerification(0, False, line, "line is not UTF-8 text: edited")
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
            stored = entry.pop("hash")
        except (json.JSONDecodeError, KeyError, AttributeError):
            return AuditVerification(
                len(lines), False, number, "line is not a hashed JSON entry"
            )
        if entry.get("prev") != previous:
            return AuditVerification(
                len(lines),
                False,
                number,
                "previous-hash link broken: a line before it was removed or edited",
            )
        if _chain_hash(previous, entry) != stored:
            return AuditVerification(
                len(lines), False, number, "content does not match its hash: edited"
            )
        previous = stored
    if seal_key is not None:
        broken = _check_seal(path, seal_key, len(lines), previous)
        if broken:
            return AuditVerification(len(lines), False, len(lines) + 1, broken)
    return AuditVerification(entries=len(lines), ok=True)


def _check_seal(path: Path, key: bytes, entries: int, last_hash: str) -> str:
    """Return why the seal does not match the log, or ``""`` when it does."""
    seal = _read_seal(path)
    if seal is None:
        # Logs written before seals existed have none; the chain still holds.
        return ""
    expected_keys = {"entries", "last_hash", "mac"}
    if set(seal) != expected_keys or not isinstance(seal["entries"], int):
        return f"the seal {seal_path(path).name} is not a valid seal: edited"
    if seal["mac"] != _seal_mac(key, seal["entries"], seal["last_hash"]):
        return (
            f"the seal {seal_path(path).name} was not written with this "
            "workspace's audit key: edited or replaced"
        )
    if seal["entries"] > entries:
        return (
            f"the log ends after line {entries} but its seal records "
            f"{seal['entries']} entries: lines were cut off the end"
        )
    if seal["entries"] < entries or seal["last_hash"] != last_hash:
        return (
            f"the log has {entries} entries but its seal records "
            f"{seal['entries']}: lines were appended without the audit key"
        )
    return ""
