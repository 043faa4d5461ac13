"""Stay points: trackintel's sliding method, reproduced fix for fix, at scale.

The reference is trackintel 1.4 (a test-only dependency) run on the real
GeoLife trajectories with the same thresholds, and small hand-made tracks
whose stays can be worked out by hand.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcoreach.errors import ConfigError, SchemaError
from telcoreach.features._staypoints import (
    _reaches,
    _sort_order,
    detect_staypoints,
    staypoints_csv,
)

# One degree of latitude is about 111.2 km, so 0.0001 degree is about 11 m.
METRES_PER_DEGREE_LAT = 111_195.0
PARAMETERS = {"dist_m": 100, "time_min": 5, "gap_min": 15}


def _trackintel_staypoints(positions: pd.DataFrame, **parameters):
    """Run trackintel's sliding method; return (fixes with staypoint_id, stays)."""
    trackintel = pytest.importorskip("trackintel")
    import geopandas as gpd

    fixes = gpd.GeoDataFrame(
        positions[["user_id", "tracked_at"]],
        geometry=gpd.points_from_xy(positions["lon"], positions["lat"]),
        crs="EPSG:4326",
    )
    fixes = trackintel.Positionfixes(fixes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fixes.generate_staypoints(
            method="sliding",
            distance_metric="haversine",
            dist_threshold=parameters["dist_m"],
            time_threshold=parameters["time_min"],
            gap_threshold=parameters["gap_min"],
            include_last=False,
        )


@pytest.fixture(
    scope="module",
    params=[
        # 34,135 fixes and 79 stay points: trackintel takes a few seconds.
        pytest.param((0, 3, 4, 6), id="four-users"),
        # 164,531 fixes and 343 stay points: trackintel takes 10 s or more.
        pytest.param(None, id="all-11-users", marks=pytest.mark.slow),
    ],
)
def geolife(request, datasets_dir):
    """GeoLife fixes read by trackintel, its stay points and ours."""
    trackintel = pytest.importorskip("trackintel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixes, _ = trackintel.io.read_geolife(
            str(datasets_dir / "1-geolife" / "geolife_long_10_MB")
        )
    if request.param is not None:
        fixes = fixes[fixes["user_id"].isin(request.param)]
    positions = pd.DataFrame(
        {
            "user_id": fixes["user_id"].to_numpy(),
            "tracked_at": fixes["tracked_at"],
            "lat": fixes.geometry.y.to_numpy(),
            "lon": fixes.geometry.x.to_numpy(),
        }
    )
    members, reference = _trackintel_staypoints(positions, **PARAMETERS)
    ours = detect_staypoints(
        positions["user_id"].to_numpy(),
        positions["tracked_at"],
        positions["lat"].to_numpy(),
        positions["lon"].to_numpy(),
        **PARAMETERS,
    ).to_pandas()
    return positions, members, reference.reset_index(drop=True), ours


@pytest.mark.realdata
def test_geolife_stays_have_trackintel_users_and_start_times(geolife):
    _, _, reference, ours = geolife

    assert len(reference) > 50
    assert len(ours) == len(reference)
    assert ours["user_id"].tolist() == reference["user_id"].tolist()
    assert (ours["started_at"].to_numpy() == reference["started_at"].to_numpy()).all()


@pytest.mark.realdata
def test_geolife_finished_at_is_last_fix_inside_not_first_fix_outside(geolife):
    positions, members, reference, ours = geolife
    inside = members.dropna(subset=["staypoint_id"]).groupby("staypoint_id")
    next_fix_time = positions["tracked_at"].to_numpy()[ours["last_row"] + 1]

    assert (ours["finished_at"].to_numpy() == inside["tracked_at"].max()).all()
    assert (next_fix_time == reference["finished_at"].to_numpy()).all()


@pytest.mark.realdata
def test_geolife_stays_hold_the_fixes_trackintel_assigns(geolife):
    _, members, _, ours = geolife
    inside = members.dropna(subset=["staypoint_id"]).groupby("staypoint_id")

    assert ours["n_points"].tolist() == inside.size().tolist()


@pytest.mark.realdata
def test_geolife_centroid_is_mean_of_the_stay_fixes(geolife):
    _, members, _, ours = geolife
    inside = members.dropna(subset=["staypoint_id"])
    means = inside.assign(lat=inside.geometry.y, lon=inside.geometry.x).groupby(
        "staypoint_id"
    )[["lat", "lon"]]

    np.testing.assert_allclose(ours["lat"], means.mean()["lat"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["lon"], means.mean()["lon"], rtol=0, atol=1e-9)


@pytest.mark.realdata
def test_geolife_distinct_centroid_equals_trackintel_geometry(geolife):
    positions, _, reference, _ = geolife

    ours = detect_staypoints(
        positions["user_id"].to_numpy(),
        positions["tracked_at"],
        positions["lat"].to_numpy(),
        positions["lon"].to_numpy(),
        **PARAMETERS,
        centroid="distinct",
    )

    np.testing.assert_allclose(ours["lat"], reference.geometry.y, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["lon"], reference.geometry.x, rtol=0, atol=1e-9)


def _track(minutes, north_m, user="a"):
    """Fixes of one user at ``minutes`` and ``north_m`` metres north of a point."""
    minutes = np.asarray(minutes, dtype=np.int64)
    return {
        "user": [user] * len(minutes),
        "ts": minutes * 60,
        "lat": 39.9 + np.asarray(north_m, dtype=float) / METRES_PER_DEGREE_LAT,
        "lon": np.full(len(minutes), 116.4),
    }


def _detect(track, **parameters):
    options = {**PARAMETERS, **parameters}
    return detect_staypoints(
        track["user"], track["ts"], track["lat"], track["lon"], **options
    ).to_pylist()


def test_long_stay_is_one_stay_from_anchor_to_last_fix_inside():
    track = _track(range(0, 61), [0] * 60 + [500])

    stays = _detect(track)

    assert len(stays) == 1
    assert (stays[0]["started_at"], stays[0]["finished_at"]) == (0, 59 * 60)
    assert stays[0]["n_points"] == 60
    assert stays[0]["lat"] == pytest.approx(39.9, abs=1e-12)


def test_stay_never_left_is_not_reported():
    track = _track(range(0, 60), [0] * 60)

    assert _detect(track) == []


def test_stay_shorter_than_time_min_is_not_a_stay():
    track = _track([0, 1, 2, 3, 4], [0, 0, 0, 0, 500])

    assert _detect(track) == []


def test_gap_longer_than_gap_min_voids_the_stay_in_progress():
    # 10 minutes at home, 20 silent minutes, then the walk away starts.
    track = _track([0, 5, 10, 30, 31], [0, 0, 0, 0, 500])

    assert _detect(track) == []


def test_stay_resumes_from_the_first_fix_after_a_long_gap():
    track = _track([0, 5, 10, 30, 35, 40, 41], [0, 0, 0, 0, 0, 0, 500])

    stays = _detect(track)

    assert [(s["started_at"], s["finished_at"]) for s in stays] == [(1800, 2400)]
    assert stays[0]["n_points"] == 3


def test_gap_up_to_gap_min_does_not_break_a_stay():
    track = _track([0, 15, 16], [0, 0, 500])

    stays = _detect(track)

    assert [(s["started_at"], s["finished_at"]) for s in stays] == [(0, 900)]


def test_two_users_at_the_same_place_are_not_merged():
    first = _track([0, 2, 4, 6, 8], [0, 0, 0, 0, 500], user="a")
    second = _track([1, 3, 5, 7, 9], [0, 0, 0, 0, 500], user="b")
    interleaved = {
        key: np.stack([first[key], second[key]], axis=1).ravel() for key in first
    }

    stays = _detect(interleaved)

    assert [(s["user_id"], s["started_at"], s["n_points"]) for s in stays] == [
        ("a", 0, 4),
        ("b", 60, 4),
    ]


def test_one_users_last_fixes_do_not_end_another_users_stay():
    first = _track([0, 10], [0, 0], user="a")
    second = _track([12, 20], [500, 500], user="b")
    joined = {key: np.concatenate([first[key], second[key]]) for key in first}

    assert _detect(joined) == []


def test_unsorted_input_gives_the_same_stays_with_input_rows():
    track = _track(range(0, 12), [0] * 6 + [500] * 6)
    shuffled = np.random.default_rng(7).permutation(12)
    mixed = {key: np.asarray(values)[shuffled] for key, values in track.items()}

    stays = _detect(mixed)

    assert [(s["started_at"], s["finished_at"]) for s in stays] == [(0, 300)]
    assert mixed["ts"][stays[0]["first_row"]] == 0
    assert mixed["ts"][stays[0]["last_row"]] == 300


def test_repeated_fix_counts_once():
    track = _track([0, 1, 1, 2, 6], [0, 10, 10, 0, 500])

    stays = _detect(track)

    assert stays[0]["n_points"] == 3


def test_empty_input_gives_an_empty_table_with_the_columns():
    stays = detect_staypoints([], np.array([], dtype=np.int64), [], [])

    assert stays.num_rows == 0
    assert stays.column_names == [
        "user_id",
        "started_at",
        "finished_at",
        "lat",
        "lon",
        "n_points",
        "first_row",
        "last_row",
    ]


def test_timestamps_in_give_timestamps_out():
    track = _track(range(0, 7), [0] * 6 + [500])
    times = pa.array(track["ts"] * 1_000_000).cast(pa.timestamp("us", tz="UTC"))

    stays = detect_staypoints(track["user"], times, track["lat"], track["lon"])

    assert stays.schema.field("started_at").type == pa.timestamp("us", tz="UTC")
    assert stays["finished_at"][0].as_py() == pd.Timestamp("1970-01-01 00:05Z")


def test_negative_threshold_is_rejected():
    track = _track([0, 10], [0, 0])

    with pytest.raises(ConfigError, match="dist_m must be a finite number >= 0"):
        _detect(track, dist_m=-1)


def test_latitude_out_of_range_is_rejected():
    with pytest.raises(SchemaError, match="lat must be a finite WGS-84 angle"):
        detect_staypoints(["a"], [0], [91.0], [116.4])


# A random walk of two users: 0-20 minutes and up to 150 m north and east per
# step, so that many fixes land within a metre of the 100 m threshold.
_walks = st.lists(
    st.tuples(
        st.integers(0, 20),
        st.integers(-150, 150),
        st.integers(-150, 150),
        st.sampled_from("ab"),
    ),
    min_size=2,
    max_size=60,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_walks)
def test_random_walks_match_trackintel(walk):
    minutes, north_m, east_m, users = (
        np.array(column) for column in zip(*walk, strict=True)
    )
    metres_per_degree_lon = METRES_PER_DEGREE_LAT * np.cos(np.radians(39.9))
    positions = pd.DataFrame(
        {
            "user_id": users,
            "tracked_at": pd.to_datetime(np.cumsum(minutes) * 60, unit="s", utc=True),
            "lat": 39.9 + np.cumsum(north_m) / METRES_PER_DEGREE_LAT,
            "lon": 116.4 + np.cumsum(east_m) / metres_per_degree_lon,
        }
    )
    _, reference = _trackintel_staypoints(positions, **PARAMETERS)

    ours = detect_staypoints(
        positions["user_id"],
        positions["tracked_at"],
        positions["lat"],
        positions["lon"],
        **PARAMETERS,
    ).to_pandas()

    assert len(ours) == len(reference)
    assert ours["user_id"].tolist() == reference["user_id"].tolist()
    assert ours["started_at"].tolist() == reference["started_at"].tolist()


def test_distance_rule_equals_trackintel_haversine_near_the_threshold():
    trackintel = pytest.importorskip("trackintel")
    rng = np.random.default_rng(42)
    n = 20_000
    dist_m = rng.choice([10.0, 50.0, 100.0, 500.0], n)
    lat1 = rng.uniform(-85, 85, n)
    lon1 = rng.uniform(-180, 180, n)
    bearing = rng.uniform(0, 2 * np.pi, n)
    # Offsets within 3 % of the threshold, across the 1 % band where the
    # flat-earth shortcut hands over to the exact formula.
    offset_m = dist_m * rng.uniform(0.97, 1.03, n)
    lat2 = lat1 + np.degrees(offset_m * np.cos(bearing) / 6_371_000)
    lon2 = lon1 + np.degrees(
        offset_m * np.sin(bearing) / 6_371_000 / np.cos(np.radians(lat1))
    )

    ours = [
        _reaches(
            math.radians(a),
            math.radians(b),
            math.cos(math.radians(a)),
            math.radians(c),
            math.radians(d),
            (m, math.cos(m / 6_371_000), 4 * math.sin(m / 6_371_000 / 2) ** 2, True),
        )
        for a, b, c, d, m in zip(lat1, lon1, lat2, lon2, dist_m, strict=True)
    ]

    theirs = [
        trackintel.geogr.point_haversine_dist(b, a, d, c, float_flag=True) >= m
        for a, b, c, d, m in zip(lat1, lon1, lat2, lon2, dist_m, strict=True)
    ]
    assert 0.3 < np.mean(theirs) < 0.7
    assert ours == theirs


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_of_iso_times_gives_one_row_per_stay(tmp_path):
    rows = [f"a,2008-10-23 10:{m:02d}:00,39.9,116.4" for m in range(0, 10)]
    rows.append("a,2008-10-23 10:10:00,39.91,116.4")
    positions = _write(tmp_path / "p.csv", "user_id,ts,lat,lon\n" + "\n".join(rows))

    summary = staypoints_csv(positions, tmp_path / "s.csv", 100, 5, 15)

    stays = pacsv.read_csv(tmp_path / "s.csv").to_pylist()
    assert summary["positions_read"] == 11
    assert summary["users"] == 1
    assert summary["staypoints"] == 1
    assert stays[0]["n_points"] == 10
    assert str(stays[0]["finished_at"]) == "2008-10-23 10:09:00"


def test_csv_of_epoch_seconds_in_any_order(tmp_path):
    rows = ["b,900,39.9,116.4", "b,0,39.9,116.4", "b,600,39.9,116.4", "b,1000,40,116"]
    positions = _write(
        tmp_path / "p.csv",
        "lat,ts,user_id,lon\n"
        + "\n".join(
            ",".join([lat, ts, user, lon])
            for user, ts, lat, lon in (row.split(",") for row in rows)
        ),
    )

    summary = staypoints_csv(positions, tmp_path / "s.csv", 100, 5, 15)

    assert summary["staypoints"] == 1
    assert (
        (tmp_path / "s.csv")
        .read_text()
        .splitlines()[1]
        .startswith('"b",1970-01-01 00:00:00Z,1970-01-01 00:15:00Z')
    )


def test_csv_bad_latitude_names_line_column_value_and_format(tmp_path):
    positions = _write(
        tmp_path / "p.csv",
        "user_id,ts,lat,lon\na,0,39.9,116.4\na,60,39.9,116.4\na,120,north,116.4\n",
    )

    with pytest.raises(SchemaError) as error:
        staypoints_csv(positions, tmp_path / "s.csv")

    message = str(error.value)
    assert "line 4" in message
    assert "'lat'" in message
    assert "'north'" in message
    assert "decimal number of degrees" in message


def test_csv_bad_time_names_the_format_of_the_first_row(tmp_path):
    positions = _write(
        tmp_path / "p.csv",
        "user_id,ts,lat,lon\n"
        "a,2008-10-23 10:00:00,39.9,116.4\na,yesterday,39.9,116.4\n",
    )

    with pytest.raises(SchemaError, match=r"line 3: column 'ts' has 'yesterday'"):
        staypoints_csv(positions, tmp_path / "s.csv")


def test_csv_without_a_column_names_it(tmp_path):
    positions = _write(tmp_path / "p.csv", "user_id,time,lat,lon\na,0,39.9,116.4\n")

    with pytest.raises(SchemaError, match=r"no column 'ts'.*found user_id,time"):
        staypoints_csv(positions, tmp_path / "s.csv")


def test_csv_empty_value_names_its_line(tmp_path):
    positions = _write(
        tmp_path / "p.csv", "user_id,ts,lat,lon\na,0,39.9,116.4\na,60,,116.4\n"
    )

    with pytest.raises(SchemaError, match=r"line 3: column 'lat' is empty"):
        staypoints_csv(positions, tmp_path / "s.csv")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-(2**40), 2**40)), max_size=80),
    st.booleans(),
)
def test_fix_order_is_numpys_stable_lexsort(fixes, time_ordered):
    codes = np.array([code for code, _ in fixes], dtype=np.int64)
    ticks = np.array([tick for _, tick in fixes], dtype=np.int64)
    if time_ordered:
        ticks = np.sort(ticks)

    order = _sort_order(codes, ticks)

    expected = np.lexsort((ticks, codes))
    assert (np.arange(len(codes)) if order is None else order).tolist() == (
        expected.tolist()
    )
