"""Generalise and suppress quasi-identifiers until a table is k-anonymous and l-diverse.

A quasi-identifier is a column that, combined with others, could single a
person out (age band, gender, home district). Rows sharing every
quasi-identifier value form an *equivalence class*. A table is
*k-anonymous* when every class holds at least ``k`` rows, and *distinct
l-diverse* when every class also holds at least ``l`` different values of
the sensitive attribute (so membership of a class does not reveal it).

Each quasi-identifier may have a :class:`Hierarchy`: successively coarser
versions of its values (``18-24`` -> ``<25`` -> ``<45`` -> ``*``; a district
-> its city -> ``*``; a number -> ranges of growing width -> ``*``). A
choice of one level per column is a node of the generalisation lattice.
:func:`anonymise` evaluates the nodes (every one when the lattice is small,
a greedy climb otherwise), removes the rows of classes still too small or
too uniform when they fit in the suppression budget, and keeps the node
with the least information loss.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from telcoreach.errors import PrivacyError

__all__ = [
    "Anonymisation",
    "DeidentifiedAggregate",
    "Hierarchy",
    "anonymise",
    "deidentified_aggregate",
    "hierarchies_from_config",
    "propensity_bands",
]

logger = logging.getLogger(__name__)

#: Shown for a value generalised away entirely, and for a missing value.
TOP = "*"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Hierarchy:
    """Successively coarser versions of one quasi-identifier, ending in ``*``.

    Parameters
    ----------
    maps : sequence of mapping
        For categorical values: level ``i`` applies ``maps[0]`` ... ``maps[i-1]``
        in turn; a value a map does not name is kept as it is.
    bin_widths : sequence of float
        For numbers: level ``i`` replaces a value by the half-open range
        ``[lo, lo + bin_widths[i-1])`` that holds it. Each width should be a
        multiple of the one before, so ranges nest.

    Examples
    --------
    >>> h = Hierarchy(bin_widths=(10,))
    >>> h.generalise(pd.Series([3, 17]), 1).tolist()
    ['0-10', '10-20']
    >>> h.generalise(pd.Series([3, 17]), 2).tolist()
    ['*', '*']
    """

    maps: tuple[Mapping[str, str], ...] = ()
    bin_widths: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.maps and self.bin_widths:
            raise PrivacyError(
                "a hierarchy has either value maps (categorical) or bin widths "
                f"(numeric), not both; found {len(self.maps)} maps and "
                f"{len(self.bin_widths)} widths"
            )
        if any(width <= 0 for width in self.bin_widths):
            raise PrivacyError(
                f"bin widths must be positive; found {list(self.bin_widths)}"
            )

    @property
    def height(self) -> int:
        """Number of levels above the original values (the last is ``*``)."""
        return len(self.maps) + len(self.bin_widths) + 1

    def generalise(self, values: pd.Series, level: int) -> pd.Series:
        """Return ``values`` at ``level`` (0: unchanged) as strings."""
        if not 0 <= level <= self.height:
            raise PrivacyError(
                f"hierarchy level must be between 0 and {self.height}; found {level}"
            )
        if level == self.height:
            return pd.Series(TOP, index=values.index, dtype=object)
        if self.bin_widths and level > 0:
            return _ranges(values, self.bin_widths[level - 1])
        text = _as_text(values)
        if level == 0:
            return text
        # Map the distinct values only, then spread them back by code.
        codes, distinct = pd.factorize(text, use_na_sentinel=False)
        mapped = np.asarray(distinct, dtype=object)
        for mapping in self.maps[:level]:
            mapped = np.array([mapping.get(v, v) for v in mapped], dtype=object)
        return pd.Series(mapped[codes], index=values.index, dtype=object)


def _as_text(values: pd.Series) -> pd.Series:
    """Return values as strings, integral numbers without a ``.0``, nulls as unknown."""
    if pd.api.types.is_float_dtype(values) and bool(
        np.all(np.mod(values.dropna().to_numpy(), 1) == 0)
    ):
        values = values.astype("Int64")
    text = values.astype("string").astype(object)
    return text.where(values.notna(), UNKNOWN)


def _ranges(values: pd.Series, width: float) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(numbers)
    lows = np.floor(numbers[present] / width) * width
    distinct, inverse = np.unique(lows, return_inverse=True)
    labels = np.array([f"{lo:g}-{lo + width:g}" for lo in distinct], dtype=object)
    out = np.full(len(numbers), UNKNOWN, dtype=object)
    out[present] = labels[inverse]
    return pd.Series(out, index=values.index, dtype=object)


def propensity_bands(propensity: pd.Series, width: float = 0.2) -> pd.Series:
    """Return the score band (``0-0.2``, ``0.2-0.4``...) of each propensity.

    A missing score (no model trained) becomes ``unscored``.
    """
    bands = _ranges(propensity.clip(upper=1 - 1e-9), width)
    return bands.where(propensity.notna(), "unscored")


@dataclass(frozen=True)
class Anonymisation:
    """An anonymised table and how it was reached."""

    table: pd.DataFrame
    quasi_identifiers: tuple[str, ...]
    sensitive_attribute: str | None
    k_target: int
    l_target: int
    k_value: int
    l_value: int
    levels: dict[str, int]
    level_heights: dict[str, int]
    rows_in: int
    suppressed_rows: int
    information_loss: float
    nodes_evaluated: int
    search: str
    suppressed_classes: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the facts (not the table) as a JSON-serialisable dict."""
        return {
            "k_target": self.k_target,
            "l_target": self.l_target,
            "k": self.k_value,
            "l": self.l_value,
            "quasi_identifiers": list(self.quasi_identifiers),
            "sensitive_attribute": self.sensitive_attribute,
            "levels": {
                column: f"{level}/{self.level_heights[column]}"
                for column, level in self.levels.items()
            },
            "rows_in": self.rows_in,
            "suppressed_rows": self.suppressed_rows,
            "suppressed_classes": self.suppressed_classes,
            "information_loss": round(self.information_loss, 4),
            "nodes_evaluated": self.nodes_evaluated,
            "search": self.search,
        }


