"""Time the city simulator: events written per second, files included.

Usage::

    .venv/bin/python benchmarks/simulate.py --subscribers 100000 --days 7

The output goes to a temporary folder removed afterwards (``--out`` keeps it).
Wall time depends on what else runs on the machine; CPU time is printed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from telcoreach.simulate import simulate_city

ROOT = Path(__file__).resolve().parents[1]


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events-per-day", type=float, default=50)
    parser.add_argument("--dirty-rate", type=float, default=0.0)
    parser.add_argument("--fmt", choices=("csv", "parquet"), default="csv")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(
            os.environ.get("TELCOREACH_DATA", ROOT.parent / "shared/datasets")
        ),
    )
    parser.add_argument("--out", type=Path, help="keep the simulated city here")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="telcoreach-sim-"))
    try:
        cpu_started = time.process_time()
        summary = simulate_city(
            out,
            subscribers=args.subscribers,
            days=args.days,
            seed=args.seed,
            events_per_day=args.events_per_day,
            dirty_rate=args.dirty_rate,
            data_dir=args.data_dir,
            fmt=args.fmt,
            overwrite=args.out is not None,
        )
        cpu_s = time.process_time() - cpu_started
        size_gb = _folder_bytes(out) / 1e9
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    print(f"subscribers      {summary.subscribers:,} over {summary.days} days")
    print(f"signalling       {summary.events:,} events")
    print(f"dpi              {summary.rows['dpi']:,} sessions")
    print(f"seconds          {summary.seconds:.1f} wall, {cpu_s:.1f} CPU")
    print(f"events/s         {summary.events / summary.seconds:,.0f}")
    print(f"output           {size_gb:.2f} GB ({args.fmt})")
    print(f"load average     {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
