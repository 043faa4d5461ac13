"""Keyed pseudonymisation of identifiers with HMAC-SM3.

A token is ``base32(HMAC-SM3(key, kind ":" value))`` truncated to 120 bits and
written in lower case: 24 characters from ``a-z`` and ``2-7``. The alphabet has
no ``0``, ``1``, ``8`` or ``9``, so a token can never look like a phone number,
an IMSI or an IMEI to a scanner. The identifier kind is part of the message,
so the same digits used as an MSISDN and as an IMSI give unrelated tokens.
Without the key a token cannot be reversed or recomputed (unlike a bare hash,
which a dictionary of all 10^11 phone numbers would invert in minutes).

Large inputs are hashed by a numba kernel that computes HMAC-SM3 from the
key's precomputed inner and outer SM3 states (two compressions per short
identifier) and releases the GIL, so the distinct values of an array are
split across threads, one part per core. Small inputs use the HMAC of
``cryptography`` (OpenSSL). Both give byte-identical tokens; the tests check
the kernel against OpenSSL and against the published SM3 vectors.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numba import njit

from telcoreach.errors import PrivacyError

__all__ = ["KEY_ENV", "Pseudonymiser", "load_or_create_key", "normalise_identifiers"]

logger = logging.getLogger(__name__)

KEY_ENV = "TELCOREACH_KEY"
_KEY_BYTES = 32
_TOKEN_BYTES = 15
# Below this many distinct values OpenSSL's HMAC is fast enough and the
# kernel's one-off compilation (cached on disk afterwards) is not worth it.
_KERNEL_MIN = 4096
# Smallest part worth a thread of its own.
_PART_MIN = 100_000


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
    workers : int, optional
        Threads that hash one large array in parallel; defaults to the
        number of CPU cores.

    Examples
    --------
    >>> p = Pseudonymiser(bytes(32))
    >>> token = p.token("msisdn", "13812345678")
    >>> len(token), token == p.token("msisdn", "+86 138 1234 5678")
    (24, True)
    """

    def __init__(self, key: bytes, workers: int | None = None) -> None:
        self._keyed = hmac.HMAC(key, hashes.SM3())
        # Copying the keyed context from several threads at once is not
        # documented as safe; the copies themselves run unshared.
        self._lock = threading.Lock()
        self._states: tuple[np.ndarray, np.ndarray] | None = None
        self._key = key
        self.workers = max(1, workers or os.cpu_count() or 1)

    def derive_key(self, purpose: str, length: int = 16) -> bytes:
        """Return a key for ``purpose`` derived from this key with HKDF-SM3.

        Different purposes give independent keys, and none reveals the
        pseudonymisation key.
        """
        info = f"telcoreach {purpose}".encode()
        return HKDF(hashes.SM3(), length, salt=None, info=info).derive(self._key)

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
        from thousands of subscribers costs thousands of HMACs. A large array
        is cut into one part per worker; each part is deduplicated, hashed
        and encoded in its own thread.
        """
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = values.cast(pa.string())
        parts = min(self.workers, max(1, len(values) // _PART_MIN))
        if parts == 1:
            return self._tokenise_part(kind, values)
        bounds = np.linspace(0, len(values), parts + 1).astype(np.int64)
        slices = [
            values.slice(start, stop - start)
            for start, stop in itertools.pairwise(bounds)
        ]
        with ThreadPoolExecutor(parts) as pool:
            tokens = list(
                pool.map(lambda part: self._tokenise_part(kind, part), slices)
            )
        return pa.concat_arrays(tokens)

    def _tokenise_part(self, kind: str, values: pa.Array) -> pa.Array:
        # Normalise and hash each distinct raw value once, then map back.
        encoded = pc.dictionary_encode(values)
        normalised = normalise_identifiers(kind, encoded.dictionary)
        digests = self.digests(kind, normalised)
        return pc.take(_base32_tokens(digests), encoded.indices)

    def digests(self, kind: str, values: pa.Array) -> bytes:
        """Return the 15-byte truncated HMAC-SM3 of each normalised value.

        The digests are concatenated in the order of ``values``; nulls count
        as empty text. Arrays of at least 4096 values go through the numba
        kernel in the calling thread, smaller ones through OpenSSL.
        """
        prefix = f"{kind}:".encode()
        if len(values) < _KERNEL_MIN:
            return self._openssl_digests(prefix, values.to_pylist())
        if self._states is None:
            self._states = _hmac_states(self._key)
        inner, outer = self._states
        offsets, data = _string_buffers(values)
        out = np.empty(len(values) * _TOKEN_BYTES, dtype=np.uint8)
        _hmac_sm3_kernel(
            data,
            offsets,
            np.frombuffer(prefix, dtype=np.uint8),
            inner,
            outer,
            _ROUND_CONSTANTS,
            out,
            _TOKEN_BYTES,
        )
        return out.tobytes()

    def _openssl_digests(self, prefix: bytes, distinct: list[str | None]) -> bytes:
        with self._lock:
            keyed = self._keyed.copy()
        parts = []
        for value in distinct:
            mac = keyed.copy()
            mac.update(prefix + (value or "").encode())
            parts.append(mac.finalize()[:_TOKEN_BYTES])
        return b"".join(parts)


def _string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 offsets, read-only uint8 data) of a string array."""
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    _, offsets, data = values.buffers()
    start = values.offset
    offsets = np.frombuffer(offsets, dtype=np.int32)[start : start + len(values) + 1]
    # Read-only like an Arrow buffer view, so the kernel compiles once.
    data = np.frombuffer(data if data is not None else b"", dtype=np.uint8)
    return offsets.astype(np.int64), data


