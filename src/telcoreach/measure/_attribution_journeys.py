"""Customer journeys for attribution, held as flat arrays of touches.

A *journey* is the ordered list of channels (SMS, app push, WeChat ad,
outbound call...) that touched one person before they converted (bought the
offer) or gave up. Journeys arrive either one row per touch
(``user, ts, channel, converted, value``) or already aggregated, one row per
distinct path with its counts (``path;total_conversions;
total_conversion_value;total_null``, the format of the R and Python package
ChannelAttribution). Both become one :class:`Journeys`: the touches of all
journeys in one integer array, cut into journeys by an offsets array, with
the conversions, conversion value and non-conversions ("nulls") each journey
stands for. Every attribution model then works on these arrays with numpy.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from telcoreach.errors import DataSourceError, SchemaError

__all__ = ["PATH_COLUMNS", "TOUCH_COLUMNS", "Journeys", "read_journeys"]

logger = logging.getLogger(__name__)

#: Columns of the aggregated path format, with what each holds.
PATH_COLUMNS = {
    "path": "channels in touch order, separated by ' > '",
    "total_conversions": "journeys with this path that converted",
    "total_conversion_value": "summed value of those conversions (optional)",
    "total_null": "journeys with this path that did not convert (optional)",
}
#: Columns of the one-row-per-touch format, with what each holds.
TOUCH_COLUMNS = {
    "user": "subscriber token (never a raw phone number)",
    "ts": "time of the touch",
    "channel": "channel of the touch",
    "converted": "true on the touch at which the person converted",
    "value": "value of that conversion in yuan (optional)",
}
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, eq=False)
class Journeys:
    """Journeys as flat arrays: touches in order, cut into journeys by offsets.

    Attributes
    ----------
    channels : tuple of str
        Channel names, sorted; a touch holds the index of its channel here.
    offsets : ndarray of int64, shape (journeys + 1,)
        Journey ``i`` is ``touch_channel[offsets[i]:offsets[i + 1]]``. Every
        journey has at least one touch.
    touch_channel : ndarray of int32, shape (touches,)
        Channel index of every touch, journey after journey, in time order.
    conversions, nulls : ndarray of float64, shape (journeys,)
        How many converting and non-converting journeys each row stands for
        (1 and 0 for a journey read from touches).
    value : ndarray of float64, shape (journeys,)
        Summed value of the conversions of each row (0 where none converted).
    touch_age_s : ndarray of float64 or None, shape (touches,)
        Seconds from each touch to the last touch of its journey, known only
        for journeys read from touches (time decay needs it).
    """

    channels: tuple[str, ...]
    offsets: np.ndarray
    touch_channel: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray
    touch_age_s: np.ndarray | None = None

    @property
    def n_journeys(self) -> int:
        """Number of journey rows (distinct paths for aggregated input)."""
        return len(self.offsets) - 1

    @property
    def n_touches(self) -> int:
        """Number of touch rows (one per touch of each journey row)."""
        return len(self.touch_channel)

    @property
    def lengths(self) -> np.ndarray:
        """Touches per journey row."""
        return np.diff(self.offsets)

    @cached_property
    def journey_of_touch(self) -> np.ndarray:
        """Index of the journey row each touch belongs to."""
        return np.repeat(np.arange(self.n_journeys), self.lengths)

    @property
    def total_conversions(self) -> float:
        """Conversions of all journeys."""
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        """Conversion value of all journeys."""
        return float(self.value.sum())

    @property
    def people(self) -> float:
        """Journeys represented, converting or not (conversions + nulls)."""
        return float(self.conversions.sum() + self.nulls.sum())

    @property
    def touches_represented(self) -> float:
        """Touches represented, each path's length times its journeys."""
        weights = self.conversions + self.nulls
        return float((self.lengths * weights).sum())

    @classmethod
    def from_paths(
        cls,
        frame: pd.DataFrame,
        *,
        path: str = "path",
        conversions: str = "total_conversions",
        value: str | None = "total_conversion_value",
        nulls: str | None = "total_null",
        sep: str = ">",
    ) -> Journeys:
        """Return journeys from one row per path with its counts.

        Parameters
        ----------
        frame : DataFrame
            One row per path (a path may repeat; rows are kept as they are).
        path, conversions, value, nulls : str
            Column names; ``value`` and ``nulls`` may be absent (taken as 0).
        sep : str
            Channel separator; the channels around it are stripped of spaces
            and empty channels are dropped, as ChannelAttribution does.

        Returns
        -------
        Journeys

        Raises
        ------
        SchemaError
            If a required column is missing or a count is negative, not a
            number or not finite.
        """
        _require_columns(frame, [path, conversions], "aggregated path")
        n_rows = len(frame)
        conv = _non_negative(frame[conversions], conversions)
        val = (
            _non_negative(frame[value], value)
            if value is not None and value in frame.columns
            else np.zeros(n_rows)
        )
        null = (
            _non_negative(frame[nulls], nulls)
            if nulls is not None and nulls in frame.columns
            else np.zeros(n_rows)
        )

        separator = sep.strip() or sep
        paths = frame[path].astype("string").fillna("").reset_index(drop=True)
        exploded = paths.str.split(separator, regex=False).explode().str.strip()
        exploded = exploded[(exploded.fillna("") != "").to_numpy(dtype=bool)]
        lengths = np.bincount(exploded.index.to_numpy(), minlength=n_rows)

        names, codes = np.unique(exploded.to_numpy(dtype=str), return_inverse=True)
        return cls._build(
            names, codes, lengths, conv, val, null, touch_age_s=None, source="path"
        )

    @classmethod
    def from_touches(
        cls,
        frame: pd.DataFrame,
        *,
        user: str = "user",
        ts: str = "ts",
        channel: str = "channel",
        converted: str = "converted",
        value: str | None = "value",
    ) -> Journeys:
        """Return journeys from one row per touch.

        A person's touches are ordered by time; a touch marked converted ends
        a journey (its ``value`` is the conversion's value) and the next touch
        of the same person starts a new one. Touches after a person's last
        conversion form a journey that did not convert.

        Parameters
        ----------
        frame : DataFrame
            One row per touch.
        user, ts, channel, converted, value : str
            Column names; ``value`` may be absent (taken as 0). ``ts`` holds
            timestamps, ISO 8601 text or seconds since 1970 (UTC).

        Returns
        -------
        Journeys

        Raises
        ------
        SchemaError
            If a required column is missing, a timestamp cannot be read,
            ``converted`` is not a yes/no flag, or a value is negative.
        """
        _require_columns(frame, [user, ts, channel, converted], "one-row-per-touch")
        time_ns = _timestamps_ns(frame[ts], ts)
        did_convert = _flags(frame[converted], converted)
        val = (
            _non_negative(frame[value], value)
            if value is not None and value in frame.columns
            else np.zeros(len(frame))
        )
        channel_names = frame[channel].astype("string").str.strip().fillna("")
        keep = (channel_names != "").to_numpy(dtype=bool)
        if not keep.all():
            logger.warning("dropped %d touches without a channel", int((~keep).sum()))

        user_codes = pd.factorize(frame[user].to_numpy()[keep])[0]
        names, codes = np.unique(
            channel_names.to_numpy(dtype=str)[keep], return_inverse=True
        )
        time_ns, did_convert, val = time_ns[keep], did_convert[keep], val[keep]
        order = np.lexsort((time_ns, user_codes))
        user_codes, codes = user_codes[order], codes[order]
        time_ns, did_convert, val = time_ns[order], did_convert[order], val[order]

        # A journey starts at a person's first touch or right after a conversion.
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (user_codes[1:] != user_codes[:-1]) | did_convert[:-1]
        first_touch = np.flatnonzero(starts)
        last_touch = np.r_[first_touch[1:], len(order)] - 1
        lengths = np.diff(np.r_[first_touch, len(order)])

        conv = did_convert[last_touch].astype(np.float64)
        journey_value = np.where(did_convert[last_touch], val[last_touch], 0.0)
        end_ns = np.repeat(time_ns[last_touch], lengths)
        age_s = (end_ns - time_ns) / _NS_PER_S
        return cls._build(
            names,
            codes,
            lengths,
            conv,
            journey_value,
            1.0 - conv,
            touch_age_s=age_s,
            source="touch",
        )

    @classmethod
    def _build(
        cls,
        names: np.ndarray,
        codes: np.ndarray,
        lengths: np.ndarray,
        conversions: np.ndarray,
        value: np.ndarray,
        nulls: np.ndarray,
        *,
        touch_age_s: np.ndarray | None,
        source: str,
    ) -> Journeys:
        """Return journeys without empty rows, value kept only with conversions."""
        empty = lengths == 0
        if empty.any():
            logger.warning(
                "dropped %d %s rows without any channel (%.0f conversions)",
                int(empty.sum()),
                source,
                float(conversions[empty].sum()),
            )
        lengths, conversions = lengths[~empty], conversions[~empty]
        value, nulls = value[~empty], nulls[~empty]

        stray_value = (conversions == 0) & (value > 0)
        if stray_value.any():
            logger.warning(
                "ignored the value of %d rows without conversions",
                int(stray_value.sum()),
            )
            value = np.where(stray_value, 0.0, value)

        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        journeys = cls(
            channels=tuple(str(name) for name in names),
            offsets=offsets,
            touch_channel=np.asarray(codes, dtype=np.int32),
            conversions=np.asarray(conversions, dtype=np.float64),
            value=np.asarray(value, dtype=np.float64),
            nulls=np.asarray(nulls, dtype=np.float64),
            touch_age_s=touch_age_s,
        )
        logger.info(
            "journeys: %d %s rows, %d touches, %d channels, %.0f conversions",
            journeys.n_journeys,
            source,
            journeys.n_touches,
            len(journeys.channels),
            journeys.total_conversions,
        )
        return journeys


