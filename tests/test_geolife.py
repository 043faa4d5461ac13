"""GeoLife adapter: PLT files, labels and the signalling events made from them."""

from __future__ import annotations

import warnings
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from telcoreach.errors import DataSourceError, SchemaError
from telcoreach.geo import BEIJING_EXTENT, haversine_m, virtual_cells
from telcoreach.ingest.adapters._geolife import (
    geolife_to_signalling,
    label_transport_modes,
    read_geolife,
    read_geolife_labels,
)
from telcoreach.schemas import schema_for

FEET_PER_METRE = 1 / 0.3048


@pytest.fixture(scope="module")
def geolife_dir(datasets_dir):
    return datasets_dir / "1-geolife"


@pytest.fixture(scope="module")
def long_positions(geolife_dir):
    return read_geolife(geolife_dir / "geolife_long_10_MB")


def _data_lines(files):
    """Count the fix lines of PLT files: every line after the 6 header lines."""
    return sum(len(path.read_bytes().splitlines()) - 6 for path in files)


@pytest.mark.realdata
def test_every_fix_line_of_the_plt_files_becomes_a_row(geolife_dir, long_positions):
    files = sorted((geolife_dir / "geolife_long_10_MB").glob("*/Trajectory/*.plt"))

    assert len(files) == 111
    assert len(long_positions) == _data_lines(files) == 164_531
    assert len(pc.unique(long_positions["user_id"])) == 11


@pytest.mark.realdata
def test_positions_equal_trackintel_reader_eight_hours_later(
    geolife_dir, long_positions
):
    trackintel = pytest.importorskip("trackintel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixes, _ = trackintel.io.read_geolife(str(geolife_dir / "geolife_long_10_MB"))
    theirs = np.rec.fromarrays(
        [
            fixes["user_id"].to_numpy(),
            (fixes["tracked_at"].dt.tz_localize(None) + np.timedelta64(8, "h"))
            .to_numpy()
            .astype("datetime64[s]"),
            fixes.geometry.y.to_numpy(),
            fixes.geometry.x.to_numpy(),
        ]
    )
    ours = np.rec.fromarrays(
        [
            pc.cast(long_positions["user_id"], pa.int64()).to_numpy(),
            long_positions["ts"].to_numpy(),
            long_positions["lat"].to_numpy(),
            long_positions["lon"].to_numpy(),
        ]
    )

    assert (np.sort(ours) == np.sort(theirs)).all()


@pytest.mark.realdata
def test_a_file_named_twice_is_read_once(geolife_dir, long_positions):
    folder = geolife_dir / "geolife_long_10_MB"
    one_file = sorted(folder.glob("000/Trajectory/*.plt"))[0]

    positions = read_geolife([folder, one_file])

    assert len(positions) == len(long_positions)


@pytest.mark.realdata
def test_plt_gmt_times_become_beijing_local_time(long_positions):
    # First fix of 000/Trajectory/20081023025304.plt:
    # 39.984702,116.318417,0,492,39744.1201851852,2008-10-23,02:53:04 (GMT)
    first = long_positions.slice(0, 1).to_pylist()[0]

    assert first["user_id"] == "000"
    assert first["ts"] == datetime(2008, 10, 23, 10, 53, 4)
    assert (first["lat"], first["lon"], first["altitude_ft"]) == (
        39.984702,
        116.318417,
        492.0,
    )


@pytest.mark.realdata
def test_plt_days_since_1899_agree_with_date_and_time(geolife_dir):
    # Field 5 of a PLT line counts days since 1899-12-30 in GMT: an
    # independent copy of the time to check the conversion against.
    path = geolife_dir / "geolife_long_10_MB" / "003" / "Trajectory"
    lines = sorted(path.glob("*.plt"))[0].read_text().splitlines()[6:]
    days = np.array([float(line.split(",")[4]) for line in lines])
    gmt = np.datetime64("1899-12-30T00:00:00") + np.round(days * 86400).astype(
        "timedelta64[s]"
    )

    positions = read_geolife(sorted(path.glob("*.plt"))[0])

    expected = np.sort(gmt + np.timedelta64(8, "h"))
    assert (positions["ts"].to_numpy() == expected).all()


@pytest.mark.realdata
def test_unknown_altitude_is_null(geolife_dir):
    positions = read_geolife(geolife_dir / "geolife_modes" / "010")

    raw = (geolife_dir / "geolife_modes" / "010" / "Trajectory").glob("*.plt")
    unknown = sum(
        line.split(",")[3] == "-777"
        for path in raw
        for line in path.read_text().splitlines()[6:]
    )
    assert unknown > 0
    assert positions["altitude_ft"].null_count == unknown


@pytest.mark.realdata
def test_sample_csv_reads_all_points_of_both_users(geolife_dir):
    positions = read_geolife(geolife_dir / "geolife_sample.txt.gz")

    assert len(positions) == 217_653
    assert pc.unique(positions["user_id"]).to_pylist() == ["001", "005"]
    # First sample row: 39.984094,116.319236,2008-10-23 05:53:05,001 (GMT).
    assert positions["ts"][0].as_py() == datetime(2008, 10, 23, 13, 53, 5)


@pytest.mark.realdata
def test_labels_are_read_in_beijing_local_time(geolife_dir):
    labels = read_geolife_labels(geolife_dir / "geolife_modes")

    # 435 + 224 lines in the two labels.txt files, minus their headers.
    assert len(labels) == 657
    assert pc.unique(labels["user_id"]).to_pylist() == ["010", "020"]
    # First label of 010: 2007/06/26 11:32:29  2007/06/26 11:40:29  bus (GMT).
    assert labels.slice(0, 1).to_pylist()[0] == {
        "user_id": "010",
        "started_at": datetime(2007, 6, 26, 19, 32, 29),
        "finished_at": datetime(2007, 6, 26, 19, 40, 29),
        "mode": "bus",
    }


def _positions(rows):
    """A positions table from (user, 'YYYY-MM-DD HH:MM:SS', lat, lon) rows."""
    users, times, lats, lons = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "ts": pa.array(times).cast(pa.timestamp("s")),
            "lat": pa.array(lats, pa.float64()),
            "lon": pa.array(lons, pa.float64()),
        }
    )


