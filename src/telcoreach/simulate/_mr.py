"""Radio measurement reports (MR) of the simulated subscribers, with true positions.

A handset reports the RSRP (reference signal received power) of its serving
cell and of the strongest neighbours. The simulator knows where each person
is, so it draws a true position near the person's current cell and computes
the RSRP of the surrounding cells with the 3GPP urban-macro path-loss model
(TR 36.814: ``128.1 + 37.6 log10(d / 1 km)`` dB) plus log-normal shadow
fading. The serving cell is the strongest one, as a handset selects it.

Notes
-----
Shadow fading is drawn independently per report and cell; real fading is
correlated over tens of metres and per site, so positions refined from
simulated reports are somewhat better than from real ones. Underground
(subway) cells send no reports here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from telcoreach.geo import EARTH_RADIUS_M
from telcoreach.schemas import MR_NEIGHBOURS
from telcoreach.simulate._city import City
from telcoreach.simulate._mobility import (
    DAY_S,
    DayPlan,
    EventArrays,
    locate,
    sort_unique,
    times_by_hour,
)
from telcoreach.simulate._population import Population

__all__ = [
    "PATH_LOSS_1KM_DB",
    "PATH_LOSS_SLOPE_DB",
    "REFERENCE_POWER_DBM",
    "RSRP_RANGE_DBM",
    "SENSITIVITY_DBM",
    "SHADOWING_DB",
    "MeasurementDay",
    "measurement_reports",
    "rsrp_dbm",
]

#: Power per resource element of a 46 dBm cell over 1200 subcarriers, dBm.
REFERENCE_POWER_DBM = 15.2
#: 3GPP TR 36.814 urban macro: loss at 1 km and per decade of distance, dB.
PATH_LOSS_1KM_DB = 128.1
PATH_LOSS_SLOPE_DB = 37.6
SHADOWING_DB = 6.0
#: Weakest RSRP a handset still measures and reports, dBm.
SENSITIVITY_DBM = -124.0
#: Cells whose RSRP is computed for each report (the nearest ones).
_CANDIDATES = 16
#: Reporting range of RSRP (3GPP TS 36.133, extended), dBm.
RSRP_RANGE_DBM = (-156.0, -31.0)
_MIN_DISTANCE_M = 10.0
_HOURLY = np.array([0.3] * 6 + [0.8, 1.0, 1.1] + [1.0] * 9 + [1.2] * 5 + [0.6])


def rsrp_dbm(distance_m: np.ndarray) -> np.ndarray:
    """Return the mean RSRP in dBm at ``distance_m`` from a cell (no fading)."""
    distance_km = np.maximum(distance_m, _MIN_DISTANCE_M) / 1_000
    return REFERENCE_POWER_DBM - (
        PATH_LOSS_1KM_DB + PATH_LOSS_SLOPE_DB * np.log10(distance_km)
    )


@dataclass
class MeasurementDay:
    """One day of reports in the carrier layout and their true positions."""

    reports: pa.Table
    truth: pa.Table


def _true_positions(
    rng: np.random.Generator, city: City, cell: np.ndarray
) -> np.ndarray:
    """Return points drawn uniformly in a disc around each cell's centre.

    The disc's radius is the distance to the cell's nearest neighbour, so a
    point may lie nearer another cell, as a handset at a cell's edge does.
    """
    nearest = city.neighbours[cell, 0]
    spacing = np.where(
        city.neighbour_count[cell] > 0, city.distance_m(cell, nearest), 1_000.0
    )
    radius = spacing * np.sqrt(rng.random(len(cell)))
    angle = rng.random(len(cell)) * 2 * np.pi
    offset = np.column_stack([np.cos(angle), np.sin(angle)]) * radius[:, None]
    return city.cell_xy[cell] + offset


def _unproject(city: City, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.degrees(xy[:, 1] / EARTH_RADIUS_M)
    lon = np.degrees(xy[:, 0] / (EARTH_RADIUS_M * np.cos(np.radians(city.lat0))))
    return lat, lon


def measurement_reports(
    rng: np.random.Generator,
    city: City,
    population: Population,
    plan: DayPlan,
    day_epoch_s: int,
    reports_per_day: float,
    shadowing_db: float | None = None,
) -> MeasurementDay:
    """Return a day's measurement reports and the true position of each.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every draw.
    city, population, plan
        The simulated city, its people and their trips of the day.
    day_epoch_s : int
        Midnight of the day, seconds since the epoch (local time).
    reports_per_day : float
        Mean reports per person and day (Poisson).
    shadowing_db : float, optional
        Standard deviation of the log-normal shadow fading, dB (default
        :data:`SHADOWING_DB`, 6 dB).

    Returns
    -------
    MeasurementDay
        ``reports`` in the ``measurement_reports`` layout (raw MSISDN, as a
        carrier delivers it) and ``truth`` with ``true_lat``/``true_lon``.
    """
    per_person = rng.poisson(reports_per_day, population.count)
    person = np.repeat(np.arange(population.count, dtype=np.int32), per_person)
    time_s = times_by_hour(rng, len(person), _HOURLY)
    cell, _ = locate(city, population, plan, person, time_s)
    above_ground = ~np.isin(cell, city.station_cells)
    person, time_s, cell = (
        person[above_ground],
        time_s[above_ground],
        cell[above_ground],
    )

    true_xy = _true_positions(rng, city, cell)
    distance_m, index = city.surface_tree.query(true_xy, k=_CANDIDATES, workers=-1)
    candidates = city.surface_cells[index]
    fading_db = SHADOWING_DB if shadowing_db is None else shadowing_db
    rsrp = rsrp_dbm(distance_m) + rng.normal(0, fading_db, distance_m.shape)
    order = np.argsort(-rsrp, axis=1)
    rsrp = np.take_along_axis(rsrp, order, axis=1)
    rsrp = np.clip(np.round(rsrp), RSRP_RANGE_DBM[0], RSRP_RANGE_DBM[1])
    candidates = np.take_along_axis(candidates, order, axis=1)

    # One report per person, second and serving cell: the record's key.
    kept = sort_unique(
        EventArrays(
            {
                "time_s": time_s,
                "person": person,
                "cell": candidates[:, 0],
                "row": np.arange(len(person)),
            }
        ),
        [("time_s", DAY_S), ("person", population.count), ("cell", city.cell_count)],
    ).columns["row"]
    epoch_s = day_epoch_s + time_s[kept]
    return MeasurementDay(
        reports=_report_table(
            city, population, person[kept], epoch_s, candidates[kept], rsrp[kept]
        ),
        truth=_truth_table(
            city, population, person[kept], epoch_s, candidates[kept, 0], true_xy[kept]
        ),
    )


def _report_table(
    city: City,
    population: Population,
    person: np.ndarray,
    epoch_s: np.ndarray,
    cells: np.ndarray,
    rsrp: np.ndarray,
) -> pa.Table:
    """Return reports in the carrier layout: serving cell, then neighbours."""
    cell_ids = city.cells["cell_id"].combine_chunks()
    table = {
        "msisdn": pa.DictionaryArray.from_arrays(
            pa.array(person.astype(np.int32)), population.msisdn
        ),
        "report_time": pa.array(epoch_s.astype("datetime64[s]")),
        "serving_cell_id": pa.DictionaryArray.from_arrays(
            pa.array(cells[:, 0].astype(np.int32)), cell_ids
        ),
        "serving_rsrp_dbm": pa.array(rsrp[:, 0]),
    }
    for number in range(1, MR_NEIGHBOURS + 1):
        heard = rsrp[:, number] >= SENSITIVITY_DBM
        table[f"nc{number}_cell_id"] = pa.DictionaryArray.from_arrays(
            pa.array(cells[:, number].astype(np.int32), mask=~heard), cell_ids
        )
        table[f"nc{number}_rsrp_dbm"] = pa.array(rsrp[:, number], mask=~heard)
    return pa.table(table)


def _truth_table(
    city: City,
    population: Population,
    person: np.ndarray,
    epoch_s: np.ndarray,
    serving: np.ndarray,
    true_xy: np.ndarray,
) -> pa.Table:
    """Return the true position of each report, keyed like the report."""
    lat, lon = _unproject(city, true_xy)
    return pa.table(
        {
            "msisdn": population.msisdn.take(pa.array(person)),
            "report_time": pa.array(epoch_s.astype("datetime64[s]")),
            "serving_cell_id": city.cells["cell_id"]
            .combine_chunks()
            .take(pa.array(serving)),
            "true_lat": pa.array(np.round(lat, 7)),
            "true_lon": pa.array(np.round(lon, 7)),
        }
    )