def read_journeys(path: str | Path) -> Journeys:
    """Return the journeys in a file of paths or of touches.

    The format is told by the columns: a ``path`` column means the aggregated
    path format (``path;total_conversions;total_conversion_value;total_null``,
    channels separated by ``>``), otherwise the file must hold one row per
    touch with ``user, ts, channel, converted`` and optionally ``value``.
    CSV files may be separated by ``,``, ``;``, tab or ``|``; a ``.parquet``
    file is read with pyarrow.

    Parameters
    ----------
    path : str or Path
        The journeys file.

    Returns
    -------
    Journeys

    Raises
    ------
    DataSourceError
        If the file is missing or cannot be parsed.
    SchemaError
        If its columns fit neither format or hold invalid values.

    Examples
    --------
    >>> journeys = read_journeys("channelattribution_Data.csv")  # doctest: +SKIP
    >>> len(journeys.channels)  # doctest: +SKIP
    12
    """
    file = Path(path)
    if not file.is_file():
        raise DataSourceError(
            f"expected a journeys file at {file}, found nothing there: give the "
            "path of a CSV or Parquet file of paths or of touches"
        )
    try:
        if file.suffix.lower() == ".parquet":
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file, sep=_delimiter(file), engine="pyarrow")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataSourceError(
            f"expected a readable CSV or Parquet journeys file, could not parse "
            f"{file}: {error}"
        ) from error

    frame.columns = [str(column).strip() for column in frame.columns]
    if "path" in frame.columns:
        return Journeys.from_paths(frame)
    if {"user", "channel"} <= set(frame.columns):
        return Journeys.from_touches(frame)
    raise SchemaError(
        f"expected the columns of aggregated paths ({', '.join(PATH_COLUMNS)}) or "
        f"of one row per touch ({', '.join(TOUCH_COLUMNS)}), found "
        f"{', '.join(frame.columns) or 'no columns'} in {file}: rename the "
        "columns to one of these layouts"
    )


