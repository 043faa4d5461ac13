"""The simulated city: its cell layer, places of interest and where people live.

The cell layer is the real one of Beijing (base stations and subway stations,
filled in with virtual cells where it is sparse). People, schools and malls
are placed by drawing points from a mixture of Gaussian districts and taking
the nearest surface cell, so a cell's share of homes follows both the
district density and the area it serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.spatial import cKDTree

from telcoreach.geo import BEIJING_EXTENT, EARTH_RADIUS_M
from telcoreach.ingest.adapters._beijing import (
    build_city_cells,
    read_subway_stations,
)

__all__ = ["City", "District", "build_city"]

logger = logging.getLogger(__name__)

#: Ping-pong and neighbour handovers land on a cell at most this far away.
NEIGHBOUR_RADIUS_M = 1_500.0
#: Cells this close to a school form its school zone.
SCHOOL_ZONE_M = 500.0
#: Subscribers per synthetic school and per synthetic mall, and minimum counts.
SUBSCRIBERS_PER_SCHOOL = 60
SUBSCRIBERS_PER_MALL = 300
MIN_SCHOOLS = 50
MIN_MALLS = 20
#: At most this share of residential cells hosts a school (or a mall).
MAX_POI_CELL_SHARE = 0.3
#: Location areas are squares of this side; subway cells share one area.
LAC_GRID_DEG = 0.1
LAC_BASE = 4_100
SUBWAY_LAC = 4_000
_MAX_NEIGHBOURS = 8


@dataclass(frozen=True)
class District:
    """A Gaussian blob of homes or workplaces: centre, spread and weight."""

    lat: float
    lon: float
    sd_km: float
    weight: float


#: Where people live: the old city, the big residential districts, new towns.
HOME_DISTRICTS = (
    District(39.910, 116.400, 8.0, 0.40),
    District(39.990, 116.470, 4.0, 0.09),
    District(39.960, 116.300, 4.0, 0.09),
    District(39.850, 116.290, 4.0, 0.08),
    District(39.900, 116.660, 4.0, 0.07),
    District(40.070, 116.330, 4.0, 0.08),
    District(39.730, 116.140, 5.0, 0.11),
    District(39.760, 116.450, 4.0, 0.08),
)
#: Where people work: CBD, Financial Street, Zhongguancun, Wangjing, Yizhuang,
#: Shangdi, and offices spread over the central city.
WORK_DISTRICTS = (
    District(39.910, 116.460, 2.5, 0.20),
    District(39.915, 116.360, 2.0, 0.12),
    District(39.980, 116.310, 2.5, 0.17),
    District(40.000, 116.480, 2.0, 0.08),
    District(39.790, 116.500, 3.0, 0.08),
    District(40.035, 116.300, 2.0, 0.07),
    District(39.730, 116.150, 3.0, 0.05),
    District(39.910, 116.400, 7.0, 0.23),
)


def project_m(lat: np.ndarray, lon: np.ndarray, lat0: float) -> np.ndarray:
    """Return (x, y) metres of positions on a plane tangent at latitude ``lat0``."""
    x = np.radians(lon) * EARTH_RADIUS_M * np.cos(np.radians(lat0))
    y = np.radians(lat) * EARTH_RADIUS_M
    return np.column_stack([x, y])


@dataclass
class City:
    """The cell layer and places of the simulated city, as arrays.

    Cell indices are rows of ``cells``. Surface cells are every cell but the
    subway ones; residential cells are surface cells inside the city extent.
    ``cell_xy`` holds cell centres in metres on the city's plane,
    ``neighbours`` up to eight surface cells within 1.5 km of each cell
    (``neighbour_count`` of them valid), ``school_distance_m`` the distance
    from each cell to the nearest school.
    """

    cells: pa.Table
    cell_lat: np.ndarray
    cell_lon: np.ndarray
    cell_xy: np.ndarray
    cell_lac: np.ndarray
    surface_cells: np.ndarray
    residential_cells: np.ndarray
    neighbours: np.ndarray
    neighbour_count: np.ndarray
    station_cells: np.ndarray
    station_xy: np.ndarray
    school_cells: np.ndarray
    mall_cells: np.ndarray
    school_distance_m: np.ndarray
    pois: pa.Table
    lat0: float
    surface_tree: cKDTree

    @property
    def cell_count(self) -> int:
        """Number of cells."""
        return len(self.cell_lat)

    def locate_xy(self, xy: np.ndarray) -> np.ndarray:
        """Return the index of the nearest surface cell of projected positions."""
        _, index = self.surface_tree.query(xy, workers=-1)
        return self.surface_cells[index]

    def locate_surface(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Return the index of the nearest surface cell of each position."""
        return self.locate_xy(project_m(lat, lon, self.lat0))

    def project(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Return (x, y) metres of positions in the city's plane."""
        return project_m(lat, lon, self.lat0)

    def sample_points(
        self,
        rng: np.random.Generator,
        count: int,
        districts: tuple[District, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``count`` positions drawn from a mixture of districts."""
        weights = np.array([d.weight for d in districts])
        which = rng.choice(len(districts), size=count, p=weights / weights.sum())
        centre_lat = np.array([d.lat for d in districts])[which]
        centre_lon = np.array([d.lon for d in districts])[which]
        sd_m = np.array([d.sd_km for d in districts])[which] * 1_000
        offset = rng.standard_normal((count, 2)) * sd_m[:, None]
        lat = centre_lat + np.degrees(offset[:, 1] / EARTH_RADIUS_M)
        lon = centre_lon + np.degrees(
            offset[:, 0] / (EARTH_RADIUS_M * np.cos(np.radians(self.lat0)))
        )
        extent = BEIJING_EXTENT
        return (
            np.clip(lat, extent.lat_min, extent.lat_max),
            np.clip(lon, extent.lon_min, extent.lon_max),
        )

    def distance_m(self, cell_a: np.ndarray, cell_b: np.ndarray) -> np.ndarray:
        """Return the distance in metres between paired cell centres."""
        return np.hypot(*(self.cell_xy[cell_a] - self.cell_xy[cell_b]).T)


def _location_areas(lat: np.ndarray, lon: np.ndarray, subway: np.ndarray) -> np.ndarray:
    """Return a location area code per cell from a square grid."""
    extent = BEIJING_EXTENT
    row = np.clip(np.floor((lat - extent.lat_min) / LAC_GRID_DEG), -1, 9)
    col = np.clip(np.floor((lon - extent.lon_min) / LAC_GRID_DEG), -1, 9)
    lac = LAC_BASE + (row + 1) * 11 + (col + 1)
    return np.where(subway, SUBWAY_LAC, lac).astype(np.int64)


def _neighbour_table(
    xy: np.ndarray, surface_cells: np.ndarray, cell_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return up to 8 nearest surface neighbours within 1.5 km of each cell."""
    tree = cKDTree(xy[surface_cells])
    distance_m, index = tree.query(xy, k=_MAX_NEIGHBOURS + 1)
    neighbours = surface_cells[np.minimum(index, len(surface_cells) - 1)]
    own = neighbours == np.arange(cell_count)[:, None]
    valid = (distance_m <= NEIGHBOUR_RADIUS_M) & ~own & np.isfinite(distance_m)
    # Move valid neighbours to the front of each row, keeping nearest first.
    order = np.argsort(~valid, axis=1, kind="stable")
    neighbours = np.take_along_axis(neighbours, order, axis=1)[:, :_MAX_NEIGHBOURS]
    count = valid.sum(axis=1)
    return neighbours.astype(np.int32), np.minimum(count, _MAX_NEIGHBOURS)


def _distinct_cells(
    city: City,
    rng: np.random.Generator,
    count: int,
    exclude: np.ndarray,
) -> np.ndarray:
    """Return up to ``count`` distinct surface cells drawn by home density."""
    chosen = np.empty(0, dtype=np.int64)
    for _ in range(20):
        lat, lon = city.sample_points(rng, 4 * count + 100, HOME_DISTRICTS)
        drawn = city.locate_surface(lat, lon)
        drawn = drawn[~np.isin(drawn, exclude)]
        merged = np.concatenate([chosen, drawn])
        _, first = np.unique(merged, return_index=True)
        chosen = merged[np.sort(first)]
        if len(chosen) >= count:
            return chosen[:count]
    return chosen


def _poi_table(prefix: str, label: str, poi_type: str, cells, lat, lon) -> pa.Table:
    count = len(cells)
    numbers = pc.utf8_lpad(pa.array(np.arange(1, count + 1)).cast(pa.string()), 4, "0")
    return pa.table(
        {
            "poi_id": pc.binary_join_element_wise(prefix + "-", numbers, ""),
            "name": pc.binary_join_element_wise(label + " ", numbers, ""),
            "poi_type": pa.array([poi_type] * count, pa.string()),
            "lat": pa.array(lat[cells], pa.float64()),
            "lon": pa.array(lon[cells], pa.float64()),
        }
    )


def build_city(
    data_dir: str | Path, rng: np.random.Generator, subscribers: int
) -> City:
    """Return the simulated city for ``subscribers`` people.

    Schools (one per 60 subscribers, at least 50) and malls (one per 300, at
    least 20) are synthetic: no licensed list of Beijing school or mall
    positions is public, so they are placed on distinct residential cells
    drawn by home density and named ``synthetic school 0001``...
    """
    layer = build_city_cells(data_dir)
    _, station_pois = read_subway_stations(data_dir)
    lat = layer["lat"].to_numpy()
    lon = layer["lon"].to_numpy()
    cell_type = layer["cell_type"].to_numpy(zero_copy_only=False)
    subway = cell_type == "subway"
    lac = _location_areas(lat, lon, subway)
    cells = layer.set_column(1, "lac", pa.array(lac, pa.int64()))

    lat0 = float(np.mean(lat))
    xy = project_m(lat, lon, lat0)
    surface_cells = np.flatnonzero(~subway)
    inside = BEIJING_EXTENT.contains(lat, lon)
    residential_cells = np.flatnonzero(~subway & inside)
    neighbours, neighbour_count = _neighbour_table(xy, surface_cells, len(lat))
    station_cells = np.flatnonzero(subway)

    city = City(
        cells=cells,
        cell_lat=lat,
        cell_lon=lon,
        cell_xy=xy,
        cell_lac=lac,
        surface_cells=surface_cells,
        residential_cells=residential_cells,
        neighbours=neighbours,
        neighbour_count=neighbour_count,
        station_cells=station_cells,
        station_xy=xy[station_cells],
        school_cells=np.empty(0, np.int64),
        mall_cells=np.empty(0, np.int64),
        school_distance_m=np.full(len(lat), np.inf),
        pois=station_pois,
        lat0=lat0,
        surface_tree=cKDTree(xy[surface_cells]),
    )

    cap = int(MAX_POI_CELL_SHARE * len(residential_cells))
    school_count = min(
        max(MIN_SCHOOLS, round(subscribers / SUBSCRIBERS_PER_SCHOOL)), cap
    )
    mall_count = min(max(MIN_MALLS, round(subscribers / SUBSCRIBERS_PER_MALL)), cap)
    outside = np.setdiff1d(surface_cells, residential_cells)
    city.school_cells = _distinct_cells(city, rng, school_count, outside)
    city.mall_cells = _distinct_cells(
        city, rng, mall_count, np.concatenate([outside, city.school_cells])
    )
    school_tree = cKDTree(xy[city.school_cells])
    distance_m, _ = school_tree.query(xy)
    city.school_distance_m = distance_m
    city.pois = pa.concat_tables(
        [
            station_pois,
            _poi_table(
                "sch", "synthetic school", "school", city.school_cells, lat, lon
            ),
            _poi_table("mall", "synthetic mall", "mall", city.mall_cells, lat, lon),
        ]
    )
    logger.info(
        "city: %d cells, %d schools, %d malls, %d cells in school zones",
        len(lat),
        len(city.school_cells),
        len(city.mall_cells),
        int((distance_m <= SCHOOL_ZONE_M).sum()),
    )
    return city
