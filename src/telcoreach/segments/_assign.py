"""Assign every subscriber of a profile table to a tier, and size the tiers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from telcoreach.errors import SchemaError
from telcoreach.rules import to_ibis
from telcoreach.segments._config import TierRules

__all__ = [
    "SegmentEstimate",
    "TierEstimate",
    "assign_tiers",
    "estimate_tiers",
]

logger = logging.getLogger(__name__)

SUBSCRIBER = "subscriber"


def tier_conditions(profile: ibis.Table, rules: TierRules) -> list[ir.BooleanValue]:
    """Return one never-null Ibis condition per tier, checked against the profile."""
    if SUBSCRIBER not in profile.columns:
        raise SchemaError(
            f"the profile table has no {SUBSCRIBER!r} column; expected one row per "
            f"subscriber token, found columns {', '.join(profile.columns)}"
        )
    return [to_ibis(tier.when, profile, rule=tier.name) for tier in rules.tiers]


def rule_index_expression(conditions: list[ir.BooleanValue]) -> ir.IntegerValue:
    """Return the CASE expression giving the first matching tier's index."""
    branches = [(condition, index) for index, condition in enumerate(conditions)]
    return ibis.cases(*branches, else_=len(conditions)).cast("int32")


def assign_tiers(profile: ibis.Table, rules: TierRules) -> ibis.Table:
    """Return each subscriber's tier: the first tier whose rule matches, else default.

    Parameters
    ----------
    profile : ibis.Table
        One row per subscriber, with a ``subscriber`` token column and the
        columns the rules read.
    rules : TierRules
        Tiers in priority order and the default tier.

    Returns
    -------
    ibis.Table
        Lazy table with columns ``subscriber`` (string), ``tier`` (string) and
        ``rule_index`` (int32): the 0-based position of the matching tier, or
        ``len(rules.tiers)`` for the default tier. One CASE expression, run by
        the profile's own backend (DuckDB or Spark) when executed.

    Raises
    ------
    SchemaError
        When the profile has no ``subscriber`` column.
    RuleError
        When a rule names a column the profile lacks or compares the wrong
        kinds; the message names the tier, the column and the closest columns.
    """
    rule_index = rule_index_expression(tier_conditions(profile, rules))
    tier_names = [(index, tier.name) for index, tier in enumerate(rules.tiers)]
    tier = rule_index.cases(*tier_names, else_=rules.default)
    return profile.select(
        profile[SUBSCRIBER].cast("string").name(SUBSCRIBER),
        tier.cast("string").name("tier"),
        rule_index.name("rule_index"),
    )


@dataclass(frozen=True)
class TierEstimate:
    """The size of one tier.

    Attributes
    ----------
    name : str
        Tier name.
    rule_index : int
        Position in priority order; the default tier comes last.
    rule : str or None
        The tier's rule, ``None`` for the default tier.
    subscribers : int
        Subscribers assigned to the tier.
    share : float
        ``subscribers`` over all subscribers (0 for an empty profile).
    matching_rule : int or None
        Subscribers whose rule matches, including those an earlier tier
        took; ``None`` for the default tier.
    """

    name: str
    rule_index: int
    rule: str | None
    subscribers: int
    share: float
    matching_rule: int | None

    @property
    def taken_by_earlier_tiers(self) -> int:
        """Subscribers who match this rule but are in an earlier tier."""
        return (
            0 if self.matching_rule is None else self.matching_rule - self.subscribers
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as plain data."""
        return {
            "name": self.name,
            "rule_index": self.rule_index,
            "rule": self.rule,
            "subscribers": self.subscribers,
            "share": self.share,
            "matching_rule": self.matching_rule,
            "taken_by_earlier_tiers": self.taken_by_earlier_tiers,
        }


@dataclass(frozen=True)
class SegmentEstimate:
    """How many subscribers each tier would hold.

    Attributes
    ----------
    subscribers : int
        Rows of the profile.
    tiers : tuple of TierEstimate
        Every tier in priority order, empty ones included, default last.
    """

    subscribers: int
    tiers: tuple[TierEstimate, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as plain data."""
        return {
            "subscribers": self.subscribers,
            "tiers": [tier.to_dict() for tier in self.tiers],
        }

    def to_text(self) -> str:
        """Return the estimate as an aligned plain-text table."""
        width = max(len("tier"), *(len(tier.name) for tier in self.tiers))
        lines = [f"{'tier':<{width}}  {'subscribers':>11}  {'share':>7}  rule"]
        for tier in self.tiers:
            rule = tier.rule if tier.rule is not None else "(default)"
            if tier.taken_by_earlier_tiers:
                rule += f"  [+{tier.taken_by_earlier_tiers} taken by earlier tiers]"
            lines.append(
                f"{tier.name:<{width}}  {tier.subscribers:>11,}  "
                f"{tier.share:>7.1%}  {rule}"
            )
        lines.append(f"{'total':<{width}}  {self.subscribers:>11,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def estimate_tiers(profile: ibis.Table, rules: TierRules) -> SegmentEstimate:
    """Return the size and share of each tier, counted by the engine in one query.

    Parameters
    ----------
    profile : ibis.Table
        One row per subscriber (see ``assign_tiers``).
    rules : TierRules
        Tiers in priority order and the default tier.

    Returns
    -------
    SegmentEstimate
        Subscribers per tier, share of the profile, and for each rule how many
        subscribers match it regardless of order (to spot shadowed tiers).
        Nothing is written; only one row of counts leaves the engine.
    """
    conditions = tier_conditions(profile, rules)
    rule_index = rule_index_expression(conditions)
    metrics: dict[str, ir.Scalar] = {"subscribers": profile.count()}
    for index in range(len(rules.tiers) + 1):
        metrics[f"assigned_{index}"] = (rule_index == index).cast("int64").sum()
    for index, condition in enumerate(conditions):
        matched = condition.cast("int64")
        # A rule without columns (`true`) is a scalar, which has no sum.
        metrics[f"matching_{index}"] = (
            matched.sum()
            if isinstance(matched, ir.Column)
            else profile.count() * matched
        )
    counts = profile.aggregate(**metrics).to_pyarrow().to_pylist()[0]

    total = int(counts["subscribers"] or 0)
    tiers = []
    for index, name in enumerate(rules.names):
        assigned = int(counts[f"assigned_{index}"] or 0)
        is_default = index == len(rules.tiers)
        tiers.append(
            TierEstimate(
                name=name,
                rule_index=index,
                rule=None if is_default else rules.tiers[index].rule,
                subscribers=assigned,
                share=assigned / total if total else 0.0,
                matching_rule=None
                if is_default
                else int(counts[f"matching_{index}"] or 0),
            )
        )
    logger.info("estimated %d tiers over %d subscribers", len(tiers), total)
    return SegmentEstimate(total, tuple(tiers))