_SM3_IV = np.array(
    [
        0x7380166F,
        0x4914B2B9,
        0x172442D7,
        0xDA8A0600,
        0xA96F30BC,
        0x163138AA,
        0xE38DEE4D,
        0xB0FB0E4E,
    ],
    dtype=np.int64,
)
# T_j of GB/T 32905 rotated left by j mod 32, as each round uses it.
_ROUND_CONSTANTS = np.array(
    [
        ((t << (j % 32)) | (t >> (32 - j % 32))) & 0xFFFFFFFF
        for j, t in enumerate([0x79CC4519] * 16 + [0x7A879D8A] * 48)
    ],
    dtype=np.int64,
)
_SM3_BLOCK = 64


def _hmac_states(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Return the SM3 states after the key's inner and outer padded blocks."""
    if len(key) > _SM3_BLOCK:
        digest = hashes.Hash(hashes.SM3())
        digest.update(key)
        key = digest.finalize()
    block = np.frombuffer(key.ljust(_SM3_BLOCK, b"\0"), dtype=np.uint8)
    states = []
    for pad in (0x36, 0x5C):
        state = _SM3_IV.copy()
        _sm3_compress_block(
            state, (block ^ pad).astype(np.int64), np.empty(68, np.int64)
        )
        states.append(state)
    return states[0], states[1]


@njit(cache=True, inline="always")
def _rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


@njit(cache=True, inline="always")
def _compress(state, block, w, round_constants):
    """Apply the SM3 compression function to ``state`` with one 64-byte block.

    Words live in int64 and are masked to 32 bits after every addition.
    """
    for j in range(16):
        w[j] = (
            (block[4 * j] << 24)
            | (block[4 * j + 1] << 16)
            | (block[4 * j + 2] << 8)
            | block[4 * j + 3]
        )
    for j in range(16, 68):
        x = w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)
        w[j] = x ^ _rotl(x, 15) ^ _rotl(x, 23) ^ _rotl(w[j - 13], 7) ^ w[j - 6]
    a, b, c, d = state[0], state[1], state[2], state[3]
    e, f, g, h = state[4], state[5], state[6], state[7]
    for j in range(64):
        a12 = _rotl(a, 12)
        ss1 = _rotl((a12 + e + round_constants[j]) & 0xFFFFFFFF, 7)
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | ((~e) & g)
        tt1 = (ff + d + (ss1 ^ a12) + (w[j] ^ w[j + 4])) & 0xFFFFFFFF
        tt2 = (gg + h + ss1 + w[j]) & 0xFFFFFFFF
        d = c
        c = _rotl(b, 9)
        b = a
        a = tt1
        h = g
        g = _rotl(f, 19)
        f = e
        e = tt2 ^ _rotl(tt2, 9) ^ _rotl(tt2, 17)
    state[0] ^= a
    state[1] ^= b
    state[2] ^= c
    state[3] ^= d
    state[4] ^= e
    state[5] ^= f
    state[6] ^= g
    state[7] ^= h


