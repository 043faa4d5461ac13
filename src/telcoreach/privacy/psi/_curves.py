"""Curve arithmetic of DH-PSI: hash identifiers to points, multiply by a secret.

Every point travels as 32 bytes: the u-coordinate of an X25519 point, or the
x-coordinate of an SM2 point. Both are "x-only" groups: a point and its
negative share the coordinate, and ``x([k]P) == x([k](-P))``, so multiplying
by a secret scalar is well defined on the coordinate alone and commutes:
``x([a]x([b]P)) == x([b]x([a]P))``.

X25519 uses ``cryptography`` (OpenSSL underneath). SM2 uses the ``EC_POINT``
functions of OpenSSL's ``libcrypto`` through :mod:`ctypes`, because no Python
package exposes SM2 multiplication of an arbitrary point (SM2 keys in OpenSSL
refuse plain ECDH, and the pure-Python SM2 packages take milliseconds per
point).

The per-point loops here are the unit of work of a process pool
(:class:`CurvePool`), which spreads chunks over all cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

from telcoreach.errors import PsiError

__all__ = ["CURVES", "POINT_BYTES", "CurvePool", "hash_domain", "new_scalar"]

logger = logging.getLogger(__name__)

CURVES = ("x25519", "sm2")
POINT_BYTES = 32
_CHUNK_ITEMS = 4096

# SM2 recommended curve (GB/T 32918.5): y^2 = x^3 + a x + b over GF(p).
_SM2_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_SM2_A = _SM2_P - 3
_SM2_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_SM2_LEGENDRE = (_SM2_P - 1) // 2
_NID_SM2 = 1172
_COMPRESSED = 2


def hash_domain(curve: str, kind: str, version: int) -> bytes:
    """Return the domain-separation prefix hashed before every identifier."""
    return f"telcoreach-psi/v{version}/{curve}/{kind}\x00".encode()


def new_scalar(curve: str) -> bytes:
    """Return a fresh secret scalar of ``curve`` (32 bytes, never stored)."""
    if curve == "x25519":
        return secrets.token_bytes(32)  # clamped by X25519 itself
    if curve == "sm2":
        return (secrets.randbelow(_SM2_N - 1) + 1).to_bytes(32, "big")
    raise PsiError(f"unknown curve {curve!r}; expected one of {', '.join(CURVES)}")


# ---------------------------------------------------------------- X25519


def _x25519_hash(domain: bytes, ids: Sequence[str]) -> bytes:
    # Any 32 bytes are a valid X25519 input (twist security, see docs/psi.md);
    # the top bit is cleared because X25519 ignores it.
    out = bytearray(POINT_BYTES * len(ids))
    for i, value in enumerate(ids):
        start = i * POINT_BYTES
        out[start : start + POINT_BYTES] = hashlib.sha256(
            domain + value.encode()
        ).digest()
        out[start + POINT_BYTES - 1] &= 0x7F
    return bytes(out)


def _x25519_multiply(scalar: bytes, points: bytes) -> bytes:
    exchange = X25519PrivateKey.from_private_bytes(scalar).exchange
    load = X25519PublicKey.from_public_bytes
    try:
        return b"".join(
            [
                exchange(load(points[i : i + POINT_BYTES]))
                for i in range(0, len(points), POINT_BYTES)
            ]
        )
    except ValueError:
        raise PsiError(
            "the peer sent an X25519 point of small order (the product is zero); "
            "expected hashed identifiers: the peer is faulty or malicious"
        ) from None


# ------------------------------------------------------------------- SM2


def _sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


def _sm2_hash(domain: bytes, ids: Sequence[str]) -> bytes:
    # Try-and-increment: the first SM3(domain, counter, id) that is the
    # x-coordinate of a curve point (about every second one is). Nobody knows
    # the discrete logarithm of such a point, which the protocol requires.
    out = bytearray(POINT_BYTES * len(ids))
    for i, value in enumerate(ids):
        data = value.encode()
        counter = 0
        while True:
            x = int.from_bytes(_sm3(domain + bytes([counter]) + data), "big")
            rhs = (x * x * x + _SM2_A * x + _SM2_B) % _SM2_P
            if x < _SM2_P and (rhs == 0 or pow(rhs, _SM2_LEGENDRE, _SM2_P) == 1):
                break
            counter += 1
        start = i * POINT_BYTES
        out[start : start + POINT_BYTES] = x.to_bytes(POINT_BYTES, "big")
    return bytes(out)


class _Sm2LibCrypto:
    """The SM2 group of OpenSSL's libcrypto, loaded once per process."""

    def __init__(self) -> None:
        lib = _load_libcrypto()
        void = ctypes.c_void_p
        lib.EC_GROUP_new_by_curve_name.restype = void
        lib.EC_GROUP_new_by_curve_name.argtypes = [ctypes.c_int]
        lib.EC_POINT_new.restype = void
        lib.EC_POINT_new.argtypes = [void]
        lib.BN_CTX_new.restype = void
        lib.BN_bin2bn.restype = void
        lib.BN_bin2bn.argtypes = [ctypes.c_char_p, ctypes.c_int, void]
        lib.BN_clear_free.argtypes = [void]
        lib.EC_POINT_oct2point.argtypes = [
            void,
            void,
            ctypes.c_char_p,
            ctypes.c_size_t,
            void,
        ]
        lib.EC_POINT_mul.argtypes = [void, void, void, void, void, void]
        lib.EC_POINT_point2oct.restype = ctypes.c_size_t
        lib.EC_POINT_point2oct.argtypes = [
            void,
            void,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_size_t,
            void,
        ]
        lib.ERR_clear_error.argtypes = []
        self.lib = lib
        self.group = lib.EC_GROUP_new_by_curve_name(_NID_SM2)
        if not self.group:
            raise PsiError(
                "the OpenSSL libcrypto on this machine has no SM2 curve; expected "
                "OpenSSL >= 1.1.1 built with SM2; use --curve x25519 instead"
            )
        self.ctx = lib.BN_CTX_new()
        self.point = lib.EC_POINT_new(self.group)
        self.product = lib.EC_POINT_new(self.group)
        self.buffer = ctypes.create_string_buffer(POINT_BYTES + 1)

    def multiply(self, scalar: bytes, points: bytes) -> bytes:
        lib, group, ctx = self.lib, self.group, self.ctx
        point, product, buffer = self.point, self.product, self.buffer
        k = lib.BN_bin2bn(scalar, len(scalar), None)
        out = bytearray(len(points))
        try:
            for start in range(0, len(points), POINT_BYTES):
                encoded = b"\x02" + points[start : start + POINT_BYTES]
                if not lib.EC_POINT_oct2point(group, point, encoded, 33, ctx):
                    lib.ERR_clear_error()
                    raise PsiError(
                        "the peer sent a value that is not the x-coordinate of an "
                        "SM2 point; expected hashed identifiers: the peer is "
                        "faulty or uses another curve"
                    )
                if not lib.EC_POINT_mul(group, product, None, point, k, ctx):
                    lib.ERR_clear_error()
                    raise PsiError("OpenSSL failed to multiply an SM2 point")
                written = lib.EC_POINT_point2oct(
                    group, product, _COMPRESSED, buffer, 33, ctx
                )
                if written != 33:
                    raise PsiError("an SM2 product was the point at infinity")
                out[start : start + POINT_BYTES] = buffer.raw[1:33]
        finally:
            lib.BN_clear_free(k)
        return bytes(out)


