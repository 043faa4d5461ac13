"""Arrow tables in the carrier formats, and writing them as CSV or Parquet.

Event tables keep repeated strings (MSISDN, cell id, app) dictionary-encoded:
each row holds a small integer into one array of distinct values, so a day of
five million events is built without five million Python strings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from telcoreach.simulate._apps import AppCatalogue
from telcoreach.simulate._city import City
from telcoreach.simulate._dirty import DefectPlan, malformed_msisdns, unknown_cell_ids
from telcoreach.simulate._mobility import EVENT_TYPES, EventArrays
from telcoreach.simulate._population import Population
from telcoreach.simulate._sessions import SEARCH_TERMS

__all__ = [
    "DPI_REQUIRED",
    "SIGNALLING_REQUIRED",
    "dpi_table",
    "signalling_table",
    "write_table",
]

#: Required fields that a ``missing_required`` defect may leave empty.
SIGNALLING_REQUIRED = ("msisdn", "event_time", "cell_id", "event_type")
DPI_REQUIRED = (
    "msisdn",
    "start_time",
    "end_time",
    "app_name",
    "app_category",
    "bytes_up",
    "bytes_down",
)
_UNKNOWN_CELL_POOL = 40
#: Widest span of times written through a table of formatted seconds.
_MAX_PREFORMATTED_S = 3 * 86_400


def _dictionary(indices: np.ndarray, values, null: np.ndarray | None = None):
    """Return a dictionary array of ``values[indices]`` with optional nulls."""
    mask = None if null is None or not null.any() else null
    return pa.DictionaryArray.from_arrays(
        pa.array(indices.astype(np.int32), mask=mask), values
    )


def _timestamps(epoch_s: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    mask = None if null is None or not null.any() else null
    return pa.array(epoch_s.astype("datetime64[s]"), mask=mask)


def _numbers(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    mask = None if null is None or not null.any() else null
    return pa.array(values.astype(np.int64), mask=mask)


def _subscriber_columns(
    rng: np.random.Generator,
    population: Population,
    person: np.ndarray,
    defects: DefectPlan,
    missing_msisdn: np.ndarray,
) -> dict[str, pa.Array]:
    """Return msisdn, imsi and imei columns with malformed MSISDNs swapped in."""
    msisdn_index = person.astype(np.int64)
    broken = np.flatnonzero(defects.malformed)
    msisdn_values = population.msisdn
    if len(broken):
        broken_values = malformed_msisdns(rng, population.msisdn.take(person[broken]))
        msisdn_values = pa.concat_arrays([population.msisdn, broken_values])
        msisdn_index[broken] = population.count + np.arange(len(broken))
    return {
        "msisdn": _dictionary(msisdn_index, msisdn_values, missing_msisdn),
        "imsi": _dictionary(person, population.imsi),
        "imei": _dictionary(person, population.imei),
    }


def _cell_column(
    rng: np.random.Generator,
    city: City,
    cell: np.ndarray,
    defects: DefectPlan,
    missing: np.ndarray | None,
) -> pa.Array:
    cell_index = cell.astype(np.int64)
    cell_values = city.cells["cell_id"].combine_chunks()
    unknown = np.flatnonzero(defects.unknown_cell)
    if len(unknown):
        pool = unknown_cell_ids(rng, min(_UNKNOWN_CELL_POOL, len(unknown)), cell_values)
        cell_index[unknown] = city.cell_count + rng.integers(0, len(pool), len(unknown))
        cell_values = pa.concat_arrays([cell_values, pool])
    return _dictionary(cell_index, cell_values, missing)


def signalling_table(
    rng: np.random.Generator,
    city: City,
    population: Population,
    events: EventArrays,
    day_epoch_s: int,
    defects: DefectPlan,
) -> pa.Table:
    """Return signalling rows in the carrier format, with ``defects`` applied."""
    columns = events.take(defects.take).columns
    person = columns["person"]
    cell = columns["cell"]
    missing = [defects.missing_field == i for i in range(len(SIGNALLING_REQUIRED))]
    table = _subscriber_columns(rng, population, person, defects, missing[0])
    table["event_time"] = _timestamps(day_epoch_s + columns["time_s"], missing[1])
    table["lac"] = pa.array(city.cell_lac[cell])
    table["cell_id"] = _cell_column(rng, city, cell, defects, missing[2])
    table["event_type"] = _dictionary(
        columns["event_type"], pa.array(EVENT_TYPES), missing[3]
    )
    return pa.table(table)


def dpi_table(
    rng: np.random.Generator,
    city: City,
    population: Population,
    catalogue: AppCatalogue,
    sessions: EventArrays,
    day_epoch_s: int,
    defects: DefectPlan,
) -> pa.Table:
    """Return DPI rows in the carrier format, with ``defects`` applied."""
    columns = sessions.take(defects.take).columns
    person = columns["person"]
    app = columns["app"]
    missing = [defects.missing_field == i for i in range(len(DPI_REQUIRED))]
    start_s = day_epoch_s + columns["start_s"]
    table = _subscriber_columns(rng, population, person, defects, missing[0])
    del table["imsi"], table["imei"]
    search = columns["search"]
    table["start_time"] = _timestamps(start_s, missing[1])
    table["end_time"] = _timestamps(start_s + columns["duration_s"], missing[2])
    table["app_name"] = _dictionary(app, pa.array(catalogue.names), missing[3])
    table["app_category"] = _dictionary(
        catalogue.category_of_app[app], pa.array(catalogue.categories), missing[4]
    )
    table["search_keywords"] = _dictionary(
        np.maximum(search, 0), pa.array(SEARCH_TERMS), search < 0
    )
    table["bytes_up"] = _numbers(columns["bytes_up"], missing[5])
    table["bytes_down"] = _numbers(columns["bytes_down"], missing[6])
    table["host"] = _dictionary(app, pa.array(catalogue.hosts))
    table["cell_id"] = _cell_column(rng, city, columns["cell"], defects, None)
    return pa.table(table)


def write_table(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` (suffix set by ``fmt``) and return the path.

    CSV files have an unquoted header and unquoted values, which needs values
    without commas, quotes or line breaks; a table that has some is written
    with quotes around every string instead.
    """
    if fmt == "parquet":
        path = path.with_suffix(".parquet")
        # Readers get plain strings; Parquet dictionary-encodes pages anyway.
        plain = pa.schema(
            [
                f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                for f in table.schema
            ]
        )
        pq.write_table(table.cast(plain), path)
        return path
    path = path.with_suffix(".csv")
    table = pa.table(
        {name: _preformatted_times(table[name]) for name in table.column_names}
    )
    header = (",".join(table.column_names) + "\n").encode("utf-8")
    try:
        _write_csv(table, path, header, "none")
    except pa.ArrowInvalid:
        _write_csv(table, path, header, "needed")
    return path


def _preformatted_times(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Return a timestamp column as dictionary-encoded text, others unchanged.

    Formatting each distinct second once, rather than each row, makes CSV
    writing of event files about a fifth faster; the text is the same.
    """
    if not pa.types.is_timestamp(column.type) or column.type.tz is not None:
        return column
    seconds = column.cast(pa.timestamp("s")).cast(pa.int64())
    low, high = pc.min(seconds).as_py(), pc.max(seconds).as_py()
    if low is None or high - low > _MAX_PREFORMATTED_S:
        return column
    distinct = np.arange(low, high + 1).astype("datetime64[s]")
    text = pa.array(distinct).cast(pa.string())
    chunks = [
        pa.DictionaryArray.from_arrays(pc.subtract(chunk, low).cast(pa.int32()), text)
        for chunk in seconds.chunks
    ]
    return pa.chunked_array(chunks, type=pa.dictionary(pa.int32(), pa.string()))


def _write_csv(table: pa.Table, path: Path, header: bytes, quoting: str) -> None:
    options = pacsv.WriteOptions(
        include_header=False, batch_size=65_536, quoting_style=quoting
    )
    with pa.OSFile(str(path), "wb") as sink:
        sink.write(header)
        pacsv.write_csv(table, sink, options)