@njit(cache=True)
def _sm3_compress_block(state, block, w):
    _compress(state, block, w, _ROUND_CONSTANTS)


@njit(cache=True, nogil=True)
def _hmac_sm3_kernel(data, offsets, prefix, inner, outer, round_constants, out, width):
    """Write the first ``width`` bytes of HMAC-SM3(prefix + value) per value.

    ``inner``/``outer`` are the SM3 states after the key XOR ipad/opad block,
    so each value costs its own padded blocks plus one outer block.
    """
    w = np.empty(68, np.int64)
    state = np.empty(8, np.int64)
    head = prefix.shape[0]
    count = offsets.shape[0] - 1
    longest = 0
    for i in range(count):
        longest = max(longest, offsets[i + 1] - offsets[i])
    message = np.zeros(((head + longest + 9 + 63) // 64) * 64, np.int64)
    message[:head] = prefix
    digest = np.zeros(64, np.int64)
    digest[32] = 0x80
    digest[62] = 3  # the outer message is 96 bytes = 0x300 bits
    for i in range(count):
        length = head + offsets[i + 1] - offsets[i]
        total = ((length + 9 + 63) // 64) * 64
        message[head:length] = data[offsets[i] : offsets[i + 1]]
        message[length] = 0x80
        message[length + 1 : total - 8] = 0
        bits = (_SM3_BLOCK + length) * 8  # the key block comes first
        for k in range(8):
            message[total - 1 - k] = (bits >> (8 * k)) & 0xFF
        state[:] = inner
        for start in range(0, total, 64):
            _compress(state, message[start : start + 64], w, round_constants)
        for k in range(8):
            for byte in range(4):
                digest[4 * k + byte] = (state[k] >> (24 - 8 * byte)) & 0xFF
        state[:] = outer
        _compress(state, digest, w, round_constants)
        for k in range(width):
            out[i * width + k] = (state[k >> 2] >> (24 - 8 * (k & 3))) & 0xFF


_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)


@njit(cache=True, nogil=True)
def _base32_kernel(digests, alphabet, out):
    """Write each 5-byte group of ``digests`` as 8 base32 symbols into ``out``."""
    for group in range(digests.shape[0] // 5):
        packed = np.uint64(0)
        for k in range(5):
            packed = (packed << np.uint64(8)) | np.uint64(digests[5 * group + k])
        for k in range(8):
            shift = np.uint64(35 - 5 * k)
            out[8 * group + k] = alphabet[(packed >> shift) & np.uint64(31)]


def _base32_tokens(digests: bytes) -> pa.StringArray:
    """Encode concatenated 15-byte digests as 24-character base32 strings."""
    count = len(digests) // _TOKEN_BYTES
    width = _TOKEN_BYTES * 8 // 5
    symbols = np.empty(count * width, dtype=np.uint8)
    if count >= _KERNEL_MIN:
        _base32_kernel(np.frombuffer(digests, dtype=np.uint8), _BASE32, symbols)
    else:
        text = base64.b32encode(digests).lower()
        symbols = np.frombuffer(text, dtype=np.uint8)
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(symbols.tobytes())
    )


def normalise_identifiers(kind: str, values: pa.Array) -> pa.Array:
    """Return the canonical text of identifiers before they are hashed.

    White space and dashes are removed; an MSISDN loses its ``+86``/``86``
    country prefix.
    """
    text = values
    # Regular expressions cost more than the checks that usually skip them.
    if not pc.all(pc.ascii_is_decimal(text)).as_py():
        text = pc.replace_substring_regex(text, pattern=r"[\s\-]", replacement="")
    prefixed = pc.or_(pc.starts_with(text, "86"), pc.starts_with(text, "+86"))
    if kind == "msisdn" and pc.any(prefixed).as_py():
        text = pc.replace_substring_regex(
            text, pattern=r"^(?:\+86|86)(1[3-9][0-9]{9})$", replacement=r"\1"
        )
    return text
