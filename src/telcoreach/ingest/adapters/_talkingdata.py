"""Readers of the public TalkingData mobile-user demographics (China, 2016).

``gender_age_train.csv`` gives the gender and age of 74,645 anonymous
devices; ``phone_brand_device_model_insaid_subset.csv`` gives the brand and
model of 87,726 devices, covering all but 28 of them. Together they are the
only public source of how Chinese phone users split by age, gender and
handset, so they serve two purposes: a ``subscribers`` table for tests of
the pipeline on real values, and the distributions the city simulator
samples its subscribers from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telcoreach.ingest.adapters._beijing import find_public_file, read_public_csv
from telcoreach.schemas import schema_for

__all__ = [
    "TalkingDataDistributions",
    "age_band_of",
    "read_talkingdata",
    "talkingdata_distributions",
]

logger = logging.getLogger(__name__)

_FOLDER = "3-talkingdata-demographics"
_DEMOGRAPHICS = "gender_age_train.csv"
_DEVICES = "phone_brand_device_model_insaid_subset.csv"

#: Age bands of the ``subscribers`` kind, in order.
AGE_BANDS: tuple[str, ...] = schema_for("subscribers").field("age_band").allowed
#: Lowest age of each band of :data:`AGE_BANDS` after the first.
_BAND_LOWER_AGES = np.array([18, 25, 35, 45, 55])

_SUBSCRIBERS_SCHEMA = pa.schema(
    [
        ("msisdn", pa.string()),
        ("imsi", pa.string()),
        ("imei", pa.string()),
        ("age_band", pa.string()),
        ("gender", pa.string()),
        ("plan", pa.string()),
        ("device_brand", pa.string()),
        ("device_model", pa.string()),
        ("tenure_months", pa.int64()),
        ("consent_marketing", pa.bool_()),
        ("consent_profiling", pa.bool_()),
        ("opted_out", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class TalkingDataDistributions:
    """Frequencies of demographics and handsets among TalkingData devices.

    Attributes
    ----------
    age_gender : pyarrow.Table
        ``age_band, gender, devices, share``: one row per observed pair,
        ``share`` summing to 1.
    devices : pyarrow.Table
        ``device_brand, device_model, devices, share``: one row per observed
        handset model, most frequent first, ``share`` summing to 1.
    """

    age_gender: pa.Table
    devices: pa.Table


def age_band_of(age: np.ndarray) -> np.ndarray:
    """Return the age band (``<18``, ``18-24``... ``55+``) of each age in years."""
    bands = np.array(AGE_BANDS, dtype=object)
    return bands[np.searchsorted(_BAND_LOWER_AGES, np.asarray(age), side="right")]


def _read_joined(data_dir: str | Path) -> pa.Table:
    """Return demographics left-joined with brand and model, in file order."""
    demographics = read_public_csv(
        find_public_file(data_dir, _FOLDER, _DEMOGRAPHICS),
        {"device_id": pa.int64(), "gender": pa.string(), "age": pa.int64()},
    )
    devices = read_public_csv(
        find_public_file(data_dir, _FOLDER, _DEVICES),
        {
            "device_id": pa.int64(),
            "phone_brand": pa.string(),
            "device_model": pa.string(),
        },
    )
    # A device listed twice would duplicate subscribers in the join.
    devices = devices.group_by("device_id", use_threads=False).aggregate(
        [("phone_brand", "first"), ("device_model", "first")]
    )
    devices = devices.rename_columns(["device_id", "phone_brand", "device_model"])

    order = pa.array(np.arange(demographics.num_rows))
    joined = (
        demographics.append_column("row", order)
        .join(devices, "device_id", join_type="left outer", use_threads=False)
        .sort_by("row")
    )
    unmatched = joined.num_rows - pc.count(joined["phone_brand"]).as_py()
    logger.info(
        "TalkingData: %d devices with demographics, %d without a known handset",
        joined.num_rows,
        unmatched,
    )
    return joined


def read_talkingdata(data_dir: str | Path) -> pa.Table:
    """Return the TalkingData devices as a ``subscribers`` table.

    Each device with a gender and age becomes one subscriber whose
    ``msisdn`` is the opaque string ``td-<device_id>`` (the public data has
    no phone numbers); IMSI, IMEI, plan, tenure and ``opted_out`` are null.
    Both consent flags are false: nobody behind public data consented to
    being profiled or contacted, so every consent check downstream must
    exclude them.

    Parameters
    ----------
    data_dir : str or Path
        Root of the public data sets.

    Returns
    -------
    pyarrow.Table
        ``subscribers`` kind, 74,645 rows in the order of
        ``gender_age_train.csv``.

    Raises
    ------
    DataSourceError
        If a file is missing.
    SchemaError
        If a column does not parse.
    """
    joined = _read_joined(data_dir)
    count = joined.num_rows
    msisdn = pc.binary_join_element_wise(
        "td-", joined["device_id"].cast(pa.string()), ""
    )
    age_band = age_band_of(joined["age"].to_numpy())
    return pa.table(
        {
            "msisdn": msisdn,
            "imsi": pa.nulls(count, pa.string()),
            "imei": pa.nulls(count, pa.string()),
            "age_band": pa.array(age_band, pa.string()),
            "gender": joined["gender"],
            "plan": pa.nulls(count, pa.string()),
            "device_brand": joined["phone_brand"],
            "device_model": joined["device_model"],
            "tenure_months": pa.nulls(count, pa.int64()),
            "consent_marketing": pa.array(np.zeros(count, bool)),
            "consent_profiling": pa.array(np.zeros(count, bool)),
            "opted_out": pa.nulls(count, pa.bool_()),
        },
        schema=_SUBSCRIBERS_SCHEMA,
    )


def _shares(table: pa.Table, keys: list[str]) -> pa.Table:
    """Return counts and shares of each ``keys`` combination, largest first."""
    counts = table.group_by(keys, use_threads=False).aggregate([([], "count_all")])
    counts = counts.rename_columns([*keys, "devices"])
    counts = counts.sort_by(
        [("devices", "descending")] + [(k, "ascending") for k in keys]
    )
    total = pc.sum(counts["devices"]).as_py()
    share = pc.divide(counts["devices"].cast(pa.float64()), total)
    return counts.select([*keys, "devices"]).append_column("share", share)


def talkingdata_distributions(data_dir: str | Path) -> TalkingDataDistributions:
    """Return the age-band x gender and handset frequencies of TalkingData.

    Handset frequencies count only devices whose brand and model are known.
    Ties are ordered by name, so the result is the same on every run.

    Parameters
    ----------
    data_dir : str or Path
        Root of the public data sets.

    Returns
    -------
    TalkingDataDistributions
        What the city simulator samples demographics and handsets from.

    Raises
    ------
    DataSourceError
        If a file is missing.
    """
    subscribers = read_talkingdata(data_dir)
    age_gender = _shares(
        subscribers.select(["age_band", "gender"]), ["age_band", "gender"]
    )
    known = subscribers.filter(pc.is_valid(subscribers["device_model"]))
    devices = _shares(
        known.select(["device_brand", "device_model"]),
        ["device_brand", "device_model"],
    )
    return TalkingDataDistributions(age_gender=age_gender, devices=devices)
