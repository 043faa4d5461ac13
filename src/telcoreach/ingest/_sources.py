"""Open the inputs of an ingest: carrier files or adapters of public data.

An adapter turns a public data set into rows of a record kind. Its identity
(adapter, kind, options and the content hash of the files it reads) plays the
role of a file hash, so re-ingesting the same public data adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from telcoreach.errors import ConfigError, DataSourceError
from telcoreach.geo import BEIJING_EXTENT
from telcoreach.ingest._batch import SourceChunks, file_sources, table_source

__all__ = [
    "ADAPTERS",
    "DATA_ENV",
    "city_cell_layer",
    "default_data_dir",
    "open_sources",
]

logger = logging.getLogger(__name__)

DATA_ENV = "TELCOREACH_DATA"


def default_data_dir() -> Path:
    """Return ``$TELCOREACH_DATA`` or ``../shared/datasets`` from the project root.

    The project root is the current directory when it holds ``pyproject.toml``,
    else the checkout this package was installed from.
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    candidates = [Path.cwd(), Path(__file__).resolve().parents[3]]
    for root in candidates:
        path = root.parent / "shared" / "datasets"
        if path.is_dir():
            return path
    return candidates[0].parent / "shared" / "datasets"


def _inputs_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = (
            sorted(p for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(file.name.encode())
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def city_cell_layer(
    data_dir: Path, layer: str = "city", resolution: int = 8
) -> pa.Table:
    """Return the cell layer of Beijing used by the simulator and by GeoLife.

    ``city``: real base stations, subway-station cells and virtual H3 cells
    where real stations are sparse. ``virtual``: a full H3 grid of virtual
    cells plus the subway-station cells.
    """
    from telcoreach.geo import virtual_cells
    from telcoreach.ingest.adapters import build_city_cells, read_subway_stations

    if layer == "city":
        return build_city_cells(data_dir, resolution=resolution)
    if layer == "virtual":
        subway_cells, _ = read_subway_stations(data_dir)
        grid = virtual_cells(BEIJING_EXTENT, resolution)
        return pa.concat_tables([grid, subway_cells.cast(grid.schema)])
    raise ConfigError(f"unknown cell layer {layer!r}; expected 'city' or 'virtual'")


def _geolife(kind: str, data_dir: Path, paths: list[Path], options: dict) -> pa.Table:
    from telcoreach.ingest.adapters import geolife_to_signalling, read_geolife

    cells = city_cell_layer(data_dir, options.get("layer", "virtual"))
    folder = data_dir / "1-geolife"
    positions = read_geolife(
        paths or [folder / "geolife_long_10_MB", folder / "geolife_modes"]
    )
    events, facts = geolife_to_signalling(positions, cells=cells)
    logger.info("geolife: %s", facts)
    return events


def _talkingdata(kind, data_dir, paths, options) -> pa.Table:
    from telcoreach.ingest.adapters import read_talkingdata

    return read_talkingdata(data_dir)


def _bank(kind, data_dir, paths, options) -> pa.Table:
    from telcoreach.ingest.adapters import read_bank_marketing

    customers, outcomes = read_bank_marketing(data_dir)
    return customers if kind == "partner_customers" else outcomes


def _cells(kind, data_dir, paths, options) -> pa.Table:
    return city_cell_layer(data_dir, options.get("layer", "city"))


def _subway(kind, data_dir, paths, options) -> pa.Table:
    from telcoreach.ingest.adapters import read_subway_stations

    cells, pois = read_subway_stations(data_dir)
    return cells if kind == "cells" else pois


def _weather(kind, data_dir, paths, options) -> pa.Table:
    from telcoreach.ingest.adapters import read_weather

    return read_weather(data_dir, tuple(options.get("stations", ("Wanliu",))))


AdapterFunction = Callable[[str, Path, list[Path], dict], pa.Table]

#: Adapter name -> (record kinds it can produce, reader, inputs under data_dir).
ADAPTERS: dict[str, tuple[tuple[str, ...], AdapterFunction, tuple[str, ...]]] = {
    "geolife": (("signalling",), _geolife, ("1-geolife", "2-cells-subway-poi")),
    "beijing_cells": (("cells",), _cells, ("2-cells-subway-poi",)),
    "subway": (("cells", "pois"), _subway, ("2-cells-subway-poi",)),
    "talkingdata": (("subscribers",), _talkingdata, ("3-talkingdata-demographics",)),
    "bank_marketing": (
        ("partner_customers", "campaign_outcomes"),
        _bank,
        ("4-bank-marketing",),
    ),
    "weather": (("weather",), _weather, ("7-weather",)),
}


def open_sources(
    kind: str,
    paths: list[Path],
    *,
    adapter: str = "csv",
    options: dict[str, Any] | None = None,
    data_dir: Path | None = None,
) -> list[SourceChunks]:
    """Return the sources of one ingest.

    Parameters
    ----------
    kind : str
        Record kind to produce.
    paths : list of Path
        Files or folders (carrier files), or for adapters the data set's
        files (default: its folder under ``data_dir``).
    adapter : str
        ``csv`` / ``parquet`` for carrier files, or a public-data adapter.
    options : dict, optional
        Adapter options (e.g. ``layer``).
    data_dir : Path, optional
        Folder of the public data sets (default :func:`default_data_dir`).
    """
    options = dict(options or {})
    if adapter in {"csv", "parquet"}:
        if not paths:
            raise DataSourceError(f"ingest {kind}: give at least one file or folder")
        return file_sources(kind, paths)
    if adapter not in ADAPTERS:
        raise ConfigError(
            f"unknown adapter {adapter!r}; expected csv, parquet or one of "
            f"{', '.join(ADAPTERS)}"
        )
    kinds, reader, folders = ADAPTERS[adapter]
    if kind not in kinds:
        raise ConfigError(
            f"adapter {adapter!r} produces {', '.join(kinds)}, not {kind!r}"
        )
    data_dir = Path(data_dir or default_data_dir())
    inputs = [Path(p) for p in paths] or [data_dir / folder for folder in folders]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise DataSourceError(
            f"adapter {adapter!r} needs {', '.join(missing)}, which does not exist; "
            f"set {DATA_ENV} to the folder of the public data sets"
        )
    table = reader(kind, data_dir, [Path(p) for p in paths], options)
    identity = json.dumps(
        {
            "adapter": adapter,
            "kind": kind,
            "options": options,
            "inputs": _inputs_hash(inputs),
        },
        sort_keys=True,
    )
    return [table_source(f"{adapter}:{kind}", table, identity)]
