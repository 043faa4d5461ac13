"""Home cells and stay points of 10 M signalling events against reference tools.

Run with ``.venv/bin/python benchmarks/home_cells.py [--events N] [--subscribers S]
[--seed K] [--repeats R] [--trackintel-points P] [--staged] [--show-sql]``.
Wall and CPU seconds are both printed: CPU seconds (all threads of this
process) move less when other processes load the machine.

1. Synthetic signalling (a week of events of ``S`` subscribers on a grid of
   cells, with night-time homes, weekday workplaces, bursts of events and
   ping-pong hand-overs) is written straight in the lake's stored layout
   (token ``subscriber``, ``event_time``, ``cell_id``... one Parquet file per
   day, in feed order) plus a cells table. Ingest is not what is timed here.
2. Home cells (night 21-07, ping-pong window 300 s, dwell capped at 120 min)
   are computed by telcoreach's Ibis path (``located_events`` ->
   ``cell_dwell`` -> ``home_cells``) and by a hand-written DuckDB query with
   the same rules and tie-break; both are stored with CREATE TABLE on the
   same connection (2 threads) and must give identical homes. Target: the
   telcoreach path within 1.5 x the time of the hand-written query.
   ``--staged`` also times the path as ``build_profiles`` runs it, storing
   located and dwell events as tables on the way.
3. The stay-point kernel runs on the located positions ordered by
   (subscriber, time); trackintel 1.4 ``generate_staypoints`` (sliding,
   haversine, same thresholds) runs on the first subscribers' positions
   (30,000 by default: on these positions, where a stay ends every few
   events, trackintel spends milliseconds per stay and manages only a few
   thousand points/s). Targets: >= 2.5 M points/s and >= 20 x trackintel.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trackintel

from telcoreach.engine import Engine
from telcoreach.features import (
    cell_dwell,
    detect_staypoints,
    home_cells,
    located_events,
)
from telcoreach.pipeline import init_workspace

#: Profile settings of the default configuration (``ProfileConfig``).
PINGPONG_WINDOW_S = 300.0
MAX_DWELL_MIN = 120.0
NIGHT_HOURS = (21, 7)
STAYPOINTS = {"dist_m": 600.0, "time_min": 20.0, "gap_min": 120.0}

SQL_TARGET_RATIO = 1.5
STAYPOINT_TARGET_POINTS_S = 2_500_000
TRACKINTEL_TARGET_SPEEDUP = 20.0

#: The synthetic week starts on a Monday.
WEEK_START = dt.datetime(2024, 3, 4)
GRID_SIDE = 120
CELL_SPACING_DEG = (0.0045, 0.006)  # about 500 m by 510 m in Beijing
CITY_CORNER = (39.70, 116.10)

HAND_WRITTEN_SQL = """
WITH events AS (
    SELECT s.subscriber, s.event_time, s.cell_id, c.lat, c.lon, c.cell_type
    FROM {signalling} AS s
    JOIN {cells} AS c ON s.cell_id = c.cell_id
),
neighbours AS (
    SELECT
        *,
        lag(cell_id) OVER w AS prev_cell,
        lead(cell_id) OVER w AS next_cell,
        lag(lat) OVER w AS prev_lat,
        lag(lon) OVER w AS prev_lon,
        lead(event_time) OVER w AS next_time,
        epoch(lead(event_time) OVER w) - epoch(lag(event_time) OVER w) AS span_s
    FROM events
    WINDOW w AS (PARTITION BY subscriber ORDER BY event_time)
),
night AS (
    SELECT
        subscriber,
        CASE WHEN bounce THEN prev_cell ELSE cell_id END AS cell_id,
        CASE WHEN bounce THEN prev_lat ELSE lat END AS lat,
        CASE WHEN bounce THEN prev_lon ELSE lon END AS lon,
        least(coalesce(epoch(next_time) - epoch(event_time), 0), {cap_s})
            AS dwell_s
    FROM (
        SELECT
            *,
            coalesce(
                prev_cell = next_cell AND cell_id <> prev_cell
                AND span_s <= {window_s} AND cell_type <> 'subway',
                false
            ) AS bounce
        FROM neighbours
    )
    WHERE hour(event_time) >= {night_start} OR hour(event_time) < {night_end}
),
per_cell AS (
    SELECT subscriber, cell_id, sum(dwell_s) AS seconds,
           any_value(lat) AS lat, any_value(lon) AS lon
    FROM night
    GROUP BY subscriber, cell_id
)
SELECT
    subscriber,
    cell_id AS home_cell,
    lat AS home_lat,
    lon AS home_lon,
    seconds / 3600 AS home_dwell_h
