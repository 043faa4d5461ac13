"""Stay points: the places where a person stopped, found in a stream of positions.

A stay point is a run of consecutive position fixes of one user that stay within
``dist_m`` of the run's first fix (its *anchor*) for at least ``time_min``
minutes. The rules are those of the sliding-window method of Li et al. (2008) as
implemented by trackintel 1.4 (``generate_staypoints(method="sliding",
distance_metric="haversine", include_last=False)``), so results can be checked
against that library fix for fix; only the reported end time differs (see
``detect_staypoints``). ``docs/staypoints.md`` explains the rules with examples.

The sequential scan runs in a numba kernel; everything around it (encoding,
sorting, centroids, CSV parsing) is vectorised with numpy and pyarrow.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numba import njit

from telcoreach.errors import ConfigError, DataSourceError, SchemaError

__all__ = ["detect_staypoints", "staypoints_csv"]

logger = logging.getLogger(__name__)

#: Sphere radius trackintel's haversine uses; kept identical so that a fix
#: lying exactly at ``dist_m`` is classified the same way by both libraries.
_SPHERE_RADIUS_M = 6_371_000.0

_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

_POSITION_COLUMNS = ("user_id", "ts", "lat", "lon")

_RESULT_SCHEMA_FIELDS = (
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("n_points", pa.int64()),
    ("first_row", pa.int64()),
    ("last_row", pa.int64()),
)


@njit(cache=True)
def _reaches(lat1, lon1, cos_lat1, lat2, lon2, limits):
    """Whether two points (radians) are ``dist_m`` or more apart (trackintel's rule).

    trackintel computes the great-circle distance by the spherical law of
    cosines, ``R * acos(x)``, and compares it with ``dist_m``. The same answer
    comes cheaper: for nearby points the flat-earth value ``q`` is within 0.6 %
    of ``2 * (1 - x)``, so outside a 2 % band around the threshold (1 % in
    distance) ``q`` decides; otherwise ``x`` is compared with the threshold's
    cosine, and only within rounding of it is the arc cosine taken. ``limits`` holds
    ``(dist_m, cos(dist_m / R), 2 * (1 - cos(dist_m / R)), use_q)``.
    """
    dist_m, cos_threshold, q_threshold, use_q = limits
    d_lat = lat2 - lat1
    d_lon = lon2 - lon1
    if use_q and abs(d_lat) <= 1e-3 and abs(d_lon) <= 1e-3 and abs(lat1) <= 1.4:
        q = d_lat * d_lat + cos_lat1 * cos_lat1 * d_lon * d_lon
        if q < 0.98 * q_threshold:
            return False
        if q > 1.02 * q_threshold:
            return True
    x = math.cos(lat1 - lat2) - cos_lat1 * math.cos(lat2) * (1 - math.cos(lon1 - lon2))
    if x < cos_threshold - 1e-12:
        return True
    if x > cos_threshold + 1e-12:
        return False
    return _SPHERE_RADIUS_M * math.acos(x) >= dist_m


@njit(cache=True)
def _is_repeat(user, ts, lat, lon, i):
    """Whether fix ``i`` repeats an earlier fix of the same user, time and place."""
    j = i - 1
    while j >= 0 and user[j] == user[i] and ts[j] == ts[i]:
        if lat[j] == lat[i] and lon[j] == lon[i]:
            return True
        j -= 1
    return False


@njit(cache=True)
def _grow(values, size):
    grown = np.empty((size, values.shape[1]), values.dtype)
    grown[: values.shape[0]] = values
    return grown


@njit(cache=True)
def _sliding_staypoints(user, ts, lat, lon, dist_m, time_min, gap_min, ticks_per_min):
    """Scan fixes sorted by (user, time) and return the stay points found.

    Parameters
    ----------
    user : int64 array
        User code of each fix; equal codes are consecutive.
    ts : int64 array
        Time of each fix in ticks (``ticks_per_min`` ticks to the minute),
        non-decreasing within a user.
    lat, lon : float64 arrays
        Position of each fix in WGS-84 degrees.
    dist_m, time_min, gap_min : float
        Radius around the anchor, minimum duration, longest tolerated gap.
    ticks_per_min : float
        Ticks in one minute (60 for seconds).

    Returns
    -------
    bounds : int64 array (k, 4)
        Per stay: index of its anchor (first fix), of its last fix inside, of
        the first fix outside it, and the number of fixes inside (repeated
        fixes not counted).
    sums : float64 array (k, 2)
        Per stay: sums of latitude and longitude of its fixes.
    repeats : int
        Fixes skipped because an earlier fix had the same user, time and place.
    """
    n = ts.shape[0]
    capacity = max(16, n // 64)
    bounds = np.empty((capacity, 4), np.int64)
    sums = np.empty((capacity, 2), np.float64)
    min_stay_ticks = time_min * ticks_per_min
    max_gap_ticks = gap_min * ticks_per_min
    found = 0
    repeats = 0
    if n == 0:
        return bounds[:0], sums[:0], repeats

    # Radians once per fix, as trackintel's math.radians; cosine of the
    # anchor's latitude once per anchor.
    lat_rad = np.empty(n)
    lon_rad = np.empty(n)
    for i in range(n):
        lat_rad[i] = math.radians(lat[i])
        lon_rad[i] = math.radians(lon[i])
    angle = min(dist_m / _SPHERE_RADIUS_M, math.pi)
    # The flat-earth shortcut needs the threshold well above rounding of x.
    limits = (dist_m, math.cos(angle), 4 * math.sin(angle / 2) ** 2, dist_m >= 10)
    anchor = 0
    cos_lat_anchor = math.cos(lat_rad[0])
    previous = 0
    sum_lat = lat[0]
    sum_lon = lon[0]
    count = 1
    for i in range(1, n):
        if user[i] != user[previous]:
            anchor = previous = i
            cos_lat_anchor = math.cos(lat_rad[i])
            sum_lat, sum_lon, count = lat[i], lon[i], 1
            continue
        if ts[i] == ts[previous] and _is_repeat(user, ts, lat, lon, i):
            repeats += 1
            continue

        last_inside = previous
        previous = i
        if ts[i] - ts[last_inside] > max_gap_ticks:
            # A long silence voids the current candidate: nobody saw the stay end.
            anchor = i
            cos_lat_anchor = math.cos(lat_rad[i])
            sum_lat, sum_lon, count = lat[i], lon[i], 1
            continue

        reaches = _reaches(
            lat_rad[anchor],
            lon_rad[anchor],
            cos_lat_anchor,
            lat_rad[i],
            lon_rad[i],
            limits,
        )
        if not reaches:
            sum_lat += lat[i]
            sum_lon += lon[i]
            count += 1
            continue

        if ts[i] - ts[anchor] >= min_stay_ticks:
            if found == bounds.shape[0]:
                bounds = _grow(bounds, 2 * found)
                sums = _grow(sums, 2 * found)
            bounds[found, 0] = anchor
            bounds[found, 1] = last_inside
            bounds[found, 2] = i
            bounds[found, 3] = count
            sums[found, 0] = sum_lat
            sums[found, 1] = sum_lon
            found += 1
        anchor = i
        cos_lat_anchor = math.cos(lat_rad[i])
        sum_lat, sum_lon, count = lat[i], lon[i], 1

    return bounds[:found], sums[:found], repeats


def _encode_users(user: Any) -> tuple[np.ndarray, pa.Array]:
    """Return (code per fix, user id of each code), codes in order of appearance."""
    users = user if isinstance(user, pa.ChunkedArray | pa.Array) else pa.array(user)
    if isinstance(users, pa.ChunkedArray):
        users = users.combine_chunks()
    if pa.types.is_null(users.type):
        users = users.cast(pa.string())
    if users.null_count:
        raise SchemaError(
            f"user ids must not be null; found {users.null_count} null user ids; "
            "drop or fill them before detecting stay points"
        )
    if pa.types.is_dictionary(users.type):
        users = users.dictionary_decode()

    # Fixes usually come grouped by user: then comparing neighbours is enough,
    # and much cheaper than hashing every id.
    n = len(users)
    changes = pc.not_equal(users.slice(1), users.slice(0, max(n - 1, 0)))
    run_starts = np.flatnonzero(
        np.concatenate([[n > 0], changes.to_numpy(zero_copy_only=False)])
    )
    run_users = users.take(pa.array(run_starts, pa.int64()))
    if len(run_users) <= n // 4 and len(pc.unique(run_users)) == len(run_users):
        run_lengths = np.diff(np.append(run_starts, n))
        return np.repeat(np.arange(len(run_users)), run_lengths), run_users

    encoded = pc.dictionary_encode(users)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), (
        encoded.dictionary
    )


def _writable(values: np.ndarray) -> np.ndarray:
    """Return ``values`` as a writable array (copied if read-only).

    numba compiles a kernel once per array type, and read-only arrays (zero-copy
    views of Arrow memory) are a type of their own.
    """
    return values if values.flags.writeable else values.copy()


def _time_ticks(ts: Any) -> tuple[np.ndarray, float, pa.DataType]:
    """Return (int64 ticks, ticks per minute, type to report times in)."""
    times = ts if isinstance(ts, pa.ChunkedArray | pa.Array) else pa.array(ts)
    if isinstance(times, pa.ChunkedArray):
        times = times.combine_chunks()
    if times.null_count:
        raise SchemaError(
            f"fix times must not be null; found {times.null_count} null times; "
            "drop those fixes before detecting stay points"
        )
    if pa.types.is_timestamp(times.type):
        ticks_per_min = 60.0 * _TICKS_PER_SECOND[times.type.unit]
        return _writable(times.cast(pa.int64()).to_numpy()), ticks_per_min, times.type
    if pa.types.is_integer(times.type):
        return _writable(times.cast(pa.int64()).to_numpy()), 60.0, pa.int64()
    raise SchemaError(
        "fix times must be timestamps or integer epoch seconds; found values of "
        f"type {times.type}; convert them (e.g. pandas.to_datetime) first"
    )


def _coordinates(values: Any, name: str, limit: float, n: int) -> np.ndarray:
    """Return ``values`` as float64 degrees, checking length and range."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.to_numpy(zero_copy_only=False)
    degrees = _writable(np.ascontiguousarray(values, dtype=np.float64))
    if degrees.shape != (n,):
        raise SchemaError(
            f"{name} must have one value per fix; expected {n} values, "
            f"found shape {degrees.shape}"
        )
    bad = np.flatnonzero(~(np.abs(degrees) <= limit))
    if bad.size:
        raise SchemaError(
            f"{name} must be a finite WGS-84 angle within ±{limit:g} degrees; "
            f"found {degrees[bad[0]]!r} at position {bad[0]} "
            f"({bad.size} bad values in all)"
        )
    return degrees


def _check_parameters(dist_m: float, time_min: float, gap_min: float) -> None:
    for name, value in (("dist_m", dist_m), ("time_min", time_min)):
        if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
            raise ConfigError(
                f"stay points: {name} must be a finite number >= 0; got {value!r}"
            )
    if not (isinstance(gap_min, int | float) and gap_min > 0):
        raise ConfigError(
            f"stay points: gap_min must be a number > 0 (minutes; use "
            f"float('inf') to ignore gaps); got {gap_min!r}"
        )


def _sort_order(codes: np.ndarray, ticks: np.ndarray) -> np.ndarray | None:
    """Return a stable (user, time) order, or None when already in that order."""
    if codes.size < 2:
        return None
    same_user = codes[1:] == codes[:-1]
    if np.all((codes[1:] > codes[:-1]) | (same_user & (ticks[1:] >= ticks[:-1]))):
        return None
    if np.all(ticks[1:] >= ticks[:-1]):
        # Time order across users, the usual order of carrier files.
        return _counting_order(codes, int(codes.max()) + 1)
    span = int(ticks.max()) - int(ticks.min())
    time_bits = span.bit_length()
    if time_bits + int(codes.max()).bit_length() > 62:
        return np.lexsort((ticks, codes))
    keys = (codes << time_bits) | (ticks - ticks.min())
    return _radix_order(keys, time_bits + int(codes.max()).bit_length())


@njit(cache=True)
def _gather(order, codes, ticks, lat, lon):
    """Return the four fix arrays taken in ``order``, in one pass."""
    n = order.shape[0]
    codes_out = np.empty(n, codes.dtype)
    ticks_out = np.empty(n, ticks.dtype)
    lat_out = np.empty(n, lat.dtype)
    lon_out = np.empty(n, lon.dtype)
    for i in range(n):
        row = order[i]
        codes_out[i] = codes[row]
        ticks_out[i] = ticks[row]
        lat_out[i] = lat[row]
        lon_out[i] = lon[row]
    return codes_out, ticks_out, lat_out, lon_out


@njit(cache=True)
def _counting_order(codes, n_codes):
    """Return the stable order of ``codes`` (integers in ``[0, n_codes)``)."""
    starts = np.zeros(n_codes + 1, np.int64)
    for code in codes:
        starts[code + 1] += 1
    for code in range(n_codes):
        starts[code + 1] += starts[code]
    order = np.empty(codes.shape[0], np.int64)
    for i in range(codes.shape[0]):
        order[starts[codes[i]]] = i
        starts[codes[i]] += 1
    return order


@njit(cache=True)
def _radix_order(keys, key_bits):
    """Return the stable ascending order of non-negative int64 ``keys`` (LSD radix)."""
    n = keys.shape[0]
    order = np.arange(n)
    sorted_keys = keys.copy()
    order_buffer = np.empty(n, np.int64)
    keys_buffer = np.empty(n, np.int64)
    shift = 0
    while shift < key_bits:
        counts = np.zeros(2049, np.int64)
        for i in range(n):
            counts[((sorted_keys[i] >> shift) & 2047) + 1] += 1
        for digit in range(2048):
            counts[digit + 1] += counts[digit]
        for i in range(n):
            digit = (sorted_keys[i] >> shift) & 2047
            order_buffer[counts[digit]] = order[i]
            keys_buffer[counts[digit]] = sorted_keys[i]
            counts[digit] += 1
        order, order_buffer = order_buffer, order
        sorted_keys, keys_buffer = keys_buffer, sorted_keys
        shift += 11
    return order


def _distinct_centroids(
    stay_of_fix: np.ndarray, lat: np.ndarray, lon: np.ndarray, n_stays: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-stay mean latitude/longitude over distinct coordinates."""
    inside = stay_of_fix >= 0
    distinct = (
        pa.table({"stay": stay_of_fix[inside], "lat": lat[inside], "lon": lon[inside]})
        .group_by(["stay", "lat", "lon"])
        .aggregate([])
        .group_by("stay")
        .aggregate([("lat", "mean"), ("lon", "mean")])
        .sort_by("stay")
    )
    if len(distinct) != n_stays:
        raise RuntimeError("every stay point must contain at least one fix")
    return distinct["lat_mean"].to_numpy(), distinct["lon_mean"].to_numpy()


def _empty_result(user_type: pa.DataType, time_type: pa.DataType) -> pa.Table:
    fields = [("user_id", user_type), ("started_at", time_type)]
    fields += [("finished_at", time_type), *_RESULT_SCHEMA_FIELDS]
    return pa.schema(fields).empty_table()


def detect_staypoints(
    user: Any,
    ts: Any,
    lat: Any,
    lon: Any,
    dist_m: float = 100,
    time_min: float = 5,
    gap_min: float = 15,
    *,
    centroid: Literal["mean", "distinct"] = "mean",
) -> pa.Table:
    """Return the stay points of each user, one row per stay, by user then time.

    Fixes may come in any order; they are sorted by (user, time) here, keeping
    the input order of fixes with equal times. A fix that repeats an earlier
    fix of the same user, time and place is ignored.

    Parameters
    ----------
    user : array-like
        User id of each fix (strings or integers).
    ts : array-like
        Time of each fix: timestamps (numpy ``datetime64``, pandas or pyarrow
        timestamps, any unit and time zone) or integer epoch seconds.
    lat, lon : array-like of float
        Position of each fix, WGS-84 degrees.
    dist_m : float, default 100
        A stay ends at the first fix at ``dist_m`` metres or more from its
        anchor (its first fix).
    time_min : float, default 5
        Shortest stay in minutes, counted from the anchor to the first fix
        outside the stay.
    gap_min : float, default 15
        Longest silence in minutes between consecutive fixes; a longer gap
        discards the stay in progress and starts a new one at the next fix.
    centroid : {"mean", "distinct"}, default "mean"
        Position reported for a stay: the mean of the latitudes and longitudes
        of its fixes (each fix counts once, so where the person lingered
        weighs more), or the mean over distinct coordinates, which is what
        trackintel reports.

    Returns
    -------
    pyarrow.Table
        Columns ``user_id`` (type of ``user``), ``started_at`` (time of the
        anchor), ``finished_at`` (time of the last fix inside the stay),
        ``lat``, ``lon`` (centroid), ``n_points`` (fixes inside),
        ``first_row`` and ``last_row`` (0-based positions in the input of the
        anchor and of the last fix inside). Times have the type of ``ts``.

    Raises
    ------
    SchemaError
        If inputs have different lengths, null values, coordinates out of
        range or times that are neither timestamps nor integers.
    ConfigError
        If a threshold is negative or not a number.

    Notes
    -----
    The rules follow trackintel 1.4's sliding method: distances are haversine
    (law of cosines on a 6,371 km sphere), a stay must last ``time_min`` up to
    the first fix outside it, a gap longer than ``gap_min`` voids the stay in
    progress, and the last stay of each user, never left, is not reported
    (``include_last=False``). trackintel reports the *time of the first fix
    outside* as ``finished_at``; telcoreach reports the *last fix inside*,
    because that is the last moment the person is known to have been there. A
    stay can therefore show ``finished_at - started_at`` below ``time_min``
    (by less than ``gap_min``) when the fixes thin out before the person left.

    Examples
    --------
    >>> import numpy as np
    >>> minutes = np.array([0, 4, 8, 12, 16])
    >>> table = detect_staypoints(
    ...     ["a"] * 5, minutes * 60, [40.0, 40.0, 40.0, 40.01, 40.02],
    ...     [116.3] * 5, dist_m=100, time_min=5, gap_min=15,
    ... )
    >>> table.select(["started_at", "finished_at", "n_points"]).to_pylist()
    [{'started_at': 0, 'finished_at': 480, 'n_points': 3}]
    """
    _check_parameters(dist_m, time_min, gap_min)
    if centroid not in ("mean", "distinct"):
        raise ConfigError(
            f"stay points: centroid must be 'mean' or 'distinct'; got {centroid!r}"
        )
    codes, user_ids = _encode_users(user)
    ticks, ticks_per_min, time_type = _time_ticks(ts)
    if ticks.shape != codes.shape:
        raise SchemaError(
            f"user and ts must have one value per fix; found {codes.size} user "
            f"ids and {ticks.size} times"
        )
    lat = _coordinates(lat, "lat", 90, codes.size)
    lon = _coordinates(lon, "lon", 180, codes.size)

    order = _sort_order(codes, ticks)
    if order is not None:
        codes, ticks, lat, lon = _gather(order, codes, ticks, lat, lon)
    bounds, sums, repeats = _sliding_staypoints(
        codes,
        ticks,
        lat,
        lon,
        float(dist_m),
        float(time_min),
        float(gap_min),
        ticks_per_min,
    )
    if repeats:
        logger.info("stay points: ignored %d repeated fixes", repeats)
    if len(bounds) == 0:
        return _empty_result(user_ids.type, time_type)

    first, last, n_points = bounds[:, 0], bounds[:, 1], bounds[:, 3]
    if centroid == "mean":
        centre_lat, centre_lon = sums[:, 0] / n_points, sums[:, 1] / n_points
    else:
        stay_of_fix = _stay_of_fix(first, bounds[:, 2], codes.size)
        centre_lat, centre_lon = _distinct_centroids(stay_of_fix, lat, lon, len(bounds))
    rows_of_first = first if order is None else order[first]
    rows_of_last = last if order is None else order[last]
    stays = pa.table(
        {
            "user_id": user_ids.take(pa.array(codes[first])),
            "started_at": pa.array(ticks[first]).cast(time_type),
            "finished_at": pa.array(ticks[last]).cast(time_type),
            "lat": centre_lat,
            "lon": centre_lon,
            "n_points": n_points,
            "first_row": rows_of_first,
            "last_row": rows_of_last,
        }
    )
    # Stays are in time order within a user; the sort is stable.
    return stays.sort_by("user_id")


def _stay_of_fix(first: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Return the stay index of each fix (sorted order), -1 outside every stay."""
    position = np.arange(n)
    stay = np.searchsorted(first, position, side="right") - 1
    inside = stay >= 0
    inside[inside] = position[inside] < end[stay[inside]]
    return np.where(inside, stay, -1)


_EPOCH = re.compile(r"^\s*[+-]?\d+\s*$")
_ISO_WITH_ZONE = re.compile(r"(Z|[+-]\d{2}(:?\d{2})?)\s*$")


def _line_of(row: int) -> int:
    """Return the CSV line number of data row ``row`` (line 1 is the header)."""
    return row + 2


def _first_failing_row(values: pa.Array, target: pa.DataType) -> int:
    """Return the first row whose value cannot be cast to ``target`` (bisection)."""
    offset, length = 0, len(values)
    while length > 1:
        half = length // 2
        try:
            values.slice(offset, half).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            length = half
        else:
            offset, length = offset + half, length - half
    return offset


def _parse_column(
    path: Path, values: pa.Array, name: str, target: pa.DataType, expected: str
) -> pa.Array:
    """Cast a text column to ``target``, naming the first bad value on failure."""
    if values.null_count:
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise SchemaError(
            f"{path}: line {_line_of(row)}: column {name!r} is empty; expected "
            f"{expected}; fill or drop that row"
        )
    try:
        return values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = _first_failing_row(values, target)
    raise SchemaError(
        f"{path}: line {_line_of(row)}: column {name!r} has {values[row].as_py()!r}; "
        f"expected {expected}; fix that value"
    )


def _parse_times(path: Path, values: pa.Array) -> pa.Array:
    """Parse the ``ts`` column: epoch seconds, or ISO 8601 with or without zone."""
    sample = values[0].as_py() if len(values) and values[0].is_valid else ""
    if _EPOCH.match(sample):
        return _parse_column(
            path,
            pc.utf8_trim_whitespace(values),
            "ts",
            pa.int64(),
            "integer epoch seconds like 1224741185 (the format of the first row)",
        )
    if _ISO_WITH_ZONE.search(sample):
        return _parse_column(
            path,
            values,
            "ts",
            pa.timestamp("us", tz="UTC"),
            "an ISO 8601 time with a zone like 2008-10-23T13:53:05+08:00 (the "
            "format of the first row)",
        )
    return _parse_column(
        path,
        values,
        "ts",
        pa.timestamp("us"),
        "an ISO 8601 time like 2008-10-23 13:53:05 (the format of the first row)",
    )


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except OSError as error:
        raise DataSourceError(
            f"cannot read positions file {path}: {error.strerror}; check the path"
        ) from error


def _read_positions_csv(path: Path) -> pa.Table:
    """Read and type a ``user_id,ts,lat,lon`` CSV, raising SchemaError on bad data."""
    header = [name.strip() for name in _read_header(path)]
    for name in _POSITION_COLUMNS:
        if name not in header:
            raise SchemaError(
                f"{path}: line 1: no column {name!r}; expected a header with "
                f"{','.join(_POSITION_COLUMNS)}; found {','.join(header) or 'nothing'}"
            )
    try:
        text = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_POSITION_COLUMNS),
                column_types={name: pa.string() for name in _POSITION_COLUMNS},
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as error:
        raise SchemaError(
            f"{path}: not a readable CSV of positions ({error}); expected "
            f"comma-separated columns {','.join(_POSITION_COLUMNS)}"
        ) from error
    text = text.combine_chunks()
    columns = {
        name: text[name].chunk(0)
        if text[name].num_chunks
        else pa.array([], pa.string())
        for name in _POSITION_COLUMNS
    }

    user_id = columns["user_id"]
    if user_id.null_count:
        row = int(np.flatnonzero(user_id.is_null().to_numpy(zero_copy_only=False))[0])
        raise SchemaError(
            f"{path}: line {_line_of(row)}: column 'user_id' is empty; expected "
            "a user id; fill or drop that row"
        )
    positions = {"user_id": user_id, "ts": _parse_times(path, columns["ts"])}
    for name, limit in (("lat", 90), ("lon", 180)):
        expected = f"a decimal number of degrees within ±{limit}"
        degrees = _parse_column(path, columns[name], name, pa.float64(), expected)
        values = degrees.to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~(np.abs(values) <= limit))
        if bad.size:
            row = int(bad[0])
            raise SchemaError(
                f"{path}: line {_line_of(row)}: column {name!r} has "
                f"{columns[name][row].as_py()!r}; expected {expected}; fix that value"
            )
        positions[name] = degrees
    return pa.table(positions)


