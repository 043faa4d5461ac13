"""Measurement reports: simulated, ingested, and refining positions between cells."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from telcoreach.engine import Engine
from telcoreach.errors import ConfigError
from telcoreach.features import mr_positions
from telcoreach.pipeline import init_workspace, run_ingest
from telcoreach.schemas import MR_NEIGHBOURS
from telcoreach.simulate import simulate_city

_METRES_PER_DEGREE = 6_371_000 * math.pi / 180
_AT = dt.datetime(2026, 11, 2, 8, 0, 0)


def _reports(rows: list[dict]) -> ibis.Table:
    columns = {
        "subscriber": pa.string(),
        "report_time": pa.timestamp("us"),
        "serving_cell_id": pa.string(),
        "serving_rsrp_dbm": pa.float64(),
    }
    for number in range(1, MR_NEIGHBOURS + 1):
        columns[f"nc{number}_cell_id"] = pa.string()
        columns[f"nc{number}_rsrp_dbm"] = pa.float64()
    schema = pa.schema(list(columns.items()))
    full = [{name: row.get(name) for name in columns} for row in rows]
    return ibis.memtable(pa.Table.from_pylist(full, schema=schema))


def _cells(positions: dict[str, tuple[float, float]]) -> ibis.Table:
    return ibis.memtable(
        pa.table(
            {
                "cell_id": list(positions),
                "lat": [lat for lat, _ in positions.values()],
                "lon": [lon for _, lon in positions.values()],
            }
        )
    )


def _rsrp_at(distance_m: float) -> float:
    """RSRP of the 3GPP urban-macro model (TR 36.814), written out by hand."""
    return 15.2 - (128.1 + 37.6 * math.log10(distance_m / 1_000))


def test_equal_rsrp_places_the_handset_at_the_centroid_of_the_cells():
    cells = _cells({"A": (39.90, 116.40), "B": (39.90, 116.42), "C": (39.92, 116.41)})
    reports = _reports(
        [
            {
                "subscriber": "s1",
                "report_time": _AT,
                "serving_cell_id": "A",
                "serving_rsrp_dbm": -95.0,
                "nc1_cell_id": "B",
                "nc1_rsrp_dbm": -95.0,
                "nc2_cell_id": "C",
                "nc2_rsrp_dbm": -95.0,
            }
        ]
    )

    for method in ("power", "path_loss"):
        row = mr_positions(reports, cells, method=method).to_pyarrow().to_pylist()[0]
        assert row["lat"] == pytest.approx((39.90 + 39.90 + 39.92) / 3)
        assert row["lon"] == pytest.approx((116.40 + 116.42 + 116.41) / 3)
        assert (row["serving_lat"], row["serving_lon"], row["cells_used"]) == (
            39.90,
            116.40,
            3,
        )


def test_path_loss_weights_cells_by_inverse_square_of_implied_distance():
    # RSRPs for 100 m and 300 m: weights 1/100^2 and 1/300^2, i.e. 9 to 1.
    cells = _cells({"A": (39.90, 116.40), "B": (39.91, 116.40)})
    reports = _reports(
        [
            {
                "subscriber": "s1",
                "report_time": _AT,
                "serving_cell_id": "A",
                "serving_rsrp_dbm": _rsrp_at(100),
                "nc1_cell_id": "B",
                "nc1_rsrp_dbm": _rsrp_at(300),
            }
        ]
    )

    row = mr_positions(reports, cells).to_pyarrow().to_pylist()[0]

    assert row["lat"] == pytest.approx((9 * 39.90 + 39.91) / 10)


def test_power_weights_cells_by_milliwatts():
    # 10 dB weaker is a tenth of the power: weights 10 to 1.
    cells = _cells({"A": (39.90, 116.40), "B": (39.90, 116.41)})
    reports = _reports(
        [
            {
                "subscriber": "s1",
                "report_time": _AT,
                "serving_cell_id": "A",
                "serving_rsrp_dbm": -80.0,
                "nc1_cell_id": "B",
                "nc1_rsrp_dbm": -90.0,
            }
        ]
    )

    row = mr_positions(reports, cells, method="power").to_pyarrow().to_pylist()[0]

    assert row["lon"] == pytest.approx((10 * 116.40 + 116.41) / 11)


def test_report_without_neighbours_stays_at_the_serving_cell():
    cells = _cells({"A": (39.90, 116.40), "B": (39.91, 116.40)})
    reports = _reports(
        [
            {
                "subscriber": "s1",
                "report_time": _AT,
                "serving_cell_id": "B",
                "serving_rsrp_dbm": -101.0,
                "nc1_cell_id": "unknown-cell",
                "nc1_rsrp_dbm": -99.0,
            }
        ]
    )

    row = mr_positions(reports, cells).to_pyarrow().to_pylist()[0]

    assert (row["lat"], row["lon"], row["cells_used"]) == (39.91, 116.40, 1)


def test_unknown_weighting_is_a_config_error():
    with pytest.raises(ConfigError, match="'power' or 'path_loss', found 'rssi'"):
        mr_positions(_reports([]), _cells({}), method="rssi")


@pytest.fixture(scope="module")
def simulated(datasets_dir: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mr")
    summary = simulate_city(
        root / "city",
        subscribers=300,
        days=1,
        seed=11,
        data_dir=datasets_dir,
        measurement_reports_per_day=24,
    )
    workspace = init_workspace(root / "ws")
    run_ingest(workspace, "cells", [root / "city" / "cells.csv"])
    ingested = run_ingest(
        workspace, "measurement_reports", [root / "city" / "measurement_reports"]
    )
    return {
        "root": root,
        "summary": summary,
        "workspace": workspace,
        "ingested": ingested,
    }


def test_simulated_reports_ingest_without_quarantine(simulated):
    assert (
        simulated["ingested"]["rows_stored"]
        == (simulated["summary"].rows["measurement_reports"])
    )
    assert simulated["ingested"]["rows_quarantined"] == 0


def test_simulated_serving_cell_is_the_strongest_and_neighbours_fall(simulated):
    files = simulated["summary"].files["measurement_reports"]
    reports = pacsv.read_csv(files[0])
    rsrp = np.column_stack(
        [reports["serving_rsrp_dbm"].to_numpy()]
        + [
            reports[f"nc{n}_rsrp_dbm"].to_numpy(zero_copy_only=False)
            for n in range(1, MR_NEIGHBOURS + 1)
        ]
    )
    heard = ~np.isnan(rsrp)
    assert heard[:, 0].all()
    steps = np.diff(np.where(heard, rsrp, -np.inf), axis=1)
    assert (steps[heard[:, 1:]] <= 0).all()


def _errors_m(table: pa.Table, lat: str, lon: str) -> np.ndarray:
    true_lat = table["true_lat"].to_numpy()
    dy = (table[lat].to_numpy() - true_lat) * _METRES_PER_DEGREE
    dx = (
        (table[lon].to_numpy() - table["true_lon"].to_numpy())
        * _METRES_PER_DEGREE
        * np.cos(np.radians(true_lat))
    )
    return np.hypot(dx, dy)


@pytest.mark.parametrize("method", ["path_loss", "power"])
def test_refined_position_is_closer_to_the_truth_than_the_serving_cell(
    simulated, method
):
    workspace = simulated["workspace"]
    truth = pacsv.read_csv(
        simulated["root"] / "city" / "truth" / "measurement_positions.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={
                "msisdn": pa.string(),
                "serving_cell_id": pa.string(),
                "report_time": pa.timestamp("us"),
            }
        ),
    )
    subscriber = workspace.pseudonymiser.tokenise("msisdn", truth["msisdn"])
    truth = truth.drop(["msisdn"]).append_column("subscriber", subscriber)
    engine = Engine(workspace)
    try:
        positions = mr_positions(
            engine.lake("measurement_reports"), engine.lake("cells"), method=method
        ).to_pyarrow()
    finally:
        engine.close()

    joined = positions.join(truth, ["subscriber", "report_time", "serving_cell_id"])

    assert joined.num_rows == truth.num_rows
    serving_m = np.median(_errors_m(joined, "serving_lat", "serving_lon"))
    refined_m = np.median(_errors_m(joined, "lat", "lon"))
    assert refined_m < 0.8 * serving_m


def test_simulation_writes_no_reports_unless_asked(datasets_dir, tmp_path):
    summary = simulate_city(tmp_path, subscribers=50, days=1, data_dir=datasets_dir)

    assert "measurement_reports" not in summary.rows
    assert not (tmp_path / "measurement_reports").exists()
