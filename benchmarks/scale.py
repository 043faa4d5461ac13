"""Load figures: ingest, quality and profile of N signalling events, per engine.

Run with ``.venv/bin/python benchmarks/scale.py --events N [--engine
duckdb|spark|both] [--compare] [--format csv|parquet] [--workdir DIR [--reuse]]``.

1. A synthetic city is generated with :func:`telcoreach.simulate.simulate_city`
   (vectorised, one file per day written as it is made), sized to about
   ``N`` signalling events: 2 days of ``N / 100`` subscribers up to 15 M
   events, then days of at most 7.5 M events each (100 M: 14 days of 142,857
   subscribers). Generation is timed but is not a pipeline stage.
2. *ingest*: every file goes through :func:`telcoreach.pipeline.run_ingest`
   (validation, pseudonymisation, deduplication, day partitions); signalling
   arrives one daily file per batch, as a carrier delivers it. Ingest always
   stages in DuckDB, whatever the engine.
3. *quality* (when ``telcoreach.quality.run_quality`` exists), *profile* and
   *segment* run on each engine asked for, over the same lake.
4. ``--compare`` then checks that DuckDB and Spark stored the same profiles
   and tiers, row for row (floats within a relative 1e-9). The issue asks for
   this at 100,000 subscribers: ``--events 10000000 --engine both --compare``.

For each stage it prints wall seconds, events per second and the peak
resident memory of this process plus its children (the Spark JVM is one),
sampled every 0.1 s, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from telcoreach.config import EngineConfig
from telcoreach.engine import Engine
from telcoreach.ingest import default_data_dir
from telcoreach.lake import Lake
from telcoreach.pipeline import (
    demo_config,
    init_workspace,
    run_ingest,
    run_profile,
    run_segment,
)
from telcoreach.simulate import simulate_city
from telcoreach.workspace import Workspace

EVENTS_PER_DAY = 50
FLOAT_RTOL = 1e-9


class PeakMemory:
    """Sample the RSS of this process and its children; keep the peak."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakMemory:
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


@dataclass
class Stage:
    name: str
    engine: str
    seconds: float
    events: int
    peak_bytes: int
    note: str = ""
    detail: str = ""

    def row(self) -> str:
        ok = self.seconds and self.events and not self.note
        rate = f"{self.events / self.seconds:,.0f}" if ok else ""
        peak = self.peak_bytes / 2**30
        return (
            f"| {self.name} | {self.engine} | {self.seconds:,.1f} | {rate} | "
            f"{peak:.2f} | {self.note or self.detail} |"
        )


def timed(
    stages: list[Stage], name: str, engine: str, events: int, action: Callable
) -> Any:
    """Run ``action``, record its wall time and peak memory; return its result."""
    print(f"... {name} ({engine})", flush=True)
    started = time.perf_counter()
    note = ""
    result = None
    with PeakMemory() as memory:
        try:
            result = action()
        except Exception as error:  # a failing stage is a figure too
            note = f"FAILED: {type(error).__name__}: {str(error)[:160]}"
    seconds = time.perf_counter() - started
    stages.append(Stage(name, engine, seconds, events, memory.peak, note))
    print(f"    {seconds:,.1f} s, peak {memory.peak / 2**30:.2f} GiB {note}")
    return result


def city_size(events: int) -> tuple[int, int]:
    """Return (subscribers, days) giving about ``events`` signalling events.

    Up to 10 M events: 2 days. Beyond, more days of at most 7.5 M events each,
    so that generating and ingesting one day's file stays within a few GB.
    """
    days = max(2, min(28, math.ceil(events / 7_500_000)))
    return max(10, round(events / (days * EVENTS_PER_DAY))), days


def ingest_all(workspace: Any, inbox: Path) -> int:
    """Ingest every simulated file, signalling one day per batch; return events."""
    events = 0
    for source in workspace.config.sources:
        paths = [Path(p) for p in source.paths]
        if source.kind == "signalling":
            paths = sorted(p for p in paths[0].iterdir() if p.is_file())
            for path in paths:
                summary = run_ingest(workspace, "signalling", [path])
                events += summary["rows_stored"]
        else:
            run_ingest(workspace, source.kind, paths, adapter=source.adapter)
    return events


def quality_action(workspace: Any, engine: str) -> Callable | None:
    """Return the quality stage if the quality module exists, else None."""
    try:
        module = importlib.import_module("telcoreach.quality")
    except ImportError:
        return None
    run_quality = getattr(module, "run_quality", None)
    if run_quality is None:
        return None
    return lambda: run_quality(workspace, engine)


def warehouse_table(workspace: Any, engine: str, name: str) -> pa.Table:
    """Read a stored warehouse table of ``engine`` straight from its files."""
    if engine == "spark":
        return pq.read_table(workspace.root / "spark-warehouse" / name)
    con = Engine(workspace, "duckdb")
    try:
        return con.table(name).to_pyarrow()
    finally:
        con.close()


