"""k-anonymity check of an aggregate or record-level export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from telcoreach.errors import PrivacyError

__all__ = ["KAnonymityReport", "check_k_anonymity"]


@dataclass(frozen=True)
class KAnonymityReport:
    """How an export's quasi-identifier groups compare with ``k``."""

    k: int
    quasi_identifiers: tuple[str, ...]
    groups: int
    smallest_group: int
    small_groups: int
    rows_in_small_groups: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every group has at least ``k`` members."""
        return self.small_groups == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict."""
        return {
            "k": self.k,
            "quasi_identifiers": list(self.quasi_identifiers),
            "groups": self.groups,
            "smallest_group": self.smallest_group,
            "small_groups": self.small_groups,
            "rows_in_small_groups": self.rows_in_small_groups,
            "ok": self.ok,
        }


def check_k_anonymity(
    sizes: pd.DataFrame,
    quasi_identifiers: list[str] | tuple[str, ...],
    k: int,
    *,
    count_column: str | None = None,
    raise_on_failure: bool = True,
) -> KAnonymityReport:
    """Check that every combination of quasi-identifiers covers >= ``k`` people.

    Parameters
    ----------
    sizes : pandas.DataFrame
        Either one row per person (``count_column`` None) or one row per group
        with its size in ``count_column``.
    quasi_identifiers : sequence of str
        Columns that, combined, could single a person out (age band, gender,
        home district...).
    k : int
        Smallest allowed group.
    raise_on_failure : bool
        Raise :class:`PrivacyError` when a group is smaller than ``k``.
    """
    if k < 1:
        raise PrivacyError(f"k must be a positive integer; found {k}")
    quasi_identifiers = tuple(quasi_identifiers)
    if count_column is None:
        grouped = sizes.groupby(list(quasi_identifiers), dropna=False).size()
    else:
        grouped = sizes.groupby(list(quasi_identifiers), dropna=False)[
            count_column
        ].sum()
    small = grouped[grouped < k]
    report = KAnonymityReport(
        k=k,
        quasi_identifiers=quasi_identifiers,
        groups=len(grouped),
        smallest_group=int(grouped.min()) if len(grouped) else 0,
        small_groups=len(small),
        rows_in_small_groups=int(small.sum()),
    )
    if raise_on_failure and not report.ok:
        raise PrivacyError(
            f"export refused: {report.small_groups} of {report.groups} groups over "
            f"({', '.join(quasi_identifiers)}) have fewer than k={k} people "
            f"(smallest: {report.smallest_group}). Group by fewer or coarser "
            "columns, or raise the audience size."
        )
    return report