def _load_libcrypto() -> ctypes.CDLL:
    names = ["libcrypto.so.3", ctypes.util.find_library("crypto"), "libcrypto.so.1.1"]
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise PsiError(
        "the SM2 curve needs OpenSSL's libcrypto (libcrypto.so.3 or .so.1.1), "
        "which was not found; install OpenSSL or use --curve x25519"
    )


@lru_cache(maxsize=1)
def _sm2() -> _Sm2LibCrypto:
    return _Sm2LibCrypto()


# ------------------------------------------------- work units of the pool


def _hash_and_multiply(
    curve: str, scalar: bytes, domain: bytes, ids: Sequence[str]
) -> bytes:
    """Return ``[scalar] H(id)`` for every identifier, 32 bytes each."""
    if curve == "x25519":
        return _x25519_multiply(scalar, _x25519_hash(domain, ids))
    return _sm2().multiply(scalar, _sm2_hash(domain, ids))


def _multiply(curve: str, scalar: bytes, points: bytes) -> bytes:
    """Return ``[scalar] P`` for every 32-byte point ``P`` of ``points``."""
    if curve == "x25519":
        return _x25519_multiply(scalar, points)
    return _sm2().multiply(scalar, points)


def _warm_up(curve: str) -> int:
    if curve == "sm2":
        _sm2()
    return os.getpid()


