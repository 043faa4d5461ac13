"""Tokenising speed: HMAC-SM3 tokens for millions of distinct identifiers.

Run with ``.venv/bin/python benchmarks/pseudonymise.py [--ids N]``.

Figures, all on N distinct 11-digit MSISDNs (default 10 million):

1. the numba HMAC-SM3 kernel alone (``Pseudonymiser.digests``), one thread;
2. the same kernel on both cores (the ids split in two, one thread each);
3. ``Pseudonymiser.tokenise`` end to end (dedupe, normalise, HMAC, base32,
   map back) with one worker and with every core;
4. peers on a sample: OpenSSL HMAC-SM3 through ``cryptography`` with a
   pre-keyed context copied per id (the tokeniser before the kernel) and
   re-keyed per id, and pure-Python HMAC-SM3 (RFC 2104 over gmalg's SM3).

The kernel's tokens are checked byte for byte against OpenSSL's on the sample.
On a shared machine, compare wall time with CPU time: when CPU time is much
lower, other processes held the cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives import hashes, hmac

from telcoreach.privacy import Pseudonymiser

KEY = bytes(range(32))
TARGET_IDS_PER_S = 1_500_000


def _timed(run: Callable[[], object]) -> tuple[float, float, object]:
    """Return (wall seconds, CPU seconds of this process, result) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _msisdns(count: int) -> pa.Array:
    rng = np.random.default_rng(0)
    numbers = 13_000_000_000 + rng.choice(6_999_999_999, count, replace=False)
    return pa.array(numbers).cast(pa.string())


def _openssl_copy(values: list[str]) -> bytes:
    keyed = hmac.HMAC(KEY, hashes.SM3())
    parts = []
    for value in values:
        mac = keyed.copy()
        mac.update(b"msisdn:" + value.encode())
        parts.append(mac.finalize()[:15])
    return b"".join(parts)


def _openssl_rekeyed(values: list[str]) -> bytes:
    parts = []
    for value in values:
        mac = hmac.HMAC(KEY, hashes.SM3())
        mac.update(b"msisdn:" + value.encode())
        parts.append(mac.finalize()[:15])
    return b"".join(parts)


def _pure_python(values: list[str]) -> bytes:
    import gmalg

    block = KEY.ljust(64, b"\0")
    inner_pad = bytes(b ^ 0x36 for b in block)
    outer_pad = bytes(b ^ 0x5C for b in block)
    parts = []
    for value in values:
        inner = gmalg.SM3()
        inner.update(inner_pad + b"msisdn:" + value.encode())
        outer = gmalg.SM3()
        outer.update(outer_pad + inner.value())
        parts.append(outer.value()[:15])
    return b"".join(parts)


def _row(name: str, count: int, wall: float, cpu: float) -> None:
    rate, per_cpu = count / wall, count / max(cpu, 1e-9)
    print(
        f"{name:<52} {count:>11,} {wall:>8.2f} {cpu:>8.2f} {rate:>12,.0f} "
        f"{per_cpu:>12,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000, help="distinct ids")
    parser.add_argument(
        "--sample", type=int, default=1_000_000, help="ids given to the OpenSSL peers"
    )
    parser.add_argument(
        "--pure-sample", type=int, default=20_000, help="ids for pure Python"
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    values = _msisdns(args.ids)
    one = Pseudonymiser(KEY, workers=1)
    every = Pseudonymiser(KEY, workers=cores)
    one.tokenise("msisdn", values.slice(0, 10_000))  # compile (or load) the kernel

    print(f"cores: {cores}; load average: {os.getloadavg()[0]:.2f}")
    print(
        f"{'what':<52} {'ids':>11} {'wall s':>8} {'cpu s':>8} {'ids/s':>12} "
        f"{'ids/cpu s':>12}"
    )

    wall, cpu, _ = _timed(lambda: one.digests("msisdn", values))
    _row("kernel HMAC-SM3, 1 thread", args.ids, wall, cpu)
    bounds = np.linspace(0, args.ids, cores + 1).astype(int)
    halves = [values.slice(a, b - a) for a, b in itertools.pairwise(bounds)]

    def parallel() -> list[bytes]:
        with ThreadPoolExecutor(cores) as pool:
            return list(pool.map(lambda part: one.digests("msisdn", part), halves))

    wall, cpu, _ = _timed(parallel)
    kernel_rate = args.ids / wall
    _row(f"kernel HMAC-SM3, {cores} threads", args.ids, wall, cpu)
    wall, cpu, _ = _timed(lambda: one.tokenise("msisdn", values))
    _row("tokenise end to end, 1 worker", args.ids, wall, cpu)
    wall, cpu, tokens = _timed(lambda: every.tokenise("msisdn", values))
    _row(f"tokenise end to end, {cores} workers", args.ids, wall, cpu)

    sample = values.slice(0, args.sample).to_pylist()
    wall, cpu, reference = _timed(lambda: _openssl_copy(sample))
    _row("peer: OpenSSL HMAC, pre-keyed context copied per id", len(sample), wall, cpu)
    rekey = sample[: len(sample) // 4]
    wall, cpu, _ = _timed(lambda: _openssl_rekeyed(rekey))
    _row("peer: OpenSSL HMAC, re-keyed per id", len(rekey), wall, cpu)
    pure = sample[: args.pure_sample]
    wall, cpu, pure_digests = _timed(lambda: _pure_python(pure))
    _row("peer: pure-Python HMAC-SM3 (gmalg SM3)", len(pure), wall, cpu)

    identical = one.digests("msisdn", values.slice(0, args.sample)) == reference
    print(f"kernel digests identical to OpenSSL on {len(sample):,} ids: {identical}")
    same = pure_digests == reference[: len(pure_digests)]
    print(f"pure-Python digests identical: {same}")
    print(
        f"{len(tokens):,} tokens; kernel on all cores {kernel_rate:,.0f} ids/s "
        f"(target {TARGET_IDS_PER_S:,})"
    )


if __name__ == "__main__":
    main()