def test_fix_gets_the_mode_of_the_label_holding_its_time():
    labels = pa.table(
        {
            "user_id": ["010", "010", "020"],
            "started_at": pa.array(
                ["2008-01-01 08:00:00", "2008-01-01 09:00:00", "2008-01-01 08:00:00"]
            ).cast(pa.timestamp("s")),
            "finished_at": pa.array(
                ["2008-01-01 08:30:00", "2008-01-01 09:30:00", "2008-01-01 18:00:00"]
            ).cast(pa.timestamp("s")),
            "mode": ["subway", "walk", "bus"],
        }
    )
    fixes = _positions(
        [
            ("010", "2008-01-01 08:10:00", 39.9, 116.4),
            ("010", "2008-01-01 08:45:00", 39.9, 116.4),
            ("010", "2008-01-01 09:30:00", 39.9, 116.4),
            ("030", "2008-01-01 08:10:00", 39.9, 116.4),
        ]
    )

    modes = label_transport_modes(fixes, labels)["mode"].to_pylist()

    assert modes == ["subway", None, "walk", None]


CELLS = pa.table(
    {
        "cell_id": ["west", "east"],
        "lac": pa.array([4101, 4102], pa.int64()),
        "lat": [39.90, 39.90],
        "lon": [116.40, 116.41],
        "radius_m": [600.0, 600.0],
        "cell_type": ["macro", "macro"],
    }
)


def test_cell_change_emits_a_handover_to_the_new_cell():
    fixes = _positions(
        [
            ("001", "2008-10-23 08:00:00", 39.90, 116.400),
            ("001", "2008-10-23 08:01:00", 39.90, 116.401),
            ("001", "2008-10-23 08:02:00", 39.90, 116.409),
            ("001", "2008-10-23 08:03:00", 39.90, 116.410),
        ]
    )

    events, summary = geolife_to_signalling(fixes, cells=CELLS)

    assert events.select(["cell_id", "event_type", "lac"]).to_pylist() == [
        {"cell_id": "west", "event_type": "attach", "lac": 4101},
        {"cell_id": "east", "event_type": "handover", "lac": 4102},
    ]
    assert events["event_time"][1].as_py() == datetime(2008, 10, 23, 8, 2)
    assert summary["virtual_layer"] is False


def test_staying_in_a_cell_updates_at_most_once_per_period():
    fixes = _positions(
        [("001", f"2008-10-23 08:{minute:02d}:00", 39.9, 116.4) for minute in range(13)]
    )

    events, _ = geolife_to_signalling(fixes, cells=CELLS, periodic_min=5)

    assert events["event_type"].to_pylist() == [
        "attach",
        "periodic_update",
        "periodic_update",
    ]
    assert [t.minute for t in events["event_time"].to_pylist()] == [0, 5, 10]


def test_first_fix_of_each_day_attaches_for_each_user():
    fixes = _positions(
        [
            ("001", "2008-10-23 23:58:00", 39.9, 116.4),
            ("001", "2008-10-24 00:01:00", 39.9, 116.4),
            ("002", "2008-10-24 00:02:00", 39.9, 116.4),
        ]
    )

    events, summary = geolife_to_signalling(fixes, cells=CELLS)

    assert events["event_type"].to_pylist() == ["attach"] * 3
    assert events["msisdn"].to_pylist() == ["geolife-001"] * 2 + ["geolife-002"]
    assert summary["users"] == 2