FROM per_cell
QUALIFY row_number() OVER (
    PARTITION BY subscriber ORDER BY seconds DESC, cell_id
) = 1
"""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--subscribers", type=int, default=None, help="default: events / 350"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each query (best kept)"
    )
    parser.add_argument(
        "--trackintel-points",
        type=int,
        default=30_000,
        help="positions given to trackintel, cut at a subscriber boundary; on "
        "these positions it does only about 1-3 k points/s",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help="also time home cells as build_profiles runs them (located and "
        "dwell events stored as tables first)",
    )
    parser.add_argument(
        "--show-sql", action="store_true", help="print the SQL Ibis generates"
    )
    return parser.parse_args()


def _tokens(rng: np.random.Generator, n: int) -> pa.Array:
    """Return ``n`` distinct subscriber tokens: base32 lowercase, 24 characters."""
    tokens: set[str] = set()
    while len(tokens) < n:
        tokens.add(base64.b32encode(rng.bytes(15)).decode().lower())
    return pa.array(sorted(tokens), pa.string())


def _cells(rng: np.random.Generator) -> pa.Table:
    """Return a grid of cells over a city, 4 % of them subway cells."""
    n_cells = GRID_SIDE * GRID_SIDE
    row, col = np.divmod(np.arange(n_cells), GRID_SIDE)
    kinds = np.array(["macro", "micro", "indoor", "subway"])
    kind = rng.choice(len(kinds), size=n_cells, p=[0.5, 0.3, 0.16, 0.04])
    return pa.table(
        {
            "cell_id": pa.array(
                [f"460-00-{4100 + r // 10}-{i}" for i, r in enumerate(row)]
            ),
            "lac": pa.array(4100 + row // 10, pa.int64()),
            "lat": CITY_CORNER[0] + row * CELL_SPACING_DEG[0],
            "lon": CITY_CORNER[1] + col * CELL_SPACING_DEG[1],
            "radius_m": np.where(kinds[kind] == "macro", 800.0, 300.0),
            "cell_type": pa.array(kinds[kind]),
            "_batch_seq": pa.array(np.ones(n_cells, np.int32)),
        }
    )


def _signalling(
    rng: np.random.Generator, n_events: int, n_subscribers: int, subway: np.ndarray
) -> tuple[pa.Table, np.ndarray, int]:
    """Return (events in feed order, true home cell of each subscriber, bounces).

    ``subway`` flags subway cells; ``bounces`` counts, by brute force on the
    (subscriber, time) order, the events the ping-pong rule must relocate.
    """
    n_cells = GRID_SIDE * GRID_SIDE
    subscriber = np.sort(rng.integers(0, n_subscribers, n_events))
    counts = np.bincount(subscriber, minlength=n_subscribers)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # Gaps: mostly minutes to hours apart, 10 % in bursts of seconds (calls,
    # hand-overs), so that A -> B -> A bounces inside the ping-pong window occur.
    mean_gap_s = 7 * 86_400 / 350
    burst = rng.random(n_events) < 0.1
    gaps = np.where(
        burst,
        rng.integers(1, 121, n_events),
        1 + rng.exponential((mean_gap_s - 6) / 0.9, n_events).astype(np.int64),
    )
    gaps[first[counts > 0]] = rng.integers(0, 3_600, int((counts > 0).sum()))
    elapsed = np.cumsum(gaps)
    start = np.minimum(first, n_events - 1)
    seconds = elapsed - np.repeat(elapsed[start] - gaps[start], counts)

    # Where a subscriber is depends on the time: home at night, work in
    # weekday office hours, else home or one of three usual places, drawn
    # once per 3-hour slot so that people stay put for a while. Events land
    # on that place's cell, sometimes on a neighbouring cell (radio noise),
    # rarely on a random cell (a trip).
    home = rng.integers(0, n_cells, n_subscribers)
    work = rng.integers(0, n_cells, n_subscribers)
    places = np.column_stack([home, home, rng.integers(0, n_cells, (n_subscribers, 3))])
    slot = seconds // (3 * 3_600)
    slot_place = rng.integers(0, places.shape[1], (n_subscribers, int(slot.max()) + 1))
    hour = seconds // 3_600 % 24
    weekday = seconds // 86_400 % 7 < 5
    night = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    office = weekday & (hour >= 9) & (hour < 17)
    place = np.where(
        night,
        home[subscriber],
        np.where(
            office,
            work[subscriber],
            places[subscriber, slot_place[subscriber, slot]],
        ),
    )
    step = np.array([1, -1, GRID_SIDE, -GRID_SIDE])
    draw = rng.random(n_events)
    cell = np.where(
        draw < 0.85,
        place,
        np.where(
            draw < 0.98,
            (place + rng.choice(step, n_events)) % n_cells,
            rng.integers(0, n_cells, n_events),
        ),
    )

    same_subscriber = subscriber[:-2] == subscriber[2:]
    bounces = int(
        np.sum(
            same_subscriber
            & (cell[:-2] == cell[2:])
            & (cell[1:-1] != cell[:-2])
            & (seconds[2:] - seconds[:-2] <= PINGPONG_WINDOW_S)
            & ~subway[cell[1:-1]]
        )
    )

    order = np.argsort(seconds, kind="stable")
    event_types = pa.array(["periodic_update", "handover", "call", "sms", "data"])
    table = pa.table(
        {
            "subscriber": subscriber[order],
            "event_time": seconds[order],
            "cell": cell[order],
            "event_type": event_types.take(rng.integers(0, 5, n_events)),
        }
    )
    return table, home, bounces


@dataclass
class SyntheticLake:
    """Where the synthetic lake was written, and its ground truth."""

    signalling_paths: list[str]
    cells_path: str
    true_home: dict[str, str]
    pingpong_events: int


def _write_lake(
    folder: Path, rng: np.random.Generator, n_events: int, n_subscribers: int
) -> SyntheticLake:
    """Write signalling (one file per day, feed order) and cells as Parquet."""
    tokens = _tokens(rng, n_subscribers)
    cells = _cells(rng)
    subway = pc.equal(cells["cell_type"], "subway").to_numpy(zero_copy_only=False)
    events, home, bounces = _signalling(rng, n_events, n_subscribers, subway)
    seconds = events["event_time"].to_numpy()
    start_us = (WEEK_START - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    stored = pa.table(
        {
            "subscriber": tokens.take(events["subscriber"]),
            "event_time": pa.array(start_us + seconds * 1_000_000, pa.timestamp("us")),
            "lac": cells["lac"].take(events["cell"]),
            "cell_id": cells["cell_id"].take(events["cell"]),
            "event_type": events["event_type"],
            "_batch_seq": pa.array(np.ones(len(seconds), np.int32)),
        }
    )
    day = seconds // 86_400
    bounds = np.searchsorted(day, np.arange(day.max() + 2))
    paths = []
    for index in range(len(bounds) - 1):
        low, high = int(bounds[index]), int(bounds[index + 1])
        if high == low:
            continue
        date = (WEEK_START + dt.timedelta(days=index)).date().isoformat()
        path = folder / "signalling" / f"day={date}" / "part_0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(stored.slice(low, high - low), path)
        paths.append(str(path))
    cells_path = folder / "cells" / "part_0.parquet"
    cells_path.parent.mkdir(parents=True)
    pq.write_table(cells, cells_path)
    true_home = dict(
        zip(tokens.to_pylist(), cells["cell_id"].take(home).to_pylist(), strict=True)
    )
    return SyntheticLake(paths, str(cells_path), true_home, bounces)


def _timed(run) -> tuple[float, float]:
    """Return (wall seconds, CPU seconds of this process, all threads) of ``run``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _best_of(repeats: int, run) -> tuple[float, object]:
    """Return (fastest wall time in seconds, last result) of ``repeats`` runs."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def _mismatches(con, left: str, right: str) -> int:
    """Return subscribers whose home differs between two tables (or is missing)."""
    query = f"""
        SELECT count(*) FROM {left} AS a FULL JOIN {right} AS b USING (subscriber)
        WHERE a.home_cell IS DISTINCT FROM b.home_cell
           OR a.home_lat IS DISTINCT FROM b.home_lat
           OR a.home_lon IS DISTINCT FROM b.home_lon
           OR a.home_dwell_h IS NULL OR b.home_dwell_h IS NULL
           OR abs(a.home_dwell_h - b.home_dwell_h) > 1e-9
    """
    return con.raw_sql(query).fetchone()[0]


def _trackintel(positions: pa.Table) -> tuple[float, int]:
    """Return (seconds, stay points) of trackintel's sliding method."""
    frame = positions.select(["subscriber", "event_time"]).to_pandas()
    fixes = trackintel.Positionfixes(
        gpd.GeoDataFrame(
            {
                "user_id": frame["subscriber"],
                "tracked_at": frame["event_time"].dt.tz_localize("Asia/Shanghai"),
            },
            geometry=gpd.points_from_xy(positions["lon"], positions["lat"]),
            crs="EPSG:4326",
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        _, stays = fixes.generate_staypoints(
            method="sliding",
            distance_metric="haversine",
            dist_threshold=STAYPOINTS["dist_m"],
            time_threshold=STAYPOINTS["time_min"],
            gap_threshold=STAYPOINTS["gap_min"],
        )
    return time.perf_counter() - started, len(stays)


def _whole_subscribers(positions: pa.Table, n_points: int) -> pa.Table:
    """Return the first positions, about ``n_points``, ending between subscribers."""
    if n_points >= len(positions):
        return positions
    users = positions["subscriber"].slice(0, n_points + 1)
    boundary = users[n_points]
    first_of_boundary = pc.index(users, boundary).as_py()
    return positions.slice(0, first_of_boundary or n_points)


def _staypoints(positions: pa.Table) -> pa.Table:
    return detect_staypoints(
        positions["subscriber"],
        positions["event_time"],
        positions["lat"],
        positions["lon"],
        **STAYPOINTS,
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    """Print home-cell and stay-point throughput against the references."""
    args = _arguments()
    n_events = args.events
    n_subscribers = args.subscribers or max(1, n_events // 350)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    timings: dict[str, tuple[float, float]] = {}

    with tempfile.TemporaryDirectory(prefix="telcoreach-profile-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        lake = _write_lake(folder / "data", rng, n_events, n_subscribers)
        generate_s = time.perf_counter() - started

        engine = Engine(init_workspace(folder / "workspace"))
        con = engine.con
        threads = con.raw_sql("SELECT current_setting('threads')").fetchone()[0]
        signalling = con.read_parquet(
            lake.signalling_paths,
            table_name="bench_signalling",
            hive_partitioning=False,
        )
        cells = con.read_parquet(lake.cells_path, table_name="bench_cells")

        located = located_events(signalling, cells, PINGPONG_WINDOW_S)
        homes = home_cells(cell_dwell(located, MAX_DWELL_MIN), NIGHT_HOURS)
        if args.show_sql:
            print(ibis.to_sql(homes, dialect="duckdb"))
        hand_sql = HAND_WRITTEN_SQL.format(
            signalling="bench_signalling",
            cells="bench_cells",
            cap_s=MAX_DWELL_MIN * 60,
            window_s=PINGPONG_WINDOW_S,
            night_start=NIGHT_HOURS[0],
            night_end=NIGHT_HOURS[1],
        )

        def run_ibis() -> None:
            con.create_table("homes_ibis", homes, overwrite=True)

        def run_sql() -> None:
            con.raw_sql(f"CREATE OR REPLACE TABLE homes_sql AS {hand_sql}")

        def run_staged() -> None:
            # As build_profiles runs it: the dwell events are stored once.
            dwell = cell_dwell(located, MAX_DWELL_MIN)
            con.create_table("events_dwell", dwell, overwrite=True)
            staged = home_cells(con.table("events_dwell"), NIGHT_HOURS)
            con.create_table("homes_staged", staged, overwrite=True)

        runs = [("sql", run_sql), ("ibis", run_ibis)]
        if args.staged:
            runs.append(("staged", run_staged))
        for _ in range(args.repeats):  # interleaved, so load spikes hit all
            for name, run in runs:
                wall, cpu = _timed(run)
                best = timings.get(name, (float("inf"), float("inf")))
                timings[name] = (min(best[0], wall), min(best[1], cpu))
        differing = {
            name: _mismatches(con, f"homes_{name}", "homes_sql") for name, _ in runs[1:]
        }
        found = con.table("homes_ibis").to_pyarrow()
        right = sum(
            lake.true_home[subscriber] == cell
            for subscriber, cell in zip(
                found["subscriber"].to_pylist(),
                found["home_cell"].to_pylist(),
                strict=True,
            )
        )

        ordered = located.select("subscriber", "event_time", "lat", "lon").order_by(
            ["subscriber", "event_time"]
        )
        fetch_s, positions = _best_of(1, lambda: con.to_pyarrow(ordered))
        engine.close()

    _staypoints(positions.slice(0, 1_000))  # compile or load the kernel
    kernel_s, stays = _best_of(3, lambda: _staypoints(positions))
    subset = _whole_subscribers(positions, args.trackintel_points)
    trackintel_s, trackintel_stays = _trackintel(subset)
    subset_s, subset_stays = _best_of(3, lambda: _staypoints(subset))
    load_after = os.getloadavg()

    sql_s = timings["sql"][0]
    ratio = timings["ibis"][0] / sql_s
    cpu_ratio = timings["ibis"][1] / timings["sql"][1]
    kernel_rate = len(positions) / kernel_s
    trackintel_rate = len(subset) / trackintel_s
    speedup = kernel_rate / trackintel_rate
    stays_agree = trackintel_stays == len(subset_stays)

    print(
        f"machine  : {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, DuckDB threads={threads}, "
        f"ibis {ibis.__version__}"
    )
    print(f"load avg : {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(
        f"data     : {n_events:,} events of {n_subscribers:,} subscribers on "
        f"{GRID_SIDE * GRID_SIDE:,} cells, {len(lake.signalling_paths)} day files "
        f"(written in {generate_s:.0f} s); {lake.pingpong_events:,} ping-pong events"
    )
    mismatch_text = ", ".join(f"{n} ({name})" for name, n in differing.items())
    print(
        f"homes    : {len(found):,} found, {right / max(len(found), 1):.1%} are the "
        f"simulated home; differing from hand-written SQL: {mismatch_text}"
    )
    print()
    print(
        f"{'home cells, best of ' + str(args.repeats):<42}{'wall s':>8}"
        f"{'events/s':>12}{'vs SQL':>8}{'CPU s':>8}{'vs SQL':>8}"
    )
    labels = {
        "sql": "hand-written DuckDB SQL",
        "ibis": "telcoreach Ibis (one expression)",
        "staged": "telcoreach Ibis staged as build_profiles",
    }
    for name, (wall, cpu) in timings.items():
        print(
            f"{labels[name]:<42}{wall:>8.2f}{n_events / wall:>12,.0f}"
            f"{wall / sql_s:>7.2f}x{cpu:>8.2f}{cpu / timings['sql'][1]:>7.2f}x"
        )
    print()
    print(f"{'stay points':<42}{'wall s':>8}{'points/s':>12}{'stays':>12}")
    print(f"{'located events ordered and fetched':<42}{fetch_s:>8.2f}")
    print(
        f"{'telcoreach kernel, all positions':<42}{kernel_s:>8.2f}"
        f"{kernel_rate:>12,.0f}{len(stays):>12,}"
    )
    print(
        f"{'telcoreach kernel, trackintel subset':<42}{subset_s:>8.3f}"
        f"{len(subset) / subset_s:>12,.0f}{len(subset_stays):>12,}"
    )
    label = f"trackintel {trackintel.__version__}, {len(subset):,} points"
    print(
        f"{label:<42}{trackintel_s:>8.2f}{trackintel_rate:>12,.0f}"
        f"{trackintel_stays:>12,}"
    )
    print()
    print("targets")
    loaded = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    if differing["ibis"]:
        sql_verdict = "NOT met: homes differ"
    elif ratio <= SQL_TARGET_RATIO:
        sql_verdict = "met"
    elif loaded and cpu_ratio <= SQL_TARGET_RATIO:
        sql_verdict = "met on CPU time only (wall times disturbed by load)"
    else:
        sql_verdict = "NOT met"
    print(
        f"  telcoreach / SQL <= {SQL_TARGET_RATIO}x     : {ratio:6.2f}x     "
        f"{sql_verdict} (CPU time {cpu_ratio:.2f}x)"
    )
    print(
        f"  stay points >= {STAYPOINT_TARGET_POINTS_S / 1e6:.1f} M points/s: "
        f"{kernel_rate / 1e6:6.2f} M/s   "
        f"{_verdict(kernel_rate >= STAYPOINT_TARGET_POINTS_S)}"
    )
    print(
        f"  stay points >= {TRACKINTEL_TARGET_SPEEDUP:.0f}x trackintel   : "
        f"{speedup:6.0f}x     {_verdict(speedup >= TRACKINTEL_TARGET_SPEEDUP)}"
        f" (same subset {trackintel_s / subset_s:.0f}x; stay counts "
        f"{'agree' if stays_agree else 'DIFFER'})"
    )


if __name__ == "__main__":
    main()
