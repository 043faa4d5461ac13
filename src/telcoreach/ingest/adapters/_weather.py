"""Reader of real hourly Beijing weather (UCI Beijing Multi-Site Air Quality)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telcoreach.errors import DataSourceError

__all__ = ["read_weather"]

logger = logging.getLogger(__name__)

_FOLDER = "7-weather"
_STATIONS = {
    "Wanliu": "PRSA_Data_Wanliu_20130301-20170228.csv",
    "Dongsi": "PRSA_Data_Dongsi_20130301-20170228.csv",
}


def read_weather(
    data_dir: str | Path, stations: tuple[str, ...] = ("Wanliu",)
) -> pa.Table:
    """Return hourly observations (weather kind) of Beijing stations.

    The files carry rain in mm per hour (``RAIN``) and temperature in °C
    (``TEMP``) for 2013-03 to 2017-02, in Beijing local time.
    """
    tables = []
    for station in stations:
        if station not in _STATIONS:
            raise DataSourceError(
                f"unknown weather station {station!r}; expected one of "
                f"{', '.join(_STATIONS)}"
            )
        path = Path(data_dir) / _FOLDER / _STATIONS[station]
        if not path.is_file():
            raise DataSourceError(
                f"weather file {path} not found; set TELCOREACH_DATA to the folder "
                "of the public data sets"
            )
        raw = pacsv.read_csv(path)
        stamp = pc.strptime(
            pc.binary_join_element_wise(
                raw["year"].cast(pa.string()),
                pc.utf8_lpad(raw["month"].cast(pa.string()), 2, "0"),
                pc.utf8_lpad(raw["day"].cast(pa.string()), 2, "0"),
                pc.utf8_lpad(raw["hour"].cast(pa.string()), 2, "0"),
                "-",
            ),
            "%Y-%m-%d-%H",
            unit="s",
        )
        tables.append(
            pa.table(
                {
                    "observed_at": stamp,
                    "place": pa.array([station] * raw.num_rows, pa.string()),
                    "precipitation_mm": raw["RAIN"].cast(pa.float64()),
                    "temperature_c": raw["TEMP"].cast(pa.float64()),
                }
            )
        )
    logger.info("read %d hourly weather rows", sum(t.num_rows for t in tables))
    return pa.concat_tables(tables)