def _delimiter(file: Path) -> str:
    """Return the field separator of a CSV file, sniffed from its header."""
    with file.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _require_columns(frame: pd.DataFrame, columns: list[str], layout: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise SchemaError(
            f"expected the {layout} columns {', '.join(columns)}, missing "
            f"{', '.join(missing)} (found {', '.join(map(str, frame.columns))}): "
            "rename the columns or pass their names"
        )


def _non_negative(column: pd.Series, name: str) -> np.ndarray:
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) & column.notna().to_numpy()
    numbers = np.where(column.notna().to_numpy(), numbers, 0.0)
    bad |= numbers < 0
    if bad.any():
        first = column.to_numpy()[np.flatnonzero(bad)[0]]
        raise SchemaError(
            f"expected finite numbers >= 0 in column {name!r}, found {int(bad.sum())} "
            f"other values (first: {first!r}): fix or drop those rows"
        )
    return numbers


def _flags(column: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return column.fillna(False).to_numpy(dtype=bool)
    text = column.astype("string").str.strip().str.lower().fillna("0")
    truthy = text.isin(["1", "1.0", "true", "t", "yes", "y"])
    falsy = text.isin(["0", "0.0", "false", "f", "no", "n", ""])
    bad = ~(truthy | falsy)
    if bad.any():
        first = column[bad.to_numpy()].iloc[0]
        raise SchemaError(
            f"expected a yes/no flag (1/0, true/false) in column {name!r}, found "
            f"{int(bad.sum())} other values (first: {first!r}): fix those rows"
        )
    return truthy.to_numpy(dtype=bool)


def _timestamps_ns(column: pd.Series, name: str) -> np.ndarray:
    try:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(
            column
        ):
            stamps = pd.to_datetime(column, unit="s", utc=True)
        elif pd.api.types.is_datetime64_any_dtype(column):
            stamps = pd.to_datetime(column, utc=True)
        else:
            stamps = pd.to_datetime(column, utc=True, format="ISO8601")
    except (ValueError, TypeError) as error:
        raise SchemaError(
            f"expected timestamps in column {name!r}, could not read them: {error}; "
            "write them as ISO 8601 (2024-05-01T09:30:00+08:00)"
        ) from error
    if stamps.isna().any():
        raise SchemaError(
            f"expected a timestamp on every touch in column {name!r}, found "
            f"{int(stamps.isna().sum())} empty: fill or drop those rows"
        )
    naive_utc = stamps.dt.tz_localize(None)
    return naive_utc.to_numpy(dtype="datetime64[ns]").astype(np.int64)
