"""Readers of the public Beijing cell-tower and subway-station files.

The files live in the ``2-cells-subway-poi`` folder of the public data sets
(see its ``SOURCES.md``): 1,063 base stations harvested from cellocation.com
(position and coverage radius only: their LAC and cell identity were not
kept) and 426 subway stations from OpenStreetMap, 364 of them with
coordinates. Each reader returns a table whose columns are exactly the input
field names of a record kind in :mod:`telcoreach.schemas`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telcoreach.errors import DataSourceError, SchemaError
from telcoreach.geo import BEIJING_EXTENT, CellLocator, Extent, virtual_cells

__all__ = [
    "SUBWAY_CELL_RADIUS_M",
    "build_city_cells",
    "read_base_stations",
    "read_subway_stations",
]

logger = logging.getLogger(__name__)

_FOLDER = "2-cells-subway-poi"
_BASE_STATIONS = "beijing_base_stations_cellocation.csv"
_SUBWAY_STATIONS = "beijing_subway_stations.csv"

#: Coverage radius given to the cell serving a subway station's platform.
SUBWAY_CELL_RADIUS_M = 150.0

_CELLS_SCHEMA = pa.schema(
    [
        ("cell_id", pa.string()),
        ("lac", pa.int64()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("radius_m", pa.float64()),
        ("cell_type", pa.string()),
    ]
)
_POIS_SCHEMA = pa.schema(
    [
        ("poi_id", pa.string()),
        ("name", pa.string()),
        ("poi_type", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
    ]
)


def find_public_file(data_dir: str | Path, folder: str, name: str) -> Path:
    """Return the path of public file ``name`` under ``data_dir``.

    ``data_dir`` may be the root of the public data sets (holding ``folder``)
    or ``folder`` itself.

    Raises
    ------
    DataSourceError
        If the file is in neither place.
    """
    root = Path(data_dir)
    for candidate in (root / folder / name, root / name):
        if candidate.is_file():
            return candidate
    raise DataSourceError(
        f"expected the public file {folder}/{name} under {root}, found no such "
        "file; pass the folder of the public data sets (set $TELCOREACH_DATA or "
        "--data-dir, e.g. ../shared/datasets)"
    )


def read_public_csv(path: Path, columns: dict[str, pa.DataType]) -> pa.Table:
    """Return ``columns`` of a public CSV file with the given types.

    Raises
    ------
    SchemaError
        If a column is missing or a value does not parse to its type.
    """
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=columns, include_columns=list(columns)
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as error:
        raise SchemaError(
            f"{path.name}: expected columns {', '.join(columns)} with types "
            f"{', '.join(str(t) for t in columns.values())}; reading failed "
            f"with: {error}. Check the file against its SOURCES.md"
        ) from None
    return table


def _numbered_ids(prefix: str, count: int) -> pa.Array:
    """Return ids ``<prefix>-0001``, ``<prefix>-0002``... (at least 4 digits)."""
    numbers = pa.array(np.arange(1, count + 1), pa.int64()).cast(pa.string())
    padded = pc.utf8_lpad(numbers, 4, "0")
    return pc.binary_join_element_wise(prefix + "-", padded, "")


def read_base_stations(data_dir: str | Path) -> pa.Table:
    """Return the 1,063 real Beijing base stations as a ``cells`` table.

    Cells are numbered ``bs-0001``, ``bs-0002``... in file order, typed
    ``macro``, with the coverage radius of the file and no LAC (the source
    did not keep it).

    Parameters
    ----------
    data_dir : str or Path
        Root of the public data sets.

    Returns
    -------
    pyarrow.Table
        Columns ``cell_id, lac, lat, lon, radius_m, cell_type``.

    Raises
    ------
    DataSourceError
        If the file is missing.
    SchemaError
        If its columns do not parse.
    """
    path = find_public_file(data_dir, _FOLDER, _BASE_STATIONS)
    raw = read_public_csv(
        path, {"lat": pa.float64(), "lon": pa.float64(), "radius_m": pa.float64()}
    )
    count = raw.num_rows
    cells = pa.table(
        {
            "cell_id": _numbered_ids("bs", count),
            "lac": pa.nulls(count, pa.int64()),
            "lat": raw["lat"],
            "lon": raw["lon"],
            "radius_m": raw["radius_m"],
            "cell_type": pa.array(["macro"] * count, pa.string()),
        },
        schema=_CELLS_SCHEMA,
    )
    logger.info("read %d base stations from %s", count, path.name)
    return cells


def read_subway_stations(data_dir: str | Path) -> tuple[pa.Table, pa.Table]:
    """Return one subway cell and one POI per Beijing subway station.

    Stations without coordinates in the source (62 of 426) are dropped and
    counted in the log. The kept stations are numbered in file order: cells
    ``sub-0001``... (type ``subway``, radius 150 m, no LAC) and POIs
    ``st-0001``... (type ``subway_station``, named after the station).

    Parameters
    ----------
    data_dir : str or Path
        Root of the public data sets.

    Returns
    -------
    cells : pyarrow.Table
        ``cells`` kind: ``cell_id, lac, lat, lon, radius_m, cell_type``.
    pois : pyarrow.Table
        ``pois`` kind: ``poi_id, name, poi_type, lat, lon``.

    Raises
    ------
    DataSourceError
        If the file is missing.
    SchemaError
        If its columns do not parse.
    """
    path = find_public_file(data_dir, _FOLDER, _SUBWAY_STATIONS)
    raw = read_public_csv(
        path, {"name": pa.string(), "lat": pa.float64(), "lng": pa.float64()}
    )
    located = pc.and_(pc.is_valid(raw["lat"]), pc.is_valid(raw["lng"]))
    stations = raw.filter(located)
    dropped = raw.num_rows - stations.num_rows
    if dropped:
        logger.info(
            "dropped %d of %d subway stations without coordinates",
            dropped,
            raw.num_rows,
        )
    count = stations.num_rows
    cells = pa.table(
        {
            "cell_id": _numbered_ids("sub", count),
            "lac": pa.nulls(count, pa.int64()),
            "lat": stations["lat"],
            "lon": stations["lng"],
            "radius_m": pa.array(np.full(count, SUBWAY_CELL_RADIUS_M)),
            "cell_type": pa.array(["subway"] * count, pa.string()),
        },
        schema=_CELLS_SCHEMA,
    )
    pois = pa.table(
        {
            "poi_id": _numbered_ids("st", count),
            "name": stations["name"],
            "poi_type": pa.array(["subway_station"] * count, pa.string()),
            "lat": stations["lat"],
            "lon": stations["lng"],
        },
        schema=_POIS_SCHEMA,
    )
    logger.info("read %d subway stations from %s", count, path.name)
    return cells, pois


def build_city_cells(
    data_dir: str | Path,
    extent: Extent = BEIJING_EXTENT,
    resolution: int = 8,
    sparse_km: float = 1.0,
) -> pa.Table:
    """Return the cell layer of Beijing: real cells filled in with virtual ones.

    The layer holds the real base stations, one subway cell per located
    station and, where the real layer is sparse, virtual cells: the H3
    hexagons of ``extent`` at ``resolution`` whose centre is more than
    ``sparse_km`` from every real base station, with centres rounded to six
    decimals (about 0.1 m).

    Parameters
    ----------
    data_dir : str or Path
        Root of the public data sets.
    extent : Extent
        Box covered by virtual cells.
    resolution : int
        H3 resolution of the virtual cells (8: about 0.74 km² each).
    sparse_km : float
        A hexagon whose centre has a real base station within this distance
        gets no virtual cell.

    Returns
    -------
    pyarrow.Table
        ``cells`` kind, rows in the order base stations, subway, virtual.

    Raises
    ------
    SchemaError
        If ``sparse_km`` is not positive.
    """
    if not sparse_km > 0:
        raise SchemaError(
            f"build_city_cells: expected sparse_km > 0, found {sparse_km!r}; "
            "pass the distance in km beyond which virtual cells fill gaps"
        )
    base_stations = read_base_stations(data_dir)
    subway_cells, _ = read_subway_stations(data_dir)
    grid = virtual_cells(extent, resolution)

    locator = CellLocator(
        base_stations["cell_id"].to_numpy(zero_copy_only=False),
        base_stations["lat"].to_numpy(),
        base_stations["lon"].to_numpy(),
        max_distance_m=sparse_km * 1_000,
    )
    _, distance_m = locator.nearest(grid["lat"].to_numpy(), grid["lon"].to_numpy())
    sparse = distance_m > sparse_km * 1_000
    fill = grid.filter(pa.array(sparse)).cast(_CELLS_SCHEMA)
    # Six decimals (about 0.1 m) are plenty, and a coordinate printed with 15
    # decimals looks like a phone identifier to privacy scanners.
    for name in ("lat", "lon"):
        index = fill.schema.get_field_index(name)
        fill = fill.set_column(index, name, pc.round(fill[name], 6))
    logger.info(
        "city layer: %d base stations, %d subway cells, %d of %d virtual cells",
        base_stations.num_rows,
        subway_cells.num_rows,
        fill.num_rows,
        grid.num_rows,
    )
    return pa.concat_tables([base_stations, subway_cells, fill])