@dataclass(frozen=True)
class _Node:
    levels: tuple[int, ...]
    bad_rows: int
    bad_classes: int
    k_value: int
    l_value: int
    loss: float
    keep: np.ndarray


class _Lattice:
    """Integer codes of every column at every level, and node evaluation."""

    def __init__(
        self,
        records: pd.DataFrame,
        quasi_identifiers: tuple[str, ...],
        sensitive: str | None,
        hierarchies: Mapping[str, Hierarchy],
        k: int,
        l_target: int,
    ) -> None:
        self.rows = len(records)
        self.k = k
        self.l_target = l_target
        self.hierarchies = {
            column: hierarchies.get(column, Hierarchy()) for column in quasi_identifiers
        }
        # A column without a hierarchy is kept as it is: height 0.
        self.heights = tuple(
            self.hierarchies[c].height if c in hierarchies else 0
            for c in quasi_identifiers
        )
        self.codes: list[list[np.ndarray]] = []
        self.values: list[list[pd.Series]] = []
        for column, height in zip(quasi_identifiers, self.heights, strict=True):
            per_level = [
                self.hierarchies[column].generalise(records[column], level)
                for level in range(height + 1)
            ]
            self.values.append(per_level)
            self.codes.append(
                [pd.factorize(v, use_na_sentinel=False)[0] for v in per_level]
            )
        if sensitive is None:
            self.sensitive = np.zeros(self.rows, dtype=np.int64)
        else:
            self.sensitive = pd.factorize(
                _as_text(records[sensitive]), use_na_sentinel=False
            )[0].astype(np.int64)
        self.sensitive_values = int(self.sensitive.max(initial=-1)) + 1

    def evaluate(self, levels: tuple[int, ...]) -> _Node:
        """Return the class sizes, diversity and loss of one lattice node."""
        key = np.zeros(self.rows, dtype=np.int64)
        for column_codes, level in zip(self.codes, levels, strict=True):
            codes = column_codes[level]
            key = key * (int(codes.max(initial=-1)) + 1) + codes
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
        classes = int(key.max(initial=-1)) + 1
        if classes == 0:
            return _Node(levels, 0, 0, 0, 0, 0.0, np.zeros(0, dtype=bool))
        sizes = np.bincount(key, minlength=classes)
        pairs = np.unique(key * self.sensitive_values + self.sensitive)
        distinct = np.bincount(pairs // self.sensitive_values, minlength=classes)
        bad = (sizes < self.k) | (distinct < self.l_target)
        keep = ~bad[key]
        bad_rows = int(sizes[bad].sum())
        kept_sizes, kept_distinct = sizes[~bad], distinct[~bad]
        shares = [
            level / height
            for level, height in zip(levels, self.heights, strict=True)
            if height
        ]
        generalisation = float(np.mean(shares)) if shares else 0.0
        suppressed = bad_rows / self.rows if self.rows else 0.0
        return _Node(
            levels=levels,
            bad_rows=bad_rows,
            bad_classes=int(bad.sum()),
            k_value=int(kept_sizes.min()) if len(kept_sizes) else 0,
            l_value=int(kept_distinct.min()) if len(kept_distinct) else 0,
            loss=(1 - suppressed) * generalisation + suppressed,
            keep=keep,
        )


def anonymise(
    records: pd.DataFrame,
    quasi_identifiers: list[str] | tuple[str, ...],
    *,
    k: int,
    l_diversity: int = 1,
    sensitive_attribute: str | None = None,
    hierarchies: Mapping[str, Hierarchy] | None = None,
    max_suppression_share: float = 0.0,
    max_nodes: int = 4096,
) -> Anonymisation:
    """Return ``records`` generalised and suppressed to be k-anonymous and l-diverse.

    Parameters
    ----------
    records : pandas.DataFrame
        One row per person.
    quasi_identifiers : sequence of str
        Columns that, combined, could single a person out.
    k : int
        Smallest allowed equivalence class.
    l_diversity : int
        Fewest distinct values of ``sensitive_attribute`` in every class
        (1: no diversity required).
    sensitive_attribute : str, optional
        Column whose value must not be inferable from the class; required
        when ``l_diversity`` > 1.
    hierarchies : mapping of str to Hierarchy, optional
        Generalisation of each quasi-identifier; a column without one is
        never generalised (only its rows suppressed).
    max_suppression_share : float
        Largest share of rows that may be removed (rows of classes that stay
        below ``k`` or ``l``).
    max_nodes : int
        Lattices with more nodes than this are climbed greedily instead of
        searched exhaustively.

    Returns
    -------
    Anonymisation
        The table (quasi-identifiers as strings at the chosen levels,
        suppressed rows removed), the levels chosen, rows suppressed and the
        achieved ``k`` and ``l``.

    Raises
    ------
    PrivacyError
        If the parameters are invalid, or no node reaches ``k`` and ``l``
        within the suppression budget.

    Notes
    -----
    Information loss of a node is ``(1 - s) * g + s``: ``s`` the share of
    rows suppressed and ``g`` the mean over generalisable columns of
    ``level / height`` (0: original values, 1: every value ``*``).
    """
    quasi_identifiers = tuple(quasi_identifiers)
    hierarchies = dict(hierarchies or {})
    _check_parameters(
        records,
        quasi_identifiers,
        k,
        l_diversity,
        sensitive_attribute,
        max_suppression_share,
    )
    lattice = _Lattice(
        records, quasi_identifiers, sensitive_attribute, hierarchies, k, l_diversity
    )
    budget = int(np.floor(max_suppression_share * len(records) + 1e-9))

    def fits(node: _Node) -> bool:
        # An empty table exposes nobody; otherwise someone must remain.
        return node.bad_rows <= budget and (
            node.bad_rows < len(records) or not len(records)
        )

    size = int(np.prod([h + 1 for h in lattice.heights]))
    if size <= max_nodes:
        search = "full lattice"
        nodes = [lattice.evaluate(levels) for levels in _nodes(lattice.heights)]
    else:
        search = "greedy"
        nodes = _greedy(lattice, fits)
    fitting = [node for node in nodes if fits(node)]
    if not fitting:
        best = min(nodes, key=lambda n: (n.bad_rows, n.loss))
        raise PrivacyError(
            _refusal(
                records,
                quasi_identifiers,
                sensitive_attribute,
                k,
                l_diversity,
                max_suppression_share,
                budget,
                hierarchies,
                best,
            )
        )
    chosen = min(fitting, key=lambda n: (n.loss, n.bad_rows, n.levels))

    table = records.loc[chosen.keep].copy()
    for position, column in enumerate(quasi_identifiers):
        generalised = lattice.values[position][chosen.levels[position]]
        table[column] = generalised[chosen.keep].to_numpy()
    result = Anonymisation(
        table=table.reset_index(drop=True),
        quasi_identifiers=quasi_identifiers,
        sensitive_attribute=sensitive_attribute,
        k_target=k,
        l_target=l_diversity,
        k_value=chosen.k_value,
        l_value=chosen.l_value,
        levels=dict(zip(quasi_identifiers, chosen.levels, strict=True)),
        level_heights=dict(zip(quasi_identifiers, lattice.heights, strict=True)),
        rows_in=len(records),
        suppressed_rows=chosen.bad_rows,
        suppressed_classes=chosen.bad_classes,
        information_loss=chosen.loss,
        nodes_evaluated=len(nodes),
        search=search,
    )
    logger.info(
        "anonymised %d rows to k=%d, l=%d: levels %s, %d rows suppressed",
        result.rows_in,
        result.k_value,
        result.l_value,
        result.levels,
        result.suppressed_rows,
    )
    return result


def _check_parameters(
    records: pd.DataFrame,
    quasi_identifiers: tuple[str, ...],
    k: int,
    l_diversity: int,
    sensitive_attribute: str | None,
    max_suppression_share: float,
) -> None:
    if k < 1 or l_diversity < 1:
        raise PrivacyError(
            f"k and l must be positive integers; found k={k}, l={l_diversity}"
        )
    if not 0 <= max_suppression_share < 1:
        raise PrivacyError(
            f"max_suppression_share must be in [0, 1); found {max_suppression_share}"
        )
    if not quasi_identifiers:
        raise PrivacyError("at least one quasi-identifier column is needed; found none")
    if l_diversity > 1 and sensitive_attribute is None:
        raise PrivacyError(
            f"l-diversity with l={l_diversity} needs a sensitive attribute; found "
            "none. Set privacy.sensitive_attribute or privacy.l_diversity: 1"
        )
    wanted = [
        *quasi_identifiers,
        *([sensitive_attribute] if sensitive_attribute else []),
    ]
    missing = [c for c in wanted if c not in records.columns]
    if missing:
        raise PrivacyError(
            f"columns {', '.join(missing)} not in the table; expected some of "
            f"{', '.join(map(str, records.columns))}"
        )
    if sensitive_attribute in quasi_identifiers:
        raise PrivacyError(
            f"{sensitive_attribute!r} is both a quasi-identifier and the sensitive "
            "attribute; group by other columns or choose another sensitive attribute"
        )


def _nodes(heights: tuple[int, ...]):
    return product(*(range(h + 1) for h in heights))


def _greedy(lattice: _Lattice, fits) -> list[_Node]:
    """Climb from the bottom, each step raising the column that helps most."""
    node = lattice.evaluate(tuple(0 for _ in lattice.heights))
    visited = [node]
    while not fits(node):
        steps = [
            lattice.evaluate(tuple(lv + (i == j) for j, lv in enumerate(node.levels)))
            for i, height in enumerate(lattice.heights)
            if node.levels[i] < height
        ]
        if not steps:
            break
        visited.extend(steps)
        node = min(steps, key=lambda n: (n.bad_rows, n.loss))
    return visited


def _refusal(
    records: pd.DataFrame,
    quasi_identifiers: tuple[str, ...],
    sensitive_attribute: str | None,
    k: int,
    l_diversity: int,
    max_suppression_share: float,
    budget: int,
    hierarchies: Mapping[str, Hierarchy],
    best: _Node,
) -> str:
    levels = ", ".join(
        f"{c}={lv}" for c, lv in zip(quasi_identifiers, best.levels, strict=True)
    )
    fixed = [c for c in quasi_identifiers if c not in hierarchies]
    diversity = (
        f" and at least l={l_diversity} distinct {sensitive_attribute} values"
        if l_diversity > 1
        else ""
    )
    hint = f"add privacy.hierarchies for {', '.join(fixed)}, " if fixed else ""
    return (
        f"export refused: no generalisation of ({', '.join(quasi_identifiers)}) "
        f"gives every group at least k={k} people{diversity} while suppressing at "
        f"most {max_suppression_share:.0%} of {len(records)} rows ({budget}); the "
        f"best found (levels {levels}) still has {best.bad_classes} groups with "
        f"fewer than k={k} people or fewer than l={l_diversity} distinct values "
        f"({best.bad_rows} rows). Fix: group by fewer or coarser columns, {hint}"
        "raise privacy.max_suppression_share, or export a larger audience"
    )


@dataclass(frozen=True)
class DeidentifiedAggregate:
    """Counts per generalised group and sensitive value, with their checks."""

    frame: pd.DataFrame
    anonymisation: Anonymisation
    k_report: Any
    l_report: Any

    def to_dict(self) -> dict[str, Any]:
        """Return the de-identification facts as a JSON-serialisable dict."""
        facts = self.anonymisation.to_dict()
        facts["groups"] = self.k_report.groups
        return facts


def hierarchies_from_config(
    settings: Mapping[str, Any],
) -> dict[str, Hierarchy]:
    """Return :class:`Hierarchy` objects from ``privacy.hierarchies`` entries."""
    return {
        column: Hierarchy(maps=tuple(entry.levels), bin_widths=tuple(entry.bin_widths))
        for column, entry in settings.items()
    }


def deidentified_aggregate(
    table: Any,
    group_by: list[str] | tuple[str, ...],
    privacy: Any,
    *,
    count_column: str = "subscribers",
) -> DeidentifiedAggregate:
    """Return counts of ``table`` per generalised ``group_by`` and sensitive value.

    The rows (one per person) are first made k-anonymous and l-diverse over
    ``group_by`` by :func:`anonymise` with the workspace's ``privacy``
    settings, then counted, and the counts are checked again.

    Parameters
    ----------
    table : ibis.Table
        One row per person, with the ``group_by`` columns and either the
        sensitive attribute or, for ``propensity_band``, a ``propensity``.
    group_by : sequence of str
        Quasi-identifiers to count by.
    privacy : PrivacyConfig
        ``k_anonymity``, ``l_diversity``, ``sensitive_attribute``,
        ``max_suppression_share`` and ``hierarchies``.

    Raises
    ------
    PrivacyError
        If no generalisation reaches k and l within the suppression budget.
    """
    from telcoreach.privacy._kanon import check_k_anonymity, check_l_diversity

    group_by = list(group_by)
    sensitive = privacy.sensitive_attribute
    wanted = list(group_by)
    if sensitive is not None:
        derive_band = sensitive == "propensity_band" and sensitive not in table.columns
        source = "propensity" if derive_band else sensitive
        if source not in table.columns:
            raise PrivacyError(
                f"sensitive attribute {sensitive!r} is not a column of the export; "
                f"expected one of {', '.join(table.columns)}. Set "
                "privacy.sensitive_attribute to one of them, or to null to skip "
                "the l-diversity check"
            )
        if source not in wanted:
            wanted.append(source)
    records = table.select(*wanted).to_pandas()
    if sensitive is not None and derive_band:
        records[sensitive] = propensity_bands(records["propensity"])
    l_target = privacy.l_diversity if sensitive is not None else 1

    result = anonymise(
        records,
        group_by,
        k=privacy.k_anonymity,
        l_diversity=l_target,
        sensitive_attribute=sensitive,
        hierarchies=hierarchies_from_config(privacy.hierarchies),
        max_suppression_share=privacy.max_suppression_share,
    )
    keys = [*group_by, *([sensitive] if sensitive is not None else [])]
    frame = (
        result.table.groupby(keys, dropna=False)
        .size()
        .reset_index(name=count_column)
        .sort_values(keys, kind="stable", ignore_index=True)
    )
    k_report = check_k_anonymity(
        frame, group_by, privacy.k_anonymity, count_column=count_column
    )
    l_report = (
        check_l_diversity(
            frame, group_by, sensitive, l_target, count_column=count_column
        )
        if sensitive is not None
        else None
    )
    return DeidentifiedAggregate(frame, result, k_report, l_report)
