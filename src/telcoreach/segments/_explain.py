"""Explain why one subscriber landed in its tier."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import ibis

from telcoreach.errors import EngineError, SchemaError, TelcoreachError
from telcoreach.rules import atoms, columns, evaluate
from telcoreach.segments._assign import (
    SUBSCRIBER,
    rule_index_expression,
    tier_conditions,
)
from telcoreach.segments._config import TierRules

__all__ = [
    "ConditionCheck",
    "Explanation",
    "SubscriberNotFoundError",
    "TierCheck",
    "explain",
]

logger = logging.getLogger(__name__)

_ENGINE_INDEX = "__telcoreach_rule_index"
_OUTCOMES = {True: "true", False: "false", None: "unknown"}


class SubscriberNotFoundError(TelcoreachError, LookupError):
    """The subscriber token asked about is not in the profile table."""


@dataclass(frozen=True)
class ConditionCheck:
    """One leaf condition of a rule and what it gave for the subscriber.

    Attributes
    ----------
    condition : str
        The condition's text, e.g. ``k12_app_count > 3``.
    outcome : {"true", "false", "unknown"}
        ``unknown`` when a null value made it undecidable.
    values : dict
        The subscriber's value of each column the condition reads.
    """

    condition: str
    outcome: str
    values: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the check as plain data."""
        return {
            "condition": self.condition,
            "outcome": self.outcome,
            "values": dict(self.values),
        }


@dataclass(frozen=True)
class TierCheck:
    """One tier's rule tried on the subscriber.

    Attributes
    ----------
    tier : str
        Tier name.
    rule_index : int
        Position in priority order.
    rule : str
        The rule's text.
    outcome : {"true", "false", "unknown"}
        The whole rule's value; only ``true`` is a match.
    values : dict
        The subscriber's value of every column the rule reads.
    conditions : tuple of ConditionCheck
        The rule's leaf conditions, in reading order.
    """

    tier: str
    rule_index: int
    rule: str
    outcome: str
    values: dict[str, Any]
    conditions: tuple[ConditionCheck, ...]

    @property
    def matched(self) -> bool:
        """Whether the rule matched (was true)."""
        return self.outcome == "true"

    def to_dict(self) -> dict[str, Any]:
        """Return the check as plain data."""
        return {
            "tier": self.tier,
            "rule_index": self.rule_index,
            "rule": self.rule,
            "outcome": self.outcome,
            "matched": self.matched,
            "values": dict(self.values),
            "conditions": [condition.to_dict() for condition in self.conditions],
        }


@dataclass(frozen=True)
class Explanation:
    """Why a subscriber is in its tier.

    Attributes
    ----------
    subscriber : str
        The subscriber token.
    tier : str
        The tier the subscriber is in.
    rule_index : int
        Its position; ``len(rules.tiers)`` for the default tier.
    is_default : bool
        Whether no rule matched.
    checks : tuple of TierCheck
        Every tier tried, in order: the ones that did not match, then the
        matching one (absent for the default tier).
    """

    subscriber: str
    tier: str
    rule_index: int
    is_default: bool
    checks: tuple[TierCheck, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the explanation as plain data (JSON-ready)."""
        return {
            "subscriber": self.subscriber,
            "tier": self.tier,
            "rule_index": self.rule_index,
            "is_default": self.is_default,
            "checks": [check.to_dict() for check in self.checks],
        }

    def to_text(self) -> str:
        """Return the explanation as indented plain text."""
        lines = [f"subscriber {self.subscriber}: tier {self.tier!r}"]
        for check in self.checks:
            verdict = "match" if check.matched else f"no match ({check.outcome})"
            lines.append(
                f"  {check.rule_index + 1}. {check.tier}: {verdict}  `{check.rule}`"
            )
            for condition in check.conditions:
                shown = ", ".join(
                    f"{name} = {_show(value)}"
                    for name, value in condition.values.items()
                )
                values = f"  ({shown})" if shown else ""
                lines.append(
                    f"       {condition.outcome:<8} {condition.condition}{values}"
                )
        if self.is_default:
            lines.append(f"  no tier rule matched: default tier {self.tier!r}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def explain(
    profile: ibis.Table, rules: TierRules, subscriber_token: str
) -> Explanation:
    """Return why one subscriber is in its tier, rule by rule, with its values.

    Parameters
    ----------
    profile : ibis.Table
        One row per subscriber (see ``assign_tiers``).
    rules : TierRules
        Tiers in priority order and the default tier.
    subscriber_token : str
        The subscriber's token (24 lowercase base32 characters), never a raw
        phone number.

    Returns
    -------
    Explanation
        The tier; for every tier before it, the rule's outcome and each
        condition's outcome with the column values it read; the same for the
        matching rule.

    Raises
    ------
    SubscriberNotFoundError
        When no profile row has this token.
    SchemaError
        When several rows have it (the profile is not one row per subscriber).
    EngineError
        When the engine's tier and the explanation disagree (a bug: report it).
    """
    conditions = tier_conditions(profile, rules)
    read = list(dict.fromkeys(c for tier in rules.tiers for c in columns(tier.when)))
    query = (
        profile.filter(profile[SUBSCRIBER] == subscriber_token)
        .select(*read, **{_ENGINE_INDEX: rule_index_expression(conditions)})
        .limit(2)
    )
    rows = query.to_pyarrow().to_pylist()
    if not rows:
        raise SubscriberNotFoundError(
            f"no profile row has the subscriber token given ({len(subscriber_token)} "
            f"characters); expected a token from the profile's {SUBSCRIBER!r} column "
            "(24 lowercase base32 characters), not a phone number. Check the token "
            "and that the profile is the right one"
        )
    if len(rows) > 1:
        raise SchemaError(
            "the profile has several rows for this subscriber token; expected one "
            "row per subscriber. Rebuild the profile"
        )
    row = rows[0]

    checks = []
    for index, tier in enumerate(rules.tiers):
        outcome = evaluate(tier.when, row)
        checks.append(
            TierCheck(
                tier=tier.name,
                rule_index=index,
                rule=tier.rule,
                outcome=_OUTCOMES[outcome],
                values={name: _plain(row[name]) for name in columns(tier.when)},
                conditions=tuple(
                    ConditionCheck(
                        condition=str(leaf),
                        outcome=_OUTCOMES[evaluate(leaf, row)],
                        values={name: _plain(row[name]) for name in columns(leaf)},
                    )
                    for leaf in atoms(tier.when)
                ),
            )
        )
        if outcome is True:
            break

    rule_index = index if checks[-1].matched else len(rules.tiers)
    if rule_index != row[_ENGINE_INDEX]:
        raise EngineError(
            f"the engine put this subscriber in tier {row[_ENGINE_INDEX]} but the "
            f"rules evaluated in Python give tier {rule_index}; expected both to "
            "agree. This is a bug in telcoreach: please report it with the rules"
        )
    logger.debug("explained the tier of one subscriber: tier %d", rule_index)
    return Explanation(
        subscriber=subscriber_token,
        tier=rules.names[rule_index],
        rule_index=rule_index,
        is_default=rule_index == len(rules.tiers),
        checks=tuple(checks),
    )


def _plain(value: Any) -> Any:
    # JSON has no NaN; a NaN reads as null in rules anyway.
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)
