"""The tier rules file: an ordered list of tiers and a default tier.

.. code-block:: yaml

    tiers:
      - name: high-potential parent
        when: k12_app_count > 3 and tutoring_searches >= 1
        description: Parents of school children looking for tutoring
      - name: student
        when: online_min_per_day_school_zone > 120
    default: low priority
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telcoreach.errors import ConfigError, RuleError
from telcoreach.rules import Condition, parse

__all__ = ["Tier", "TierRules", "load_rules"]

logger = logging.getLogger(__name__)


class _TierSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    when: Any
    description: str = ""


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiers: list[_TierSpec] = Field(min_length=1)
    default: str = Field(min_length=1)


@dataclass(frozen=True)
class Tier:
    """One tier: a name and the rule a subscriber must match to be in it.

    Attributes
    ----------
    name : str
        Tier name, as written to the ``tier`` column.
    when : Condition
        The parsed rule.
    description : str
        What the tier means, for people.
    """

    name: str
    when: Condition
    description: str = ""

    @property
    def rule(self) -> str:
        """The rule in canonical text form."""
        return str(self.when)


@dataclass(frozen=True)
class TierRules:
    """Ordered tiers, first match wins, and the default tier for everyone else.

    Attributes
    ----------
    tiers : tuple of Tier
        Tiers in priority order.
    default : str
        Name of the tier of subscribers no rule matches.
    source : str
        Where the rules came from (a file path), quoted in errors.
    """

    tiers: tuple[Tier, ...]
    default: str
    source: str = "rules"

    @property
    def names(self) -> tuple[str, ...]:
        """Tier names in priority order, the default tier last."""
        return (*(tier.name for tier in self.tiers), self.default)

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "rules") -> TierRules:
        """Return tier rules built from a mapping shaped like the YAML file.

        Raises
        ------
        ConfigError
            For a missing or unknown key, a value of the wrong type, a
            repeated tier name or a default that is also a tier name.
        RuleError
            For a ``when`` rule that does not parse.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping with keys tiers and default; found "
                f"{type(data).__name__} {data!r}"
            )
        try:
            spec = _RulesFile.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(_describe(error) for error in exc.errors())
            raise ConfigError(f"{source}: {problems}") from None

        seen: set[str] = set()
        for index, tier in enumerate(spec.tiers):
            if tier.name in seen:
                raise ConfigError(
                    f"{source} tiers[{index}].name: tier {tier.name!r} is named "
                    "twice; expected unique tier names, rename one"
                )
            seen.add(tier.name)
        if spec.default in seen:
            raise ConfigError(
                f"{source} default: {spec.default!r} is also a tier name; expected "
                "the default tier to have a name of its own"
            )

        tiers = tuple(
            Tier(tier.name, _parse_when(tier, index, source), tier.description)
            for index, tier in enumerate(spec.tiers)
        )
        return cls(tiers, spec.default, source)

    def to_dict(self) -> dict[str, Any]:
        """Return the rules as plain data, rules in canonical text form."""
        return {
            "tiers": [
                {"name": tier.name, "when": tier.rule, "description": tier.description}
                for tier in self.tiers
            ],
            "default": self.default,
        }


def load_rules(path: str | Path) -> TierRules:
    """Return the tier rules read from a YAML file.

    Parameters
    ----------
    path : str or Path
        A YAML file with ``tiers`` (a list of ``name``, ``when`` and optional
        ``description``) and ``default`` (the name of the catch-all tier).

    Returns
    -------
    TierRules

    Raises
    ------
    ConfigError
        When the file is missing, is not valid YAML or has a wrong key or
        value (the message gives the key's path, what was expected and what
        was found).
    RuleError
        When a ``when`` rule does not parse.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the tier rules file {path}: {exc.strerror}; expected a "
            "YAML file (see examples/rules.yaml)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)}); "
            "fix the file's syntax"
        ) from None

    rules = TierRules.from_mapping(data, source=str(path))
    logger.info("loaded %d tier rules from %s", len(rules.tiers), path)
    return rules


def _parse_when(tier: _TierSpec, index: int, source: str) -> Condition:
    try:
        return parse(tier.when, rule=tier.name)
    except RuleError as exc:
        raise RuleError(f"{source} tiers[{index}].when: {exc}") from None


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _allowed_keys(location: tuple[int | str, ...]) -> list[str]:
    model = _TierSpec if location and location[0] == "tiers" else _RulesFile
    return list(model.model_fields)


def _describe(error: Mapping[str, Any]) -> str:
    location = tuple(error["loc"])
    path = _path(location)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(location)
        close = difflib.get_close_matches(str(location[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{path}: unknown key{hint}; expected one of {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    expected = str(error["msg"]).removeprefix("Input should be ")
    found = error.get("input")
    return f"{path}: expected {expected}, found {type(found).__name__} {found!r}"
