"""The same pipeline on Spark and on DuckDB gives the same profiles and tiers.

One small generated city (no public data needed, so this runs wherever
PySpark and Java are installed) is ingested once; ``profile`` and ``segment`` then run
on each engine over the same lake, and the warehouse tables are compared row
for row. DuckDB is the reference: it is the engine every other test checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from telcoreach.engine import Engine
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.pipeline import init_workspace, run_profile, run_segment

#: Py4J, the bridge to the Spark JVM, leaves its sockets for the garbage
#: collector to close; that is its design, not a leak of these tests.
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)

#: Relative tolerance for floating-point columns: the engines add doubles in
#: different orders, which moves the last bits and nothing more.
FLOAT_RTOL = 1e-9


DAYS = np.array(["2026-11-02", "2026-11-03"], dtype="datetime64[s]")  # Mon, Tue
SUBSCRIBERS = 200
GRID = 12  # macro cells on a GRID x GRID lattice, about 550 m apart
SUBWAY = 5  # subway stations on a line across the city


def _write_csv(path: Path, columns: dict[str, np.ndarray]) -> Path:
    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return path


def _city(root: Path, seed: int = 5) -> dict[str, Path]:
    """Write a small city in the carrier formats: parents, students, others.

    Parents commute by subway to work and use K-12 apps and tutoring searches
    in the evening; students spend the day at a school cell and hours online
    there; the others stay around. Times jitter, some night events ping-pong
    to a neighbouring cell, and a tenth of subscribers refuse profiling.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(GRID * GRID), GRID)
    macro = np.array([f"m{i:03d}" for i in range(GRID * GRID)])
    subway = np.array([f"s{i}" for i in range(SUBWAY)])
    cells = {
        "cell_id": np.concatenate([macro, subway]),
        "lac": np.ones(GRID * GRID + SUBWAY, dtype=np.int64),
        "lat": np.concatenate([39.85 + rows * 0.005, np.full(SUBWAY, 39.88)]).round(6),
        "lon": np.concatenate(
            [116.30 + cols * 0.0065, 116.31 + np.arange(SUBWAY) * 0.012]
        ).round(6),
        "radius_m": np.full(GRID * GRID + SUBWAY, 300.0),
        "cell_type": np.array(["macro"] * GRID * GRID + ["subway"] * SUBWAY),
    }
    school_cells = np.array([5, 70, 130])
    pois = {
        "poi_id": np.array(["p1", "p2", "p3"]),
        "name": np.array(["school 1", "school 2", "school 3"]),
        "poi_type": np.array(["school"] * 3),
        "lat": cells["lat"][school_cells] + 0.0005,
        "lon": cells["lon"][school_cells] + 0.0005,
    }

    n = SUBSCRIBERS
    msisdn = np.array([f"138{i:08d}" for i in range(n)])
    persona = rng.choice(3, size=n, p=[0.4, 0.2, 0.4])  # parent, student, other
    home = rng.integers(0, GRID * GRID, n)
    work = np.where(
        persona == 1, rng.choice(school_cells, n), rng.integers(0, GRID * GRID, n)
    )
    subscribers = {
        "msisdn": msisdn,
        "imsi": np.full(n, ""),
        "imei": np.full(n, ""),
        "age_band": np.where(persona == 1, "<18", "35-44"),
        "gender": rng.choice(np.array(["F", "M"]), n),
        "plan": rng.choice(np.array(["4g", "5g"]), n),
        "device_brand": rng.choice(np.array(["huawei", "xiaomi", "apple"]), n),
        "device_model": np.full(n, "x"),
        "tenure_months": rng.integers(1, 120, n),
        "consent_marketing": np.where(rng.random(n) < 0.8, "true", "false"),
        "consent_profiling": np.where(rng.random(n) < 0.9, "true", "false"),
        "opted_out": np.full(n, "false"),
    }

    # One day's plan, in minutes: at home by night, 4 subway stations at
    # 8:00 and 18:00 for the parents, work or school by day, home at night.
    night = np.array([0, 60, 150, 240, 330, 420, 1260, 1320, 1380])
    commute = np.array([480, 485, 490, 495, 1080, 1085, 1090, 1095])
    day = np.arange(540, 1021, 60)
    minutes = np.concatenate([night, commute, day])
    kind = np.repeat([0, 1, 2], [night.size, commute.size, day.size])
    person = np.repeat(np.arange(n), minutes.size * DAYS.size)
    slot = np.tile(np.tile(np.arange(minutes.size), DAYS.size), n)
    day_of = np.tile(np.repeat(np.arange(DAYS.size), minutes.size), n)
    cell = np.where(kind[slot] == 2, work[person], home[person])
    station = subway[np.arange(slot.size) % SUBWAY]
    riding = (kind[slot] == 1) & (persona[person] == 0)
    keep = (kind[slot] != 1) | riding
    bounce = (kind[slot] == 0) & (rng.random(slot.size) < 0.1)
    cell = np.where(bounce, (cell + 1) % (GRID * GRID), cell)
    cell_id = np.where(riding, station, macro[cell])
    jitter = np.where(kind[slot] == 1, 0, rng.integers(0, 20, slot.size))
    seconds = (minutes[slot] + jitter) * 60 + rng.integers(0, 60, slot.size)
    times = DAYS[day_of] + seconds.astype("timedelta64[s]")
    signalling = {
        "msisdn": msisdn[person][keep],
        "imsi": np.full(int(keep.sum()), ""),
        "imei": np.full(int(keep.sum()), ""),
        "event_time": np.char.replace(
            np.datetime_as_string(times[keep], unit="s"), "T", " "
        ),
        "lac": np.ones(int(keep.sum()), dtype=np.int64),
        "cell_id": cell_id[keep],
        "event_type": np.full(int(keep.sum()), "periodic_update"),
    }

    # DPI: parents open 3-6 K-12 apps at home each evening and some search for
    # a tutor; students spend 1-4 h online at school; everyone watches video.
    apps = np.array(["作业帮", "猿辅导", "学而思", "小猿搜题", "洋葱学园", "一起作业"])
    who, app = np.nonzero(
        (persona[:, None] == 0)
        & (np.arange(apps.size) < rng.integers(3, 7, n)[:, None])
    )
    searcher = rng.random(n) < 0.5
    sessions = []
    for index, date in enumerate(DAYS):
        start = date + np.timedelta64(20 * 3600, "s") + (app * 600).astype("m8[s]")
        sessions.append(
            (
                who,
                start,
                start + np.timedelta64(480, "s"),
                apps[app],
                "k12_education",
                np.where((app == 0) & searcher[who] & (index == 0), "小学数学家教", ""),
                home[who],
            )
        )
        kids = np.flatnonzero(persona == 1)
        begin = date + np.timedelta64(10 * 3600, "s")
        length = rng.integers(60, 240, kids.size) * 60
        sessions.append(
            (
                kids,
                np.full(kids.size, begin),
                begin + length.astype("m8[s]"),
                "bilibili",
                "video",
                "",
                work[kids],
            )
        )
        everyone = np.arange(n)
        evening = date + np.timedelta64(19 * 3600, "s")
        sessions.append(
            (
                everyone,
                np.full(n, evening),
                evening + rng.integers(5, 60, n).astype("m8[m]"),
                "douyin",
                "video",
                "",
                home,
            )
        )
    parts = []
    for who_, start, end, name, category, search, cell_index in sessions:
        size = who_.size
        parts.append(
            {
                "msisdn": msisdn[who_],
                "start_time": np.datetime_as_string(start, unit="s"),
                "end_time": np.datetime_as_string(end.astype("M8[s]"), unit="s"),
                "app_name": np.broadcast_to(name, size),
                "app_category": np.broadcast_to(category, size),
                "search_keywords": np.broadcast_to(search, size),
                "bytes_up": np.full(size, 10, dtype=np.int64),
                "bytes_down": np.full(size, 1000, dtype=np.int64),
                "host": np.full(size, "h"),
                "cell_id": macro[cell_index],
            }
        )
    dpi = {
        name: np.char.replace(
            np.concatenate([part[name] for part in parts]).astype(str), "T", " "
        )
        if name in ("start_time", "end_time")
        else np.concatenate([part[name] for part in parts])
        for name in parts[0]
    }
    return {
        "cells": _write_csv(root / "cells.csv", cells),
        "pois": _write_csv(root / "pois.csv", pois),
        "subscribers": _write_csv(root / "subscribers.csv", subscribers),
        "signalling": _write_csv(root / "signalling.csv", signalling),
        "dpi": _write_csv(root / "dpi.csv", dpi),
    }


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory, spark_session):
    """Profile and segment a 200-subscriber, 2-day city on DuckDB and Spark."""
    root = tmp_path_factory.mktemp("spark_city")
    workspace = init_workspace(root / "ws")
    for kind, path in _city(root).items():
        ingest_batch(workspace, kind, file_sources(kind, [path]))
    results = {}
    for name in ("duckdb", "spark"):
        profile = run_profile(workspace, name)
        segment = run_segment(workspace, engine_name=name)
        engine = Engine(workspace, name)
        tables = {
            table: engine.table(table).to_pyarrow()
            for table in ("profiles", "tiers", "staypoints")
        }
        engine.close()
        results[name] = {"profile": profile, "segment": segment, "tables": tables}
    return results


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in keys])


