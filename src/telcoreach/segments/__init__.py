"""Segments: put every subscriber of a profile into a tier with ordered rules.

A tier rules file lists tiers in priority order, each with a rule in
telcoreach's rule language (see ``telcoreach.rules``), and a default tier. A
subscriber goes to the first tier whose rule matches, else to the default.

Examples
--------
>>> import ibis
>>> from telcoreach.segments import TierRules, assign_tiers
>>> rules = TierRules.from_mapping(
...     {"tiers": [{"name": "heavy", "when": "minutes > 100"}], "default": "light"}
... )
>>> profile = ibis.memtable({"subscriber": ["a", "b"], "minutes": [150.0, 20.0]})
>>> assign_tiers(profile, rules).order_by("subscriber").to_pyarrow().to_pylist()
[{'subscriber': 'a', 'tier': 'heavy', 'rule_index': 0}, \
{'subscriber': 'b', 'tier': 'light', 'rule_index': 1}]
"""

from __future__ import annotations

from telcoreach.segments._assign import (
    SegmentEstimate,
    TierEstimate,
    assign_tiers,
    estimate_tiers,
)
from telcoreach.segments._config import Tier, TierRules, load_rules
from telcoreach.segments._explain import (
    ConditionCheck,
    Explanation,
    SubscriberNotFoundError,
    TierCheck,
    explain,
)

__all__ = [
    "ConditionCheck",
    "Explanation",
    "SegmentEstimate",
    "SubscriberNotFoundError",
    "Tier",
    "TierCheck",
    "TierEstimate",
    "TierRules",
    "assign_tiers",
    "estimate_tiers",
    "explain",
    "load_rules",
]
