"""Adapter for the UCI bank-marketing data set (Moro, Cortez & Rita, 2014).

A Portuguese bank called its customers between May 2008 and November 2010 to
sell a term deposit. Each row of ``bank-additional-full.csv`` is one customer's
last call of a campaign with the customer's attributes, the month and weekday
of the call, five national economic indicators and the outcome ``y``. The
adapter splits it into the two record kinds a carrier receives from an
enterprise partner: ``partner_customers`` (who the customer is) and
``campaign_outcomes`` (when and how the customer was contacted, and whether
they bought).

The data is licensed CC BY 4.0; cite Moro et al., Decision Support Systems
(2014), doi:10.1016/j.dss.2014.03.001.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from telcoreach._dates import MONTHS
from telcoreach.errors import ConfigError, DataSourceError, SchemaError
from telcoreach.schemas import RecordSchema, schema_for

__all__ = ["BANK_CAMPAIGN_ID", "read_bank_marketing"]

logger = logging.getLogger(__name__)

#: Campaign id given to every outcome row of the bank-marketing data.
BANK_CAMPAIGN_ID = "bank-term-deposit"

_FILES = {"additional": Path("4-bank-marketing") / "bank-additional-full.csv.gz"}
_FIRST_YEAR = 2008


# Source column -> partner_customers field, where the names differ.
_RENAMED = {
    "default": "credit_default",
    "emp.var.rate": "emp_var_rate",
    "cons.price.idx": "cons_price_idx",
    "cons.conf.idx": "cons_conf_idx",
    "nr.employed": "nr_employed",
}
_ARROW_TYPES = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}
# Read but not kept: duration leaks the outcome (it is known only once the
# call has ended) and the weekday has no field in either record kind.
_UNUSED = ("duration", "day_of_week")


def read_bank_marketing(
    data_dir: str | Path, variant: str = "additional"
) -> tuple[pa.Table, pa.Table]:
    """Return the bank-marketing calls as partner customers and campaign outcomes.

    Parameters
    ----------
    data_dir : str or Path
        Folder of the public data sets (the one holding ``4-bank-marketing``).
    variant : {"additional"}
        Which file to read: ``"additional"`` is ``bank-additional-full.csv.gz``
        (41,188 calls with the economic indicators).

    Returns
    -------
    partner_customers : pyarrow.Table
        One row per call with exactly the input fields of the
        ``partner_customers`` record kind, typed as declared.
    campaign_outcomes : pyarrow.Table
        The same rows, in the same order, with the input fields of the
        ``campaign_outcomes`` record kind.

    Raises
    ------
    ConfigError
        If ``variant`` is not a known variant.
    DataSourceError
        If the file is missing or cannot be parsed.
    SchemaError
        If the file lacks a column, or holds a month or outcome outside the
        documented values.

    Notes
    -----
    - ``msisdn`` is an opaque id ``bank-<n>`` where ``n`` is the 1-based data
      row number; the data set has no phone numbers and does not link calls of
      the same customer, so every row is a distinct customer.
    - ``duration`` is dropped: the call length is known only after the call,
      when the outcome is known too, so a model using it cannot be applied
      before contacting anyone.
    - ``contacted_at`` is approximate. The file gives the month but not the
      year or day; its rows are in time order from May 2008 to November 2010,
      so the year starts at 2008 and advances each time the month goes back
      (December to March), and the day is set to the 1st of the month.
    - ``channel`` is the source column ``contact`` (``cellular`` or
      ``telephone``); ``converted`` is ``y == "yes"``; every row has the
      campaign id ``bank-term-deposit``.
    - Missing categorical values are kept as the source's ``"unknown"``
      label, which the data dictionary describes as a possible class.

    Examples
    --------
    >>> customers, outcomes = read_bank_marketing("../shared/datasets")
    ... # doctest: +SKIP
    >>> customers.num_rows, outcomes.column("converted").to_pylist()[:2]
    ... # doctest: +SKIP
    (41188, [False, False])
    """
    if variant not in _FILES:
        raise ConfigError(
            f"unknown bank-marketing variant {variant!r}; expected one of "
            f"{', '.join(map(repr, _FILES))}"
        )
    path = Path(data_dir) / _FILES[variant]
    calls = _read_calls(path)

    customers_schema = schema_for("partner_customers")
    outcomes_schema = schema_for("campaign_outcomes")
    msisdn = _row_ids(calls.num_rows)
    customers = _customers(calls, msisdn, customers_schema)
    outcomes = _outcomes(calls, msisdn, outcomes_schema, path)

    logger.info(
        "read %d bank-marketing calls from %s: %d converted, %d columns dropped (%s)",
        calls.num_rows,
        path.name,
        pc.sum(outcomes.column("converted")).as_py() or 0,
        len(_UNUSED),
        ", ".join(_UNUSED),
    )
    return customers, outcomes


def _read_calls(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataSourceError(
            f"bank-marketing file not found at {path}; expected the UCI file "
            "bank-additional-full.csv.gz in <data_dir>/4-bank-marketing "
            "(see its SOURCES.md), or pass the right data_dir"
        )
    try:
        calls = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=";"))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataSourceError(
            f"cannot parse {path} as a ';'-separated CSV file: {exc}"
        ) from exc

    customers_fields = schema_for("partner_customers").field_names[1:]
    source_to_field = {name: _RENAMED.get(name, name) for name in calls.column_names}
    needed = {*customers_fields, "contact", "month", "y"}
    missing = sorted(needed - set(source_to_field.values()))
    if missing:
        raise SchemaError(
            f"{path.name} lacks the columns {', '.join(missing)}; found "
            f"{', '.join(calls.column_names)}. Is it the bank-additional-full "
            "file of the UCI bank-marketing data set?"
        )
    return calls.rename_columns([source_to_field[n] for n in calls.column_names])


def _row_ids(rows: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(1, rows + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise("bank-", numbers, "")


def _customers(calls: pa.Table, msisdn: pa.Array, schema: RecordSchema) -> pa.Table:
    columns = {"msisdn": msisdn}
    for field in schema.fields[1:]:
        columns[field.name] = calls.column(field.name).cast(_ARROW_TYPES[field.dtype])
    return pa.table(columns)


def _outcomes(
    calls: pa.Table, msisdn: pa.Array, schema: RecordSchema, path: Path
) -> pa.Table:
    outcome = calls.column("y")
    bad_outcome = pc.invert(pc.is_in(outcome, pa.array(["yes", "no"])))
    if pc.any(bad_outcome).as_py():
        found = pc.unique(pc.filter(outcome, bad_outcome)).to_pylist()
        raise SchemaError(
            f"{path.name}: column y must be 'yes' or 'no'; found {found[:5]}"
        )

    columns = {
        "msisdn": msisdn,
        "campaign_id": pa.array([BANK_CAMPAIGN_ID] * calls.num_rows, pa.string()),
        "contacted_at": _contact_months(calls.column("month"), path),
        "channel": calls.column("contact").cast(pa.string()),
        "converted": pc.equal(outcome, "yes"),
    }
    return pa.table({name: columns[name] for name in schema.field_names})


def _contact_months(month_names: pa.ChunkedArray, path: Path) -> pa.Array:
    """Return the first day of each call's month, the year inferred from row order."""
    month_index = pc.index_in(pc.utf8_lower(month_names), pa.array(MONTHS))
    if month_index.null_count:
        unknown = pc.filter(month_names, pc.is_null(month_index))
        raise SchemaError(
            f"{path.name}: column month must hold one of {', '.join(MONTHS)}; "
            f"found {pc.unique(unknown).to_pylist()[:5]}"
        )

    month0 = month_index.to_numpy().astype(np.int64)
    wrapped = np.concatenate([[0], np.cumsum(month0[1:] < month0[:-1])])
    months_since_epoch = (_FIRST_YEAR - 1970 + wrapped) * 12 + month0
    first_days = months_since_epoch.astype("datetime64[M]").astype("datetime64[us]")
    return pa.array(first_days, pa.timestamp("us"))