def _whole_seconds(times: pa.Array) -> pa.Array:
    """Return times as second-resolution timestamps when no precision is lost."""
    if pa.types.is_integer(times.type):
        return times.cast(pa.timestamp("s", tz="UTC"))
    try:
        return times.cast(pa.timestamp("s", tz=times.type.tz))
    except pa.ArrowInvalid:
        return times


def staypoints_csv(
    path: str | Path,
    out: str | Path,
    dist_m: float = 100,
    time_min: float = 5,
    gap_min: float = 15,
) -> dict[str, Any]:
    """Detect stay points in a positions CSV and write them to ``out``.

    The input has a header with at least ``user_id,ts,lat,lon`` (any order,
    other columns ignored). ``ts`` is either integer epoch seconds (read as
    UTC) or ISO 8601 text; the first row decides which, and all rows must
    follow it. Rows need not be sorted. The output CSV has one stay point per
    row: ``user_id,started_at,finished_at,lat,lon,n_points`` ordered by user
    then time, with times in ISO 8601 (UTC, marked ``Z``, when the input was
    epoch seconds or carried a zone; as given otherwise).

    Parameters
    ----------
    path : str or Path
        Positions CSV.
    out : str or Path
        Stay points CSV to write (its folder must exist).
    dist_m, time_min, gap_min : float
        Thresholds, see :func:`detect_staypoints`.

    Returns
    -------
    dict
        ``positions_read``, ``users``, ``staypoints``, ``seconds`` (wall time)
        and ``output`` (path written).

    Raises
    ------
    SchemaError
        If a column is missing or a value cannot be parsed; the message gives
        the line number, the value found and the format expected.
    DataSourceError
        If the file cannot be read.
    """
    started = time.perf_counter()
    path, out = Path(path), Path(out)
    positions = _read_positions_csv(path)
    times = _whole_seconds(positions["ts"])
    stays = detect_staypoints(
        positions["user_id"],
        times,
        positions["lat"],
        positions["lon"],
        dist_m=dist_m,
        time_min=time_min,
        gap_min=gap_min,
    ).drop_columns(["first_row", "last_row"])
    try:
        pacsv.write_csv(stays, out)
    except (OSError, pa.ArrowIOError) as error:
        raise DataSourceError(
            f"cannot write stay points to {out}: {error}; check the folder exists "
            "and is writable"
        ) from error

    summary = {
        "positions_read": len(positions),
        "users": len(pc.unique(positions["user_id"])),
        "staypoints": len(stays),
        "seconds": round(time.perf_counter() - started, 3),
        "output": str(out),
    }
    logger.info(
        "stay points: %d positions of %d users -> %d stay points in %.2f s",
        summary["positions_read"],
        summary["users"],
        summary["staypoints"],
        summary["seconds"],
    )
    return summary
