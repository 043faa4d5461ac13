"""PSI speed: telcoreach (two processes over TCP) beside openmined-psi, same sets.

Run with ``.venv/bin/python benchmarks/psi.py [--size N] [--peer-size N]
[--sm2-size N]``. Both parties hold ``--size`` random mobile numbers, a share
``--overlap`` of them in common.

1. telcoreach X25519: ``psi serve`` and ``psi join`` run as two processes
   talking over 127.0.0.1, each with a pool of worker processes; timed from
   the joiner's start until both have written and audited their results.
2. openmined-psi (its Python binding, P-256, one thread): server setup, client
   request, server response and intersection in one process, on the same
   sets; RAW data structure, so the result is exact and comparable.
3. telcoreach SM2 at ``--sm2-size`` per side, extrapolated linearly to
   ``--size`` (the curve work is linear in the set sizes) and labelled so.

The load average is printed before and after: other processes on the machine
take cores from the benchmark and make every figure slower.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from telcoreach.workspace import Workspace

CLI = [sys.executable, "-c", "from telcoreach.cli import main; main()"]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="items per side")
    parser.add_argument(
        "--overlap", type=float, default=0.5, help="share of items in common"
    )
    parser.add_argument(
        "--peer-size",
        type=int,
        default=None,
        help="items per side for openmined-psi (default --size; smaller is "
        "extrapolated); 0 skips it",
    )
    parser.add_argument(
        "--sm2-size",
        type=int,
        default=20_000,
        help="items per side for the SM2 run (0 skips it)",
    )
    parser.add_argument("--workers", type=int, default=None, help="pool processes")
    return parser.parse_args()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _party_sets(size: int, overlap: float, seed: int = 0):
    """Return two arrays of distinct 11-digit numbers and their true overlap."""
    rng = np.random.default_rng(seed)
    shared = int(size * overlap)
    total = 2 * size - shared
    numbers = np.unique(rng.integers(0, 7 * 10**9, size=int(total * 1.05)))
    numbers = rng.permutation(numbers)[:total] + 13 * 10**9
    first = numbers[:size]
    second = numbers[size - shared : 2 * size - shared]
    return first, second, len(np.intersect1d(first, second))


def _write(numbers: np.ndarray, path: Path) -> Path:
    pv.write_csv(pa.table({"msisdn": pa.array(numbers).cast(pa.string())}), path)
    return path


_ENTERPRISE = "benchmark partner"


def _grant_sharing(workspace: Path, numbers: np.ndarray) -> None:
    """Record consent to sharing with the partner for every carrier number."""
    from telcoreach.engine import Engine
    from telcoreach.privacy import record_consent

    opened = Workspace.open(workspace)
    tokens = opened.pseudonymiser.tokenise(
        "msisdn", pa.array(numbers).cast(pa.string())
    )
    engine = Engine(opened)
    try:
        record_consent(
            engine, tokens, f"sharing:{_ENTERPRISE}", True, source="benchmark"
        )
    finally:
        engine.close()


def _telcoreach(folder: Path, first, second, curve: str, workers: int | None):
    """Run serve and join as two processes; return both summaries and wall time."""
    carrier = Workspace.create(folder / f"carrier-{curve}").root
    enterprise = Workspace.create(folder / f"enterprise-{curve}").root
    carrier_csv = _write(first, folder / f"carrier-{curve}.csv")
    enterprise_csv = _write(second, folder / f"enterprise-{curve}.csv")
    # psi serve matches only subscribers consenting to the named partner.
    _grant_sharing(carrier, first)
    common = ["--curve", curve, "--json", "--timeout", "600"]
    if workers:
        common += ["--workers", str(workers)]
    serve = ["psi", "serve", "--port", "0", "--input", str(carrier_csv)]
    serve += ["--enterprise", _ENTERPRISE]
    server = subprocess.Popen(
        [*CLI, *serve, "-w", str(carrier), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = server.stderr.readline()
    port = re.search(r":(\d+)", line)
    if not port:
        raise SystemExit(f"server did not start: {line}{server.stderr.read()}")
    started = time.perf_counter()
    join = ["psi", "join", "--port", port.group(1), "--input", str(enterprise_csv)]
    joiner = subprocess.run(
        [*CLI, *join, "-w", str(enterprise), *common],
        capture_output=True,
        text=True,
    )
    served, serve_err = server.communicate()
    wall = time.perf_counter() - started
    if joiner.returncode or server.returncode:
        raise SystemExit(f"PSI failed:\n{joiner.stderr}\n{serve_err}")
    return json.loads(served), json.loads(joiner.stdout), wall


def _openmined(first, second) -> tuple[float, float, int, int]:
    """Return (seconds, CPU seconds, intersection, bytes exchanged) of openmined-psi."""
    import private_set_intersection.python as psi

    server_items = [str(n) for n in first]
    client_items = [str(n) for n in second]
    started, started_cpu = time.perf_counter(), time.process_time()
    server = psi.server.CreateWithNewKey(True)
    client = psi.client.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(
        0.0, len(client_items), server_items, psi.DataStructure.RAW
    )
    request = client.CreateRequest(client_items)
    response = server.ProcessRequest(request)
    found = client.GetIntersection(setup, response)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - started_cpu
    exchanged = sum(
        len(message.SerializeToString()) for message in (setup, request, response)
    )
    return seconds, cpu, len(found), exchanged


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def main() -> None:
    args = _arguments()
    size, peer_size = args.size, args.size if args.peer_size is None else args.peer_size
    print(f"machine: {os.cpu_count()} cores; load average before: {_load()}")
    first, second, truth = _party_sets(size, args.overlap)
    print(f"sets: {size:,} x {size:,} numbers, {truth:,} in common\n")

    with tempfile.TemporaryDirectory(prefix="psi-bench-") as folder:
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        served, joined, wall = _telcoreach(
            Path(folder), first, second, "x25519", args.workers
        )
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (
            cpu_before.ru_utime + cpu_before.ru_stime
        )
        assert joined["intersection"] == served["intersection"] == truth
        print("telcoreach psi, X25519, two processes over 127.0.0.1")
        print(f"  wall time, end to end      {wall:8.1f} s  (CPU {cpu:.0f} s)")
        for name, summary in (("serve", served), ("join", joined)):
            steps = ", ".join(
                f"{k} {v:.1f}" for k, v in summary["seconds_by_step"].items()
            )
            print(
                f"  {name:5s} sent {_mb(summary['bytes_sent']):>9s}, received "
                f"{_mb(summary['bytes_received']):>9s}; steps (s): {steps}"
            )
        print(f"  intersection {joined['intersection']:,} (true {truth:,})")
        print(f"  peak memory of one process {cpu_after.ru_maxrss / 1024:6.0f} MB")
        print(f"  load average after: {_load()}\n")

        if peer_size:
            peer_first, peer_second, peer_truth = (
                (first, second, truth)
                if peer_size == size
                else _party_sets(peer_size, args.overlap)
            )
            seconds, cpu, found, exchanged = _openmined(peer_first, peer_second)
            assert found == peer_truth
            label = "measured"
            if peer_size != size:
                seconds *= size / peer_size
                cpu *= size / peer_size
                exchanged = int(exchanged * size / peer_size)
                label = f"EXTRAPOLATED from {peer_size:,} x {peer_size:,}"
            print("openmined-psi 2.0.6, P-256, one thread, RAW")
            print(f"  wall time                  {seconds:8.1f} s  (CPU {cpu:.0f} s)")
            print(f"  figures {label}")
            print(f"  bytes exchanged            {_mb(exchanged):>9s}")
            print(f"  intersection {found:,} (true {peer_truth:,})")
            print(f"  load average after: {_load()}\n")

        if args.sm2_size:
            sm2_first, sm2_second, sm2_truth = _party_sets(args.sm2_size, args.overlap)
            served, joined, sm2_wall = _telcoreach(
                Path(folder), sm2_first, sm2_second, "sm2", args.workers
            )
            assert joined["intersection"] == sm2_truth
            factor = size / args.sm2_size
            print(f"telcoreach psi, SM2, {args.sm2_size:,} x {args.sm2_size:,}")
            print(f"  wall time, end to end      {sm2_wall:8.1f} s  (measured)")
            print(
                f"  at {size:,} x {size:,}       {sm2_wall * factor:8.0f} s  "
                "(EXTRAPOLATED linearly)"
            )
            print(f"  load average after: {_load()}")


if __name__ == "__main__":
    main()
