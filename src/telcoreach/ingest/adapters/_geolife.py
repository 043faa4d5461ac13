"""GeoLife GPS trajectories as positions, transport-mode labels and signalling.

GeoLife (Microsoft Research Asia) recorded the GPS fixes of 182 volunteers,
mostly in Beijing, from 2007 to 2012; some users labelled their trips with the
transport mode. The data is research-only (Microsoft Research License
Agreement). telcoreach uses it as real human mobility: turned into the
signalling events a carrier would have seen (one event when the phone changes
cell, plus periodic location updates), it exercises the stay-point, home/work
and commute features on real movement rather than simulated movement.

Time zone: GeoLife times are GMT. Every table returned here carries
**Beijing local wall-clock time (UTC+8)** as time-zone-naive timestamps, the
convention of carrier files and of the ``signalling`` record kind.

File formats read
-----------------
PLT trajectory (``<user>/Trajectory/<start>.plt``)
    6 header lines, then ``lat,lon,0,altitude_ft,days_since_1899,date,time``
    (altitude ``-777`` means unknown).
``labels.txt`` (``<user>/labels.txt``)
    Tab-separated ``Start Time``, ``End Time`` (``YYYY/MM/DD HH:MM:SS``),
    ``Transportation Mode``.
scikit-mobility sample (``geolife_sample.txt.gz``)
    CSV ``lat,lng,datetime,uid``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numba import njit

from telcoreach.errors import DataSourceError, SchemaError
from telcoreach.geo import BEIJING_EXTENT, CellLocator, Extent, virtual_cells
from telcoreach.schemas import schema_for

__all__ = [
    "GEOLIFE_UTC_OFFSET_S",
    "geolife_to_signalling",
    "label_transport_modes",
    "read_geolife",
    "read_geolife_labels",
]

logger = logging.getLogger(__name__)

#: GeoLife records GMT; telcoreach reports Beijing local time, 8 hours ahead.
GEOLIFE_UTC_OFFSET_S = 8 * 3600

#: Prefix of the stand-in MSISDN of a GeoLife user (these are not phone numbers).
MSISDN_PREFIX = "geolife-"

_PLT_HEADER_LINES = 6
_PLT_COLUMNS = ("lat", "lon", "zero", "altitude_ft", "days", "date", "time")
_UNKNOWN_ALTITUDE_FT = -777.0
_SAMPLE_SUFFIXES = (".txt", ".txt.gz", ".csv", ".csv.gz")

_POSITIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("ts", pa.timestamp("s")),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("altitude_ft", pa.float64()),
    ]
)
_LABELS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("started_at", pa.timestamp("s")),
        ("finished_at", pa.timestamp("s")),
        ("mode", pa.string()),
    ]
)

# Event codes of the signalling kernel, and the event_type each one stands for.
_NO_EVENT, _ATTACH, _HANDOVER, _PERIODIC = 0, 1, 2, 3
_EVENT_NAMES = pa.array([None, "attach", "handover", "periodic_update"], pa.string())


def _to_beijing(gmt_text: pa.Array, fmt: str | None = None) -> pa.Array:
    """Parse GMT time text and return naive Beijing local timestamps (seconds)."""
    if fmt is None:
        gmt = gmt_text.cast(pa.timestamp("s"))
    else:
        gmt = pc.strptime(gmt_text, format=fmt, unit="s")
    local_s = pc.add(gmt.cast(pa.int64()), GEOLIFE_UTC_OFFSET_S)
    return local_s.cast(pa.timestamp("s"))


def _plt_files(source: str | Path) -> list[Path]:
    """Return the files to read for one source: itself if a file, else its PLTs."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataSourceError(
            f"GeoLife source {path} does not exist; expected a folder of user "
            "folders (<user>/Trajectory/*.plt), a .plt file or geolife_sample.txt.gz"
        )
    if (path / "Trajectory").is_dir():
        files = sorted((path / "Trajectory").glob("*.plt"))
    else:
        files = sorted(path.glob("*/Trajectory/*.plt"))
    if not files:
        raise DataSourceError(
            f"no GeoLife trajectories under {path}; expected files "
            "<user>/Trajectory/*.plt (the layout of the GeoLife download)"
        )
    return files