def _assert_same_rows(reference: pa.Table, other: pa.Table, keys: list[str]) -> None:
    assert other.column_names == reference.column_names
    assert other.num_rows == reference.num_rows
    reference, other = _sorted(reference, keys), _sorted(other, keys)
    for name in reference.column_names:
        expected, found = reference[name], other[name]
        assert found.type == expected.type, f"{name}: {found.type} != {expected.type}"
        expected, found = expected.to_pylist(), found.to_pylist()
        if pa.types.is_floating(reference[name].type):
            for row, (want, got) in enumerate(zip(expected, found, strict=True)):
                same = (want is None and got is None) or (
                    want is not None
                    and got is not None
                    and math.isclose(want, got, rel_tol=FLOAT_RTOL, abs_tol=1e-12)
                )
                assert same, f"{name} row {row}: spark {got!r}, duckdb {want!r}"
        else:
            assert found == expected, f"column {name} differs"


def test_spark_profiles_equal_duckdb_profiles_row_for_row(both_engines):
    reference = both_engines["duckdb"]["tables"]["profiles"]
    assert reference.num_rows > 100
    _assert_same_rows(
        reference, both_engines["spark"]["tables"]["profiles"], ["subscriber"]
    )


def test_spark_tiers_equal_duckdb_tiers_row_for_row(both_engines):
    reference = both_engines["duckdb"]["tables"]["tiers"]
    assert len(set(reference["tier"].to_pylist())) >= 2
    _assert_same_rows(
        reference, both_engines["spark"]["tables"]["tiers"], ["subscriber"]
    )


def test_spark_stay_points_equal_duckdb_stay_points(both_engines):
    reference = both_engines["duckdb"]["tables"]["staypoints"]
    assert reference.num_rows > 0
    _assert_same_rows(
        reference,
        both_engines["spark"]["tables"]["staypoints"],
        ["subscriber", "started_at"],
    )


def test_spark_step_summaries_equal_duckdb_summaries(both_engines):
    duckdb, spark = both_engines["duckdb"], both_engines["spark"]
    timings = {"seconds", "stages_s"}
    assert {k: v for k, v in spark["profile"].items() if k not in timings} == {
        k: v for k, v in duckdb["profile"].items() if k not in timings
    }
    assert spark["segment"] == duckdb["segment"]
