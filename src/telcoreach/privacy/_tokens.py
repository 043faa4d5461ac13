"""Keyed pseudonymisation of identifiers with HMAC-SM3.

A token is ``base32(HMAC-SM3(key, kind ":" value))`` truncated to 120 bits and
written in lower case: 24 characters from ``a-z`` and ``2-7``. The alphabet has
no ``0``, ``1``, ``8`` or ``9``, so a token can never look like a phone number,
an IMSI or an IMEI to a scanner. The identifier kind is part of the message,
so the same digits used as an MSISDN and as an IMSI give unrelated tokens.
Without the key a token cannot be reversed or recomputed (unlike a bare hash,
which a dictionary of all 10^11 phone numbers would invert in minutes).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes, hmac

from telcoreach.errors import PrivacyError

__all__ = ["KEY_ENV", "Pseudonymiser", "load_or_create_key", "normalise_identifiers"]

logger = logging.getLogger(__name__)

KEY_ENV = "TELCOREACH_KEY"
_KEY_BYTES = 32
_TOKEN_BYTES = 15


def load_or_create_key(path: Path) -> bytes:
    """Return the pseudonymisation key from ``$TELCOREACH_KEY`` or ``path``.

    The environment variable, when set, holds the key as 64 hex digits and
    takes precedence. Otherwise the key file is read, or created with 32 random
    bytes and mode 0600 when it does not exist.

    Raises
    ------
    PrivacyError
        If the key is malformed or the key file is readable by other users.
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return _parse_key(from_env.strip(), f"${KEY_ENV}")

    if not path.exists():
        key = secrets.token_bytes(_KEY_BYTES)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key.hex() + "\n")
        logger.info("created pseudonymisation key file %s (mode 0600)", path)
        return key

    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PrivacyError(
            f"key file {path} has mode {mode:o}; expected 600 (owner only). "
            f"Fix it with: chmod 600 {path}"
        )
    return _parse_key(path.read_text().strip(), str(path))


def _parse_key(text: str, origin: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise PrivacyError(
            f"pseudonymisation key from {origin} must be at least 32 hex digits "
            f"(16 bytes); found {len(text)} characters that are not such a key. "
            "Generate one with: python -c 'import secrets; "
            "print(secrets.token_hex(32))'"
        )
    return key


class Pseudonymiser:
    """Turn raw identifiers into stable keyed tokens.

    Parameters
    ----------
    key : bytes
        Secret key; the same key and identifier always give the same token.

    Examples
    --------
    >>> p = Pseudonymiser(bytes(32))
    >>> token = p.token("msisdn", "13812345678")
    >>> len(token), token == p.token("msisdn", "+86 138 1234 5678")
    (24, True)
    """

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.HMAC(key, hashes.SM3())
        # Copying the keyed context from several threads at once is not
        # documented as safe; the copies themselves run unshared.
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        """A public 16-hex-digit name of the key (an HMAC of a fixed text)."""
        with self._lock:
            mac = self._keyed.copy()
        mac.update(b"telcoreach key fingerprint")
        return mac.finalize().hex()[:16]

    def token(self, kind: str, value: str) -> str:
        """Return the token of one raw identifier of ``kind``."""
        return self.tokenise(kind, pa.array([value], pa.string()))[0].as_py()

    def tokenise(self, kind: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Return tokens for an array of raw identifiers; nulls stay null.

        Only distinct values are hashed, so a column of millions of events
        from thousands of subscribers costs thousands of HMACs.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        # Normalise and hash each distinct raw value once, then map back.
        encoded = pc.dictionary_encode(values.cast(pa.string()))
        normalised = normalise_identifiers(kind, encoded.dictionary)
        digests = self._digests(kind, normalised.to_pylist())
        return pc.take(_base32_tokens(digests), encoded.indices)

    def _digests(self, kind: str, distinct: list[str]) -> bytes:
        prefix = f"{kind}:".encode()
        with self._lock:
            keyed = self._keyed.copy()
        parts = []
        for value in distinct:
            mac = keyed.copy()
            mac.update(prefix + value.encode())
            parts.append(mac.finalize()[:_TOKEN_BYTES])
        return b"".join(parts)


_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
_SHIFTS = np.arange(35, -1, -5, dtype=np.uint64)


def _base32_tokens(digests: bytes) -> pa.StringArray:
    """Encode concatenated 15-byte digests as 24-character base32 strings."""
    groups = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 5).astype(np.uint64)
    packed = (
        (groups[:, 0] << 32)
        | (groups[:, 1] << 24)
        | (groups[:, 2] << 16)
        | (groups[:, 3] << 8)
        | groups[:, 4]
    )
    symbols = _BASE32[((packed[:, None] >> _SHIFTS) & 31).astype(np.uint8)]
    count = len(digests) // _TOKEN_BYTES
    width = _TOKEN_BYTES * 8 // 5
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(symbols.tobytes())
    )


def normalise_identifiers(kind: str, values: pa.Array) -> pa.Array:
    """Return the canonical text of identifiers before they are hashed.

    White space and dashes are removed; an MSISDN loses its ``+86``/``86``
    country prefix.
    """
    text = pc.replace_substring_regex(values, pattern=r"[\s\-]", replacement="")
    if kind == "msisdn":
        text = pc.replace_substring_regex(
            text, pattern=r"^(?:\+86|86)(1[3-9][0-9]{9})$", replacement=r"\1"
        )
    return text