def _read_plt(path: Path) -> pa.Table:
    """Read one PLT file into (lat, lon, altitude_ft, date, time) columns."""
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                skip_rows=_PLT_HEADER_LINES,
                column_names=list(_PLT_COLUMNS),
                use_threads=False,
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=["lat", "lon", "altitude_ft", "date", "time"],
                column_types={
                    "lat": pa.float64(),
                    "lon": pa.float64(),
                    "altitude_ft": pa.float64(),
                    "date": pa.string(),
                    "time": pa.string(),
                },
            ),
        )
    except pa.ArrowInvalid as error:
        raise SchemaError(
            f"{path}: not a GeoLife PLT file ({error}); expected 6 header lines "
            "then lat,lon,0,altitude_ft,days,date,time"
        ) from error


def _read_plt_files(files: list[Path]) -> pa.Table:
    """Read PLT files and return positions with the user id from each path."""
    tables = [_read_plt(path) for path in files]
    users = [path.parent.parent.name for path in files]
    user_names, user_of_file = np.unique(
        np.array(users, dtype=object), return_inverse=True
    )
    rows_per_file = np.array([len(table) for table in tables], np.int64)
    fixes = pa.concat_tables(tables).combine_chunks()

    user_codes = pa.array(np.repeat(user_of_file.astype(np.int32), rows_per_file))
    user_id = pa.DictionaryArray.from_arrays(
        user_codes, pa.array(user_names.tolist(), pa.string())
    ).cast(pa.string())
    gmt_text = pc.binary_join_element_wise(fixes["date"], fixes["time"], " ")
    try:
        ts = _to_beijing(gmt_text)
    except pa.ArrowInvalid as error:
        raise SchemaError(
            f"GeoLife PLT date/time not in the form YYYY-MM-DD,HH:MM:SS ({error})"
        ) from error
    altitude = fixes["altitude_ft"]
    altitude = pc.if_else(pc.equal(altitude, _UNKNOWN_ALTITUDE_FT), None, altitude)
    return pa.table(
        [user_id, ts, fixes["lat"], fixes["lon"], altitude], schema=_POSITIONS_SCHEMA
    )


def _read_sample(path: Path) -> pa.Table:
    """Read the scikit-mobility sample (``lat,lng,datetime,uid``) as positions."""
    try:
        sample = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=["uid", "datetime", "lat", "lng"],
                column_types={
                    "uid": pa.string(),
                    "datetime": pa.string(),
                    "lat": pa.float64(),
                    "lng": pa.float64(),
                },
            ),
        )
        ts = _to_beijing(sample["datetime"].combine_chunks())
    except (pa.ArrowInvalid, KeyError) as error:
        raise SchemaError(
            f"{path}: not a GeoLife sample CSV ({error}); expected a header "
            "lat,lng,datetime,uid with times like 2008-10-23 05:53:05 (GMT)"
        ) from error
    return pa.table(
        [
            sample["uid"],
            ts,
            sample["lat"],
            sample["lng"],
            pa.nulls(len(sample), pa.float64()),
        ],
        schema=_POSITIONS_SCHEMA,
    )


def read_geolife(source: str | Path | Sequence[str | Path]) -> pa.Table:
    """Return GeoLife GPS fixes as a positions table sorted by user and time.

    Parameters
    ----------
    source : path or sequence of paths
        Any mix of: a folder of user folders (``<user>/Trajectory/*.plt``, the
        layout of the GeoLife download), one user folder, single ``.plt``
        files, and the scikit-mobility sample ``geolife_sample.txt.gz``
        (``lat,lng,datetime,uid``).

    Returns
    -------
    pyarrow.Table
        ``user_id`` (string, the GeoLife user folder such as ``"010"``), ``ts``
        (naive timestamp in Beijing local time, UTC+8, converted from GeoLife's
        GMT), ``lat``, ``lon`` (WGS-84 degrees), ``altitude_ft`` (feet, null
        when GeoLife recorded -777 or the source has none). Fixes of a user
        with the same time keep the order of the files, sorted by name.

    Raises
    ------
    DataSourceError
        If a path does not exist or a folder holds no trajectories.
    SchemaError
        If a file is not in the expected format.

    Examples
    --------
    >>> positions = read_geolife("datasets/1-geolife/geolife_long_10_MB")
    ... # doctest: +SKIP
    """
    sources = [source] if isinstance(source, str | Path) else list(source)
    # A file named twice (a folder and a file inside it) is read once.
    files = dict.fromkeys(
        path.resolve() for item in sources for path in _plt_files(item)
    )
    plt_files: list[Path] = []
    tables: list[pa.Table] = []
    for path in files:
        if path.name.endswith(_SAMPLE_SUFFIXES):
            tables.append(_read_sample(path))
        else:
            plt_files.append(path)
    if plt_files:
        tables.append(_read_plt_files(plt_files))
    if not tables:
        raise DataSourceError(
            f"no GeoLife files in {sources!r}; expected folders or .plt files"
        )

    # Arrow's sort is stable: fixes with equal times keep their file order.
    positions = pa.concat_tables(tables).sort_by(
        [("user_id", "ascending"), ("ts", "ascending")]
    )
    logger.info(
        "GeoLife: read %d fixes of %d users from %d trajectory files",
        len(positions),
        len(pc.unique(positions["user_id"])),
        len(plt_files),
    )
    return positions


