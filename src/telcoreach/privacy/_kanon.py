"""k-anonymity and l-diversity checks of an aggregate or record-level export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from telcoreach.errors import PrivacyError

__all__ = [
    "KAnonymityReport",
    "LDiversityReport",
    "check_k_anonymity",
    "check_l_diversity",
]


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


@dataclass(frozen=True)
class LDiversityReport:
    """How many distinct sensitive values each quasi-identifier group holds."""

    l_target: int
    quasi_identifiers: tuple[str, ...]
    sensitive_attribute: str
    groups: int
    least_diverse_group: int
    uniform_groups: int

    @property
    def ok(self) -> bool:
        """Whether every group holds at least ``l_target`` distinct values."""
        return self.uniform_groups == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict."""
        return {
            "l": self.l_target,
            "quasi_identifiers": list(self.quasi_identifiers),
            "sensitive_attribute": self.sensitive_attribute,
            "groups": self.groups,
            "least_diverse_group": self.least_diverse_group,
            "groups_below_l": self.uniform_groups,
            "ok": self.ok,
        }


def check_l_diversity(
    table: pd.DataFrame,
    quasi_identifiers: list[str] | tuple[str, ...],
    sensitive_attribute: str,
    l_target: int,
    *,
    count_column: str | None = None,
    raise_on_failure: bool = True,
) -> LDiversityReport:
    """Check that every quasi-identifier group shows >= ``l_target`` sensitive values.

    This is *distinct* l-diversity: a group whose members all share (or
    nearly all share) one sensitive value reveals it for everyone in it.

    Parameters
    ----------
    table : pandas.DataFrame
        Either one row per person (``count_column`` None) or one row per
        (group, sensitive value) with its size in ``count_column``; rows with
        a size of 0 are ignored.
    quasi_identifiers : sequence of str
        Columns that define the groups.
    sensitive_attribute : str
        Column whose value must not be inferable from the group.
    l_target : int
        Fewest distinct sensitive values allowed in a group.
    raise_on_failure : bool
        Raise :class:`PrivacyError` when a group has fewer than ``l_target``.
    """
    if l_target < 1:
        raise PrivacyError(f"l must be a positive integer; found {l_target}")
    quasi_identifiers = tuple(quasi_identifiers)
    if count_column is not None:
        table = table[table[count_column] > 0]
    distinct = table.groupby(list(quasi_identifiers), dropna=False)[
        sensitive_attribute
    ].nunique(dropna=False)
    report = LDiversityReport(
        l_target=l_target,
        quasi_identifiers=quasi_identifiers,
        sensitive_attribute=sensitive_attribute,
        groups=len(distinct),
        least_diverse_group=int(distinct.min()) if len(distinct) else 0,
        uniform_groups=int((distinct < l_target).sum()),
    )
    if raise_on_failure and not report.ok:
        raise PrivacyError(
            f"export refused: {report.uniform_groups} of {report.groups} groups over "
            f"({', '.join(quasi_identifiers)}) show fewer than l={l_target} distinct "
            f"{sensitive_attribute} values (least: {report.least_diverse_group}), "
            "so membership reveals them. Group by fewer or coarser columns."
        )
    return report
