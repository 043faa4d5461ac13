"""Readers of the real Beijing cell, subway and TalkingData files.

Reference counts come from the SOURCES.md files of the public data sets and
from reading the raw CSV files with pandas.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from telcoreach.errors import DataSourceError
from telcoreach.geo import BEIJING_EXTENT, haversine_m, virtual_cells
from telcoreach.ingest.adapters._beijing import (
    build_city_cells,
    read_base_stations,
    read_subway_stations,
)
from telcoreach.ingest.adapters._talkingdata import (
    read_talkingdata,
    talkingdata_distributions,
)
from telcoreach.schemas import schema_for

pytestmark = pytest.mark.realdata

CELLS = "2-cells-subway-poi"
TALKINGDATA = "3-talkingdata-demographics"


@pytest.fixture(scope="module")
def talkingdata(datasets_dir):
    """The TalkingData subscribers table, read once."""
    return read_talkingdata(datasets_dir)


def test_base_stations_are_the_1063_cells_of_sources_md(datasets_dir):
    cells = read_base_stations(datasets_dir)

    assert cells.column_names == list(schema_for("cells").field_names)
    assert cells.num_rows == 1_063
    assert cells["cell_id"][0].as_py() == "bs-0001"
    assert cells["cell_id"][-1].as_py() == "bs-1063"
    assert set(cells["cell_type"].to_pylist()) == {"macro"}
    assert cells["lac"].null_count == 1_063


def test_base_stations_keep_file_positions_and_radius(datasets_dir):
    raw = pd.read_csv(datasets_dir / CELLS / "beijing_base_stations_cellocation.csv")

    cells = read_base_stations(datasets_dir).to_pandas()

    np.testing.assert_allclose(cells["lat"], raw["lat"])
    np.testing.assert_allclose(cells["lon"], raw["lon"])
    np.testing.assert_allclose(cells["radius_m"], raw["radius_m"])
    # SOURCES.md: lat 39.59-40.46, lon 115.99-116.65.
    assert cells["lat"].min() >= 39.59 and cells["lat"].max() <= 40.46
    assert cells["lon"].min() >= 115.98 and cells["lon"].max() <= 116.66


def test_subway_stations_without_coordinates_are_dropped_and_logged(
    datasets_dir, caplog
):
    with caplog.at_level(logging.INFO):
        cells, pois = read_subway_stations(datasets_dir)

    # SOURCES.md: 426 stations, 364 with WGS-84 coordinates.
    assert cells.num_rows == pois.num_rows == 364
    assert "dropped 62 of 426 subway stations" in caplog.text


def test_each_subway_station_gets_one_cell_and_one_poi(datasets_dir):
    raw = pd.read_csv(datasets_dir / CELLS / "beijing_subway_stations.csv")
    located = raw.dropna(subset=["lat", "lng"]).reset_index(drop=True)

    cells, pois = read_subway_stations(datasets_dir)

    assert cells.column_names == list(schema_for("cells").field_names)
    assert pois.column_names == list(schema_for("pois").field_names)
    assert cells["cell_id"].to_pylist()[:2] == ["sub-0001", "sub-0002"]
    assert pois["poi_id"].to_pylist()[:2] == ["st-0001", "st-0002"]
    assert set(cells["cell_type"].to_pylist()) == {"subway"}
    assert set(cells["radius_m"].to_pylist()) == {150.0}
    assert set(pois["poi_type"].to_pylist()) == {"subway_station"}
    assert pois["name"].to_pylist() == located["name"].tolist()
    np.testing.assert_allclose(cells["lat"].to_numpy(), located["lat"])
    np.testing.assert_allclose(pois["lon"].to_numpy(), located["lng"])


def test_city_cells_add_virtual_cells_only_far_from_base_stations(datasets_dir):
    stations = read_base_stations(datasets_dir).to_pandas()
    grid = virtual_cells(BEIJING_EXTENT, 8).to_pandas()
    # Brute force: distance from every hexagon centre to every base station.
    nearest_m = haversine_m(
        grid["lat"].to_numpy()[:, None],
        grid["lon"].to_numpy()[:, None],
        stations["lat"].to_numpy()[None, :],
        stations["lon"].to_numpy()[None, :],
    ).min(axis=1)
    # The layer measures on a local plane: allow 1 % at the 1 km boundary.
    surely_far = set(grid["cell_id"][nearest_m > 1_010])
    maybe_far = set(grid["cell_id"][nearest_m > 990])

    cells = build_city_cells(datasets_dir).to_pandas()

    virtual = set(cells.loc[cells["cell_type"] == "virtual", "cell_id"])
    assert surely_far <= virtual <= maybe_far
    assert len(surely_far) > 5_000
    assert (cells["cell_type"] == "macro").sum() == 1_063
    assert (cells["cell_type"] == "subway").sum() == 364
    assert cells["cell_id"].is_unique


def test_sparser_threshold_adds_fewer_virtual_cells(datasets_dir):
    dense = build_city_cells(datasets_dir, sparse_km=1.0)
    sparse = build_city_cells(datasets_dir, sparse_km=3.0)

    assert sparse.num_rows < dense.num_rows


def test_talkingdata_subscribers_match_sources_md(talkingdata):
    subscribers = talkingdata

    assert subscribers.column_names == list(schema_for("subscribers").field_names)
    # SOURCES.md: 74,645 devices; the handset file covers 99.96 % of them.
    assert subscribers.num_rows == 74_645
    assert subscribers["device_brand"].null_count == 28
    assert subscribers["msisdn"][0].as_py().startswith("td-")
    assert subscribers["imsi"].null_count == subscribers.num_rows
    assert subscribers["imei"].null_count == subscribers.num_rows


def test_talkingdata_subscribers_have_no_consent(talkingdata):
    subscribers = talkingdata

    assert not any(subscribers["consent_marketing"].to_pylist())
    assert not any(subscribers["consent_profiling"].to_pylist())
    assert subscribers["opted_out"].null_count == subscribers.num_rows


def test_talkingdata_age_bands_follow_the_raw_ages(datasets_dir, talkingdata):
    raw = pd.read_csv(datasets_dir / TALKINGDATA / "gender_age_train.csv")
    expected = pd.cut(
        raw["age"],
        bins=[-1, 17, 24, 34, 44, 54, 200],
        labels=["<18", "18-24", "25-34", "35-44", "45-54", "55+"],
    ).astype(str)

    subscribers = talkingdata.to_pandas()

    assert subscribers["age_band"].tolist() == expected.tolist()
    assert subscribers["gender"].tolist() == raw["gender"].tolist()
    assert (
        subscribers["msisdn"].tolist()
        == ("td-" + raw["device_id"].astype(str)).tolist()
    )


def test_talkingdata_distributions_count_every_device_once(datasets_dir):
    distributions = talkingdata_distributions(datasets_dir)

    age_gender = distributions.age_gender.to_pandas()
    devices = distributions.devices.to_pandas()
    assert age_gender["devices"].sum() == 74_645
    assert devices["devices"].sum() == 74_645 - 28
    assert age_gender["share"].sum() == pytest.approx(1.0)
    assert devices["share"].sum() == pytest.approx(1.0)
    assert devices["devices"].is_monotonic_decreasing
    # The most common handset of the file is Xiaomi's 红米note.
    assert devices.iloc[0][["device_brand", "device_model"]].tolist() == [
        "小米",
        "红米note",
    ]


def test_missing_data_folder_says_where_it_looked(tmp_path):
    with pytest.raises(
        DataSourceError, match=r"beijing_base_stations_cellocation\.csv"
    ):
        read_base_stations(tmp_path)