def compare_tables(reference: pa.Table, other: pa.Table, keys: list[str]) -> list[str]:
    """Return the differences between two tables, sorted by ``keys`` (vectorised)."""
    problems = []
    if reference.column_names != other.column_names:
        return [f"columns differ: {reference.column_names} vs {other.column_names}"]
    if reference.num_rows != other.num_rows:
        return [f"rows differ: {reference.num_rows} vs {other.num_rows}"]
    order = [(key, "ascending") for key in keys]
    reference, other = reference.sort_by(order), other.sort_by(order)
    for name in reference.column_names:
        want, got = reference[name], other[name]
        if want.type != got.type:
            problems.append(f"{name}: type {got.type} vs {want.type}")
            continue
        same_nulls = pc.equal(pc.is_null(want), pc.is_null(got))
        if pa.types.is_floating(want.type):
            a = want.to_numpy(zero_copy_only=False).astype(float)
            b = got.to_numpy(zero_copy_only=False).astype(float)
            close = np.isclose(a, b, rtol=FLOAT_RTOL, atol=1e-12, equal_nan=True)
            bad = int((~close).sum()) + int(pc.sum(pc.invert(same_nulls)).as_py() or 0)
        else:
            equal = pc.fill_null(pc.equal(want, got), True)
            bad = int(pc.sum(pc.invert(pc.and_(equal, same_nulls))).as_py() or 0)
        if bad:
            problems.append(f"{name}: {bad} rows differ")
    return problems


def generate_and_ingest(
    args: argparse.Namespace, workdir: Path, stages: list[Stage]
) -> tuple[Any, int]:
    """Simulate the city, ingest it into a fresh workspace; return it and events."""
    subscribers, days = city_size(args.events)
    inbox = workdir / "inbox"
    simulation = timed(
        stages,
        "generate (not a stage)",
        "numpy",
        0,
        lambda: simulate_city(
            inbox,
            subscribers=subscribers,
            days=days,
            seed=args.seed,
            fmt=args.format,
            data_dir=default_data_dir(),
            overwrite=True,
        ),
    )
    if simulation is None:
        raise SystemExit(stages[-1].note)
    stages[-1].events = simulation.events
    config = demo_config(inbox)
    if args.format == "parquet":
        config = config.model_copy(
            update={
                "sources": tuple(
                    s.model_copy(
                        update={
                            "paths": tuple(
                                p.replace(".csv", ".parquet") for p in s.paths
                            )
                        }
                    )
                    for s in config.sources
                )
            }
        )
    config = config.model_copy(
        update={"engine": EngineConfig(memory_limit=args.memory_limit)}
    )
    shutil.rmtree(workdir / "ws", ignore_errors=True)
    workspace = init_workspace(workdir / "ws", config)

    events = timed(
        stages,
        "ingest",
        "duckdb (staging)",
        simulation.events,
        lambda: ingest_all(workspace, inbox),
    )
    events = events or simulation.events
    return workspace, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--engine", choices=["duckdb", "spark", "both"], default="duckdb"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="check DuckDB and Spark stored identical profiles and tiers",
    )
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--memory-limit",
        default="4GB",
        help="engine.memory_limit: DuckDB's limit and the local Spark driver heap",
    )
    parser.add_argument("--workdir", type=Path, help="keep the data here")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: reuse the lake ingested there by an earlier run",
    )
    args = parser.parse_args()
    engines = ["duckdb", "spark"] if args.engine == "both" else [args.engine]
    if args.compare and args.engine != "both" and not args.reuse:
        parser.error(
            "--compare needs --engine both (or --reuse of a run that ran both)"
        )

    subscribers, days = city_size(args.events)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="telcoreach-scale-"))
    print(
        f"{args.events:,} events asked: {subscribers:,} subscribers x {days} days "
        f"({args.format}) in {workdir}; engines {', '.join(engines)}; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    stages: list[Stage] = []
    started = time.perf_counter()
    if args.reuse and (workdir / "ws" / "config.yaml").exists():
        workspace = Workspace.open(workdir / "ws")
        batches = Lake(workspace.lake).batches("signalling")
        events = sum(batch.rows_stored for batch in batches)
        print(f"    reusing the lake of {workspace.root}: {events:,} events")
    else:
        workspace, events = generate_and_ingest(args, workdir, stages)
    for engine in engines:
        quality = quality_action(workspace, engine)
        if quality is None:
            print("    quality: telcoreach.quality.run_quality not found; skipped")
        else:
            timed(stages, "quality", engine, events, quality)
        profile = timed(
            stages,
            "profile",
            engine,
            events,
            lambda e=engine: run_profile(workspace, e),
        )
        if profile:
            parts = ", ".join(f"{k} {v:,.0f} s" for k, v in profile["stages_s"].items())
            stages[-1].detail = parts
            print(f"    {profile['subscribers']:,} subscribers profiled; {parts}")
        timed(
            stages,
            "segment",
            engine,
            events,
            lambda e=engine: run_segment(workspace, engine_name=e),
        )

    print()
    print(
        f"{events:,} signalling events stored ({subscribers:,} subscribers x "
        f"{days} days asked); total {time.perf_counter() - started:,.0f} s; "
        f"load {os.getloadavg()[0]:.1f} at the end"
    )
    print("| stage | engine | wall s | events/s | peak RSS GiB | note |")
    print("|---|---|---:|---:|---:|---|")
    for stage in stages:
        print(stage.row())

    if args.compare:
        print()
        for name, keys in (("profiles", ["subscriber"]), ("tiers", ["subscriber"])):
            reference = warehouse_table(workspace, "duckdb", name)
            other = warehouse_table(workspace, "spark", name)
            problems = compare_tables(reference, other, keys)
            verdict = "identical" if not problems else "; ".join(problems)
            print(
                f"{name}: {reference.num_rows:,} DuckDB rows vs "
                f"{other.num_rows:,} Spark rows, {len(reference.column_names)} "
                f"columns: {verdict}"
            )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