def test_fixes_outside_the_layer_are_dropped_and_counted():
    fixes = _positions(
        [
            ("001", "2008-10-23 08:00:00", 39.90, 116.40),
            ("001", "2008-10-23 09:00:00", 31.23, 121.47),  # Shanghai
            ("001", "2008-10-23 10:00:00", 39.95, 116.40),  # 5.5 km north
        ]
    )

    events, summary = geolife_to_signalling(fixes, cells=CELLS)

    assert summary["fixes_in"] == 3
    assert summary["fixes_outside_layer"] == 2
    assert summary["events_out"] == len(events) == 1


def test_events_have_the_signalling_input_fields():
    fixes = _positions([("001", "2008-10-23 08:00:00", 39.9, 116.4)])

    events, _ = geolife_to_signalling(fixes, cells=CELLS)

    assert tuple(events.column_names) == schema_for("signalling").field_names
    assert events["imsi"].null_count == events["imei"].null_count == 1


@pytest.mark.realdata
def test_geolife_signalling_on_virtual_cells(long_positions):
    events, summary = geolife_to_signalling(long_positions)

    lat = long_positions["lat"].to_numpy()
    lon = long_positions["lon"].to_numpy()
    # Brute-force bounds: 1 km beyond the box is outside every virtual cell
    # (centres inside the box, radius 531 m); 1 km inside the box is inside one.
    far_outside = (lat < 39.59) | (lat > 40.31) | (lon < 115.937) | (lon > 116.863)
    well_inside = (lat > 39.61) & (lat < 40.29) & (lon > 115.963) & (lon < 116.837)
    assert far_outside.sum() <= summary["fixes_outside_layer"]
    assert summary["fixes_outside_layer"] <= len(lat) - well_inside.sum()
    assert summary["virtual_layer"] is True
    assert summary["events_out"] == len(events) < summary["fixes_in"] / 10
    assert set(summary["events_by_type"]) == {"attach", "handover", "periodic_update"}
    assert pc.all(pc.starts_with(events["cell_id"], "v8-")).as_py()
    assert events["lac"].null_count == len(events)


@pytest.mark.realdata
def test_each_event_is_on_the_nearest_cell_by_brute_force(long_positions):
    cells = virtual_cells(BEIJING_EXTENT, 8)
    events, _ = geolife_to_signalling(long_positions, cells=cells)
    event_frame = events.to_pandas().reset_index(names="event")
    event_frame["user_id"] = event_frame["msisdn"].str.removeprefix("geolife-")
    located = event_frame.merge(
        long_positions.to_pandas(),
        left_on=["user_id", "event_time"],
        right_on=["user_id", "ts"],
    ).merge(
        cells.select(["cell_id", "lat", "lon"]).to_pandas(),
        on="cell_id",
        suffixes=("", "_cell"),
    )

    centre_lat = cells["lat"].to_numpy()
    centre_lon = cells["lon"].to_numpy()
    located = located.sort_values("lat", ignore_index=True)
    fix_lat, fix_lon = located.lat.to_numpy(), located.lon.to_numpy()
    nearest_m = []
    for rows in np.array_split(np.arange(len(located)), 50):
        # Only centres within 0.02 degrees (2 km) of this band can be nearest.
        band = np.abs(centre_lat - fix_lat[rows].mean()) < (
            0.02 + np.ptp(fix_lat[rows])
        )
        distance_m = haversine_m(
            fix_lat[rows, None], fix_lon[rows, None], centre_lat[band], centre_lon[band]
        )
        nearest_m.append(distance_m.min(axis=1))
    nearest_m = np.concatenate(nearest_m)
    to_cell_m = haversine_m(
        fix_lat,
        fix_lon,
        located.lat_cell.to_numpy(),
        located.lon_cell.to_numpy(),
    )
    # Fixes sharing a second with the event: at least one is the one located.
    on_nearest = pd.Series(to_cell_m - nearest_m < 1.0).groupby(located.event).any()
    assert len(on_nearest) == len(events)
    assert on_nearest.all()


def test_missing_folder_is_a_data_source_error(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        read_geolife(tmp_path / "nowhere")


def test_folder_without_trajectories_is_a_data_source_error(tmp_path):
    with pytest.raises(DataSourceError, match="no GeoLife trajectories"):
        read_geolife(tmp_path)


def test_malformed_plt_is_a_schema_error_naming_the_file(tmp_path):
    folder = tmp_path / "042" / "Trajectory"
    folder.mkdir(parents=True)
    bad = folder / "20080101000000.plt"
    bad.write_text("h\n" * 6 + "39.9,116.4,0,100\n")

    with pytest.raises(SchemaError, match=r"20080101000000\.plt"):
        read_geolife(tmp_path)


def test_positions_without_coordinates_are_a_schema_error():
    with pytest.raises(SchemaError, match="positions lack lat, lon"):
        geolife_to_signalling(pa.table({"user_id": ["a"], "ts": [1]}), cells=CELLS)
