"""Home cells and stay points of 10 M signalling events against reference tools.

Run with ``.venv/bin/python benchmarks/profile.py [--events N] [--subscribers S]
[--seed K] [--repeats R] [--show-sql]``.

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
3. The stay-point kernel runs on the located positions ordered by
   (subscriber, time); trackintel 1.4 ``generate_staypoints`` (sliding,
   haversine, same thresholds) runs on the first subscribers' positions
   (about 300,000). Targets: >= 2.5 M points/s and >= 20 x trackintel.
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
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
        bounce AS relocated,
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
    parser.add_argument("--trackintel-points", type=int, default=30_000)
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
    rng: np.random.Generator, n_events: int, n_subscribers: int
) -> tuple[pa.Table, pa.Table]:
    """Return (events in feed order, true home cell index of each subscriber)."""
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
    seconds = elapsed - np.repeat(elapsed[first] - gaps[first], counts)

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
    return table, pa.array(home)


def _write_lake(
    folder: Path, rng: np.random.Generator, n_events: int, n_subscribers: int
) -> tuple[list[str], str, dict[str, str]]:
    """Write signalling (one file per day) and cells; return paths and true homes."""
    tokens = _tokens(rng, n_subscribers)
    cells = _cells(rng)
    events, home = _signalling(rng, n_events, n_subscribers)
    seconds = events["event_time"].to_numpy()
    start_us = int(WEEK_START.timestamp() - dt.datetime(1970, 1, 1).timestamp())
    stored = pa.table(
        {
            "subscriber": tokens.take(events["subscriber"]),
            "event_time": pa.array(
                (start_us + seconds) * 1_000_000, pa.timestamp("us")
            ),
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
    return paths, str(cells_path), true_home


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
    import geopandas as gpd
    import trackintel

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

    with tempfile.TemporaryDirectory(prefix="telcoreach-profile-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        paths, cells_path, true_home = _write_lake(
            folder / "data", rng, n_events, n_subscribers
        )
        generate_s = time.perf_counter() - started

        engine = Engine(init_workspace(folder / "workspace"))
        con = engine.con
        threads = con.raw_sql("SELECT current_setting('threads')").fetchone()[0]
        signalling = con.read_parquet(
            paths, table_name="bench_signalling", hive_partitioning=False
        )
        cells = con.read_parquet(cells_path, table_name="bench_cells")

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
            # As build_profiles runs it: located and dwell events are stored.
            con.create_table("events_located", located, overwrite=True)
            dwell = cell_dwell(con.table("events_located"), MAX_DWELL_MIN)
            con.create_table("events_dwell", dwell, overwrite=True)
            staged = home_cells(con.table("events_dwell"), NIGHT_HOURS)
            con.create_table("homes_staged", staged, overwrite=True)

        run_sql()  # warm the file cache
        ibis_s = sql_s = float("inf")
        for _ in range(args.repeats):  # interleaved, so load spikes hit both
            ibis_s = min(ibis_s, _best_of(1, run_ibis)[0])
            sql_s = min(sql_s, _best_of(1, run_sql)[0])
        staged_s, _ = _best_of(1, run_staged)
        differing = _mismatches(con, "homes_ibis", "homes_sql")
        differing_staged = _mismatches(con, "homes_staged", "homes_sql")
        found = con.table("homes_ibis").to_pyarrow()
        right = sum(
            true_home[s] == c
            for s, c in zip(
                found["subscriber"].to_pylist(),
                found["home_cell"].to_pylist(),
                strict=True,
            )
        )
        bounces = (
            con.table("events_located")
            .join(signalling, ["subscriber", "event_time"])
            .filter(lambda t: t.cell_id != t.cell_id_right)
            .count()
            .to_pyarrow()
            .as_py()
        )

        ordered = con.table("events_located").order_by(["subscriber", "event_time"])
        positions = con.to_pyarrow(
            ordered.select("subscriber", "event_time", "lat", "lon")
        )
        _staypoints(positions.slice(0, 1_000))  # compile or load the kernel
        kernel_s, stays = _best_of(3, lambda: _staypoints(positions))

        boundary = positions["subscriber"][min(args.trackintel_points, len(positions))]
        subset_rows = min(args.trackintel_points, len(positions))
        subset = positions.slice(0, subset_rows)
        if subset_rows < len(positions):
            # Cut at a subscriber boundary so both libraries see whole histories.
            users = subset["subscriber"].to_numpy(zero_copy_only=False)
            subset = subset.slice(0, int(np.searchsorted(users, boundary.as_py())))
        trackintel_s, trackintel_stays = _trackintel(subset)
        subset_s, subset_stays = _best_of(3, lambda: _staypoints(subset))
        engine.close()
    load_after = os.getloadavg()

    n_positions = len(positions)
    ratio = ibis_s / sql_s
    kernel_rate = n_positions / kernel_s
    trackintel_rate = len(subset) / trackintel_s
    speedup = kernel_rate / trackintel_rate

    print(
        f"machine  : {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}, duckdb threads={threads}, "
        f"ibis {ibis.__version__}"
    )
    print(
        f"load avg : {load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)"
    )
    print(
        f"data     : {n_events:,} events, {n_subscribers:,} subscribers, "
        f"{GRID_SIDE * GRID_SIDE:,} cells, {len(paths)} day files, "
        f"written in {generate_s:.1f} s; {bounces:,} ping-pong events relocated"
    )
    print(
        f"homes    : {len(found):,} found, {right / max(len(found), 1):.1%} equal "
        f"the simulated home; differing from hand-written SQL: {differing} "
        f"(fused), {differing_staged} (staged)"
    )
    print()
    print(
        f"{'home cells (best of ' + str(args.repeats) + ')':<44}"
        f"{'seconds':>9}{'events/s':>14}{'vs SQL':>9}"
    )
    rows = [
        ("hand-written DuckDB SQL", sql_s),
        ("telcoreach Ibis, one expression", ibis_s),
        ("telcoreach Ibis, staged as build_profiles", staged_s),
    ]
    for label, seconds in rows:
        print(
            f"{label:<44}{seconds:>9.2f}{n_events / seconds:>14,.0f}"
            f"{seconds / sql_s:>8.2f}x"
        )
    print()
    print(f"{'stay points':<44}{'seconds':>9}{'points/s':>14}{'stays':>9}")
    print(
        f"{'telcoreach kernel, all positions':<44}{kernel_s:>9.2f}"
        f"{kernel_rate:>14,.0f}{len(stays):>9,}"
    )
    print(
        f"{'telcoreach kernel, trackintel subset':<44}{subset_s:>9.3f}"
        f"{len(subset) / subset_s:>14,.0f}{len(subset_stays):>9,}"
    )
    print(
        f"{'trackintel 1.4, ' + f'{len(subset):,} points':<44}{trackintel_s:>9.2f}"
        f"{trackintel_rate:>14,.0f}{trackintel_stays:>9,}"
    )
    print()
    print("targets")
    print(
        f"  telcoreach / SQL <= {SQL_TARGET_RATIO}x      : {ratio:6.2f}x  "
        f"{_verdict(ratio <= SQL_TARGET_RATIO and differing == 0)}"
    )
    print(
        f"  stay points >= {STAYPOINT_TARGET_POINTS_S / 1e6:.1f} M points/s : "
        f"{kernel_rate / 1e6:6.2f} M  "
        f"{_verdict(kernel_rate >= STAYPOINT_TARGET_POINTS_S)}"
    )
    print(
        f"  stay points >= {TRACKINTEL_TARGET_SPEEDUP:.0f}x trackintel    : "
        f"{speedup:6.0f}x  {_verdict(speedup >= TRACKINTEL_TARGET_SPEEDUP)}"
        f"  (same-subset: {trackintel_s / subset_s:.0f}x; stay counts "
        f"{'agree' if trackintel_stays == len(subset_stays) else 'DIFFER'})"
    )


if __name__ == "__main__":
    main()
