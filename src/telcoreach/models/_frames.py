"""Build a training frame from partner customers and campaign outcomes."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from telcoreach._dates import MONTHS
from telcoreach.errors import ModelError

__all__ = ["campaign_training_frame"]


def campaign_training_frame(
    customers: pd.DataFrame | pa.Table, outcomes: pd.DataFrame | pa.Table
) -> pd.DataFrame:
    """Return one row per campaign contact: the customer's attributes and the outcome.

    Parameters
    ----------
    customers : pandas.DataFrame or pyarrow.Table
        ``partner_customers`` rows (or any per-subscriber attributes), keyed by
        ``subscriber`` in the lake or ``msisdn`` straight from an adapter.
    outcomes : pandas.DataFrame or pyarrow.Table
        ``campaign_outcomes`` rows with the same key column.

    Returns
    -------
    pandas.DataFrame
        The customer columns plus ``campaign_id``, ``channel``,
        ``contact_month`` (``"jan"`` ... ``"dec"``, derived from
        ``contacted_at``, as the month of a call is known before it is made)
        and ``converted``; contacts of unknown customers are left out.

    Raises
    ------
    ModelError
        If the two tables share no key column, an outcome column is missing
        or a customer appears twice.
    """
    customers = _as_pandas(customers)
    outcomes = _as_pandas(outcomes)
    key = next(
        (k for k in ("subscriber", "msisdn") if k in customers and k in outcomes),
        None,
    )
    if key is None:
        raise ModelError(
            "expected customers and outcomes to share a 'subscriber' (or "
            f"'msisdn') column; found {list(customers.columns)} and "
            f"{list(outcomes.columns)}"
        )
    needed = ["campaign_id", "contacted_at", "channel", "converted"]
    missing = [column for column in needed if column not in outcomes]
    if missing:
        raise ModelError(
            f"campaign outcomes lack the columns {', '.join(missing)}; found "
            f"{', '.join(outcomes.columns)}"
        )

    repeated = int(customers[key].duplicated().sum())
    if repeated:
        raise ModelError(
            f"expected one customer row per {key}; found {repeated} repeated "
            "keys. Deduplicate the customers first."
        )

    contacts = outcomes[[key, *needed]].copy()
    month = pd.to_datetime(contacts.pop("contacted_at")).dt.month
    contacts["contact_month"] = month.map(dict(enumerate(MONTHS, start=1)))
    contacts["converted"] = contacts.pop("converted").astype(bool)
    return customers.merge(contacts, on=key, how="inner", validate="one_to_many")


def _as_pandas(table: pd.DataFrame | pa.Table) -> pd.DataFrame:
    if isinstance(table, pa.Table):
        return table.to_pandas()
    if isinstance(table, pd.DataFrame):
        return table
    raise ModelError(
        f"expected a pandas DataFrame or pyarrow Table; found {type(table).__name__}"
    )