def read_geolife_labels(data_dir: str | Path) -> pa.Table:
    """Return the transport-mode labels of every GeoLife user under ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        A folder of GeoLife user folders, some holding ``labels.txt``, or one
        user folder.

    Returns
    -------
    pyarrow.Table
        ``user_id``, ``started_at``, ``finished_at`` (naive timestamps in
        Beijing local time, UTC+8, converted from GMT) and ``mode`` (walk,
        bus, subway, taxi, bike, train, car, airplane, ...), sorted by user
        and start. Empty when no user has labels.

    Raises
    ------
    DataSourceError
        If ``data_dir`` is not a folder.
    SchemaError
        If a ``labels.txt`` is not in the GeoLife format.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataSourceError(
            f"GeoLife folder {folder} does not exist; expected a folder of user "
            "folders, some with labels.txt"
        )
    label_files = [folder / "labels.txt"] if (folder / "labels.txt").is_file() else []
    label_files += sorted(folder.glob("*/labels.txt"))
    tables = [_read_labels_file(path) for path in label_files]
    if not tables:
        return _LABELS_SCHEMA.empty_table()
    labels = pa.concat_tables(tables)
    return labels.sort_by([("user_id", "ascending"), ("started_at", "ascending")])


def _read_labels_file(path: Path) -> pa.Table:
    try:
        raw = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "Start Time": pa.string(),
                    "End Time": pa.string(),
                    "Transportation Mode": pa.string(),
                }
            ),
        )
        fmt = "%Y/%m/%d %H:%M:%S"
        started_at = _to_beijing(raw["Start Time"].combine_chunks(), fmt)
        finished_at = _to_beijing(raw["End Time"].combine_chunks(), fmt)
        mode = pc.utf8_trim_whitespace(raw["Transportation Mode"].combine_chunks())
    except (pa.ArrowInvalid, KeyError) as error:
        raise SchemaError(
            f"{path}: not a GeoLife labels file ({error}); expected tab-separated "
            "Start Time, End Time (YYYY/MM/DD HH:MM:SS), Transportation Mode"
        ) from error
    user_id = pa.array([path.parent.name] * len(raw), pa.string())
    return pa.table([user_id, started_at, finished_at, mode], schema=_LABELS_SCHEMA)


def label_transport_modes(
    table: pa.Table,
    labels: pa.Table,
    *,
    user_column: str = "user_id",
    time_column: str = "ts",
) -> pa.Table:
    """Return ``table`` with a ``mode`` column: the labelled transport mode at each row.

    A row gets the mode of the label of the same user whose
    ``[started_at, finished_at]`` interval holds its time, null when none
    does (where labels overlap, the one starting last wins). Works on
    positions (``user_id``, ``ts``) and on the signalling events of
    :func:`geolife_to_signalling` (``user_column="msisdn"``,
    ``time_column="event_time"``), whose ``geolife-<user>`` ids are matched
    to ``<user>``.

    Parameters
    ----------
    table : pyarrow.Table
        Rows with a user and a time (naive Beijing local time).
    labels : pyarrow.Table
        Output of :func:`read_geolife_labels`.
    user_column, time_column : str
        Columns of ``table`` holding the user and the time.

    Returns
    -------
    pyarrow.Table
        ``table`` plus a string column ``mode``.
    """
    for name in (user_column, time_column):
        if name not in table.column_names:
            raise SchemaError(
                f"cannot label transport modes: no column {name!r}; found "
                f"{', '.join(table.column_names)}; pass user_column/time_column"
            )
    if len(labels) == 0:
        return table.append_column("mode", pa.nulls(len(table), pa.string()))
    users = pc.replace_substring_regex(
        table[user_column].combine_chunks().cast(pa.string()), f"^{MSISDN_PREFIX}", ""
    )
    times_s = table[time_column].combine_chunks().cast(pa.timestamp("s"))
    times_s = times_s.cast(pa.int64()).to_numpy(zero_copy_only=False)
    label_users = labels["user_id"].combine_chunks()

    # One sortable key per (user, second): user rank in the high bits.
    dictionary = pc.unique(pa.concat_arrays([users, label_users]))
    user_rank = pc.index_in(users, value_set=dictionary).to_numpy(zero_copy_only=False)
    label_rank = pc.index_in(label_users, value_set=dictionary).to_numpy(
        zero_copy_only=False
    )
    starts_s = labels["started_at"].combine_chunks().cast(pa.int64()).to_numpy()
    ends_s = labels["finished_at"].combine_chunks().cast(pa.int64()).to_numpy()
    origin_s = min(times_s.min(initial=0), starts_s.min(initial=0))
    key_of_row = (user_rank.astype(np.int64) << 40) + (times_s - origin_s)
    key_of_start = (label_rank.astype(np.int64) << 40) + (starts_s - origin_s)

    order = np.argsort(key_of_start, kind="stable")
    candidate = np.searchsorted(key_of_start[order], key_of_row, side="right") - 1
    label = order[np.maximum(candidate, 0)]
    matched = (
        (candidate >= 0) & (label_rank[label] == user_rank) & (times_s <= ends_s[label])
    )
    modes = labels["mode"].combine_chunks().take(pa.array(label))
    modes = pc.if_else(pa.array(matched), modes, pa.scalar(None, pa.string()))
    return table.append_column("mode", modes)


@njit(cache=True)
def _signalling_events(user, day, cell, ts, periodic_ticks):
    """Return the event code of each fix sorted by (user, time), 0 for none.

    The first fix of a user's day attaches; a fix in another cell than the
    current one hands over; a fix in the current cell ``periodic_ticks`` or
    more after the last event sends a periodic update. A fix at the same time
    as the last event is ignored, so a subscriber has one event per instant.
    """
    n = ts.shape[0]
    codes = np.zeros(n, np.int8)
    current_cell = -1
    last_event = 0
    for i in range(n):
        if i == 0 or user[i] != user[i - 1] or day[i] != day[i - 1]:
            codes[i] = 1
        elif ts[i] == last_event:
            continue
        elif cell[i] != current_cell:
            codes[i] = 2
        elif ts[i] - last_event >= periodic_ticks:
            codes[i] = 3
        else:
            continue
        current_cell = cell[i]
        last_event = ts[i]
    return codes


def _cell_layer(
    cells: pa.Table | None, extent: Extent, resolution: int
) -> tuple[pa.Table, bool]:
    """Return (cells table, whether every cell is virtual)."""
    if cells is None:
        return virtual_cells(extent, resolution), True
    missing = {"cell_id", "lat", "lon", "radius_m"} - set(cells.column_names)
    if missing:
        raise SchemaError(
            f"cells table lacks {', '.join(sorted(missing))}; expected the columns "
            f"of the cells record kind ({', '.join(schema_for('cells').field_names)})"
        )
    if len(cells) == 0:
        raise SchemaError("cells table is empty; expected at least one cell")
    virtual = "cell_type" in cells.column_names and bool(
        pc.all(pc.equal(cells["cell_type"], "virtual")).as_py()
    )
    return cells, virtual


def geolife_to_signalling(
    positions: pa.Table,
    cells: pa.Table | None = None,
    extent: Extent = BEIJING_EXTENT,
    resolution: int = 8,
    periodic_min: float = 5,
) -> tuple[pa.Table, dict[str, Any]]:
    """Turn GPS fixes into the signalling events a carrier would have recorded.

    Each fix is served by the nearest cell of the layer. The first fix of a
    user's day emits ``attach``, a change of serving cell ``handover``, and
    staying in one cell ``periodic_update`` at most once per ``periodic_min``
    (counted from the last event). Fixes farther than the layer's largest
    cell radius from every cell centre are outside the layer: dropped and
    counted.

    Parameters
    ----------
    positions : pyarrow.Table
        ``user_id``, ``ts`` (timestamps, Beijing local time), ``lat``, ``lon``,
        e.g. from :func:`read_geolife`. Any order.
    cells : pyarrow.Table, optional
        A cell layer with the columns of the ``cells`` record kind (``lac``
        and ``cell_type`` optional). By default, virtual cells: the H3
        hexagons of ``resolution`` covering ``extent``.
    extent : Extent, default BEIJING_EXTENT
        Area the virtual layer covers (unused when ``cells`` is given).
    resolution : int, default 8
        H3 resolution of the virtual layer (8: hexagons of about 0.74 km²).
    periodic_min : float, default 5
        Shortest time in minutes between two events in the same cell.

    Returns
    -------
    events : pyarrow.Table
        The input fields of the ``signalling`` record kind: ``msisdn`` (the
        stand-in ``geolife-<user>``, not a phone number), ``imsi`` and
        ``imei`` (null), ``event_time``, ``lac`` (from the cell layer, null for
        virtual cells), ``cell_id``, ``event_type``; sorted by user and time.
    summary : dict
        ``fixes_in``, ``fixes_outside_layer``, ``events_out``,
        ``events_by_type``, ``users``, ``cells_used``, ``virtual_layer``
        (True when every cell is virtual) and ``layer`` (a description).

    Raises
    ------
    SchemaError
        If ``positions`` or ``cells`` lack a column.
    """
    missing = {"user_id", "ts", "lat", "lon"} - set(positions.column_names)
    if missing:
        raise SchemaError(
            f"positions lack {', '.join(sorted(missing))}; expected user_id, ts, "
            "lat, lon (the output of read_geolife)"
        )
    layer, virtual = _cell_layer(cells, extent, resolution)
    radius_m = float(pc.max(layer["radius_m"]).as_py())
    locator = CellLocator(
        layer["cell_id"].to_numpy(zero_copy_only=False),
        layer["lat"].to_numpy(zero_copy_only=False),
        layer["lon"].to_numpy(zero_copy_only=False),
        max_distance_m=radius_m,
    )

    fixes = positions.select(["user_id", "ts", "lat", "lon"]).sort_by(
        [("user_id", "ascending"), ("ts", "ascending")]
    )
    cell, distance_m = locator.nearest(
        fixes["lat"].to_numpy(zero_copy_only=False),
        fixes["lon"].to_numpy(zero_copy_only=False),
    )
    inside = distance_m <= radius_m
    fixes = fixes.filter(pa.array(inside)).append_column("cell", pa.array(cell[inside]))

    events = _events_of(fixes, periodic_min)
    event_cells = events["cell"].to_numpy()
    lac = (
        layer["lac"].combine_chunks().take(pa.array(event_cells))
        if "lac" in layer.column_names
        else pa.nulls(len(events), pa.int64())
    )
    signalling = pa.table(
        {
            "msisdn": pc.binary_join_element_wise(MSISDN_PREFIX, events["user_id"], ""),
            "imsi": pa.nulls(len(events), pa.string()),
            "imei": pa.nulls(len(events), pa.string()),
            "event_time": events["ts"],
            "lac": lac.cast(pa.int64()),
            "cell_id": layer["cell_id"].combine_chunks().take(pa.array(event_cells)),
            "event_type": events["event_type"],
        }
    ).select(list(schema_for("signalling").field_names))

    by_type = pc.value_counts(signalling["event_type"]).to_pylist()
    summary = {
        "fixes_in": len(positions),
        "fixes_outside_layer": int(len(positions) - inside.sum()),
        "events_out": len(signalling),
        "events_by_type": {item["values"]: item["counts"] for item in by_type},
        "users": len(pc.unique(positions["user_id"])),
        "cells_used": len(np.unique(event_cells)),
        "virtual_layer": virtual,
        "layer": (
            f"virtual cells: H3 resolution {resolution} hexagons over {extent}"
            if cells is None
            else f"{len(layer)} given cells ({'virtual' if virtual else 'real'})"
        ),
    }
    logger.info(
        "GeoLife to signalling: %d fixes -> %d events, %d outside the cell layer",
        summary["fixes_in"],
        summary["events_out"],
        summary["fixes_outside_layer"],
    )
    return signalling, summary


def _events_of(fixes: pa.Table, periodic_min: float) -> pa.Table:
    """Return the fixes that emit an event, with their ``event_type``."""
    ts_type = fixes.schema.field("ts").type
    if not pa.types.is_timestamp(ts_type):
        raise SchemaError(
            f"positions column ts must hold timestamps; found {ts_type}; parse "
            "it (e.g. with pyarrow.compute.strptime) first"
        )
    ticks_per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    ticks_per_day = 86_400 * ticks_per_s[ts_type.unit]
    ticks = pc.local_timestamp(fixes["ts"]) if ts_type.tz else fixes["ts"]
    ticks = ticks.combine_chunks().cast(pa.int64()).to_numpy()
    user = pc.dictionary_encode(fixes["user_id"]).combine_chunks().indices
    codes = _signalling_events(
        user.to_numpy(zero_copy_only=False),
        ticks // ticks_per_day,
        fixes["cell"].to_numpy(),
        ticks,
        periodic_min * 60 * ticks_per_s[ts_type.unit],
    )
    emitted = codes > 0
    events = fixes.filter(pa.array(emitted))
    return events.append_column(
        "event_type", _EVENT_NAMES.take(pa.array(codes[emitted]))
    )