class CurvePool:
    """Curve arithmetic spread over a pool of worker processes.

    Parameters
    ----------
    curve : str
        ``x25519`` or ``sm2``.
    workers : int, optional
        Processes; default all cores. With 1, the work runs in this process.
    chunk_items : int
        Points per unit of work.

    Notes
    -----
    Workers start once, when the pool is created: forked from this process
    when it runs no other thread (cheap), else from a fork server, which
    imports the ``__main__`` module again in each worker. Create the pool
    before starting threads such as a progress bar.
    """

    def __init__(
        self, curve: str, workers: int | None = None, chunk_items: int = _CHUNK_ITEMS
    ) -> None:
        if curve not in CURVES:
            raise PsiError(
                f"unknown curve {curve!r}; expected one of {', '.join(CURVES)}"
            )
        self.curve = curve
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.chunk_items = chunk_items
        self._executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            # Forking is fast and re-imports nothing, but is unsafe once this
            # process runs threads (a progress bar does); then use a fork server.
            method = "fork" if threading.active_count() == 1 else "forkserver"
            context = multiprocessing.get_context(method)
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context)
            started = [
                self._executor.submit(_warm_up, curve) for _ in range(self.workers)
            ]
            for future in started:
                future.result()
        else:
            _warm_up(curve)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def __enter__(self) -> CurvePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hash_and_multiply(
        self,
        scalar: bytes,
        domain: bytes,
        ids: Sequence[str],
        tick: Callable[[int, int], None] | None = None,
    ) -> bytes:
        """Return ``[scalar] H(id)`` for every identifier, in order."""
        step = self.chunk_items
        chunks = [ids[i : i + step] for i in range(0, len(ids), step)]
        return self._map(
            _hash_and_multiply,
            [(self.curve, scalar, domain, chunk) for chunk in chunks],
            [len(chunk) for chunk in chunks],
            tick,
        )

    def multiply(
        self,
        scalar: bytes,
        points: bytes,
        tick: Callable[[int, int], None] | None = None,
    ) -> bytes:
        """Return ``[scalar] P`` for every 32-byte point of ``points``, in order."""
        step = self.chunk_items * POINT_BYTES
        view = memoryview(points)
        chunks = [bytes(view[i : i + step]) for i in range(0, len(points), step)]
        return self._map(
            _multiply,
            [(self.curve, scalar, chunk) for chunk in chunks],
            [len(chunk) // POINT_BYTES for chunk in chunks],
            tick,
        )

    def _map(
        self,
        function: Callable[..., bytes],
        arguments: list[tuple],
        sizes: list[int],
        tick: Callable[[int, int], None] | None,
    ) -> bytes:
        total = sum(sizes)
        done = 0
        started = time.perf_counter()
        results: list[bytes | None] = [None] * len(arguments)
        if self._executor is None:
            for index, args in enumerate(arguments):
                results[index] = function(*args)
                done += sizes[index]
                if tick:
                    tick(done, total)
        else:
            pending = {
                self._executor.submit(function, *args): index
                for index, args in enumerate(arguments)
            }
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = pending.pop(future)
                    results[index] = future.result()
                    done += sizes[index]
                if tick:
                    tick(done, total)
        logger.debug(
            "%s: %d points on %s in %.2f s",
            function.__name__,
            total,
            self.curve,
            time.perf_counter() - started,
        )
        return b"".join(results)  # type: ignore[arg-type]
