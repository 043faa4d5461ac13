"""The rule tree: small immutable nodes that every compiler reads.

A rule such as ``k12_app_count > 3 and not opted_out`` is parsed once into a
tree of these nodes. The tree renders back to canonical rule text with
``str(node)``, and parsing that text gives an equal tree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal as TypingLiteral

__all__ = [
    "COMPARISON_OPERATORS",
    "And",
    "Column",
    "Compare",
    "Condition",
    "In",
    "IsNull",
    "Literal",
    "Node",
    "Not",
    "Operand",
    "Or",
    "atoms",
    "columns",
]

#: Comparison operators a rule may use, as written in rule text.
COMPARISON_OPERATORS: tuple[str, ...] = ("==", "!=", "<", "<=", ">", ">=")

#: Kind of a literal value: rules compare numbers, strings and booleans.
ValueKind = TypingLiteral["number", "string", "boolean"]

_MIRRORED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Column:
    """A reference to a column of the profile (or a field of an event)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: a string, a number or a boolean (never null).

    ``kind`` is part of equality so that ``Literal(True)`` and ``Literal(1)``
    are different nodes, as they are different values in a rule.
    """

    value: str | int | float | bool
    kind: ValueKind

    @classmethod
    def of(cls, value: str | int | float | bool) -> Literal:
        """Return the literal holding ``value`` with its kind inferred."""
        if isinstance(value, bool):
            return cls(value, "boolean")
        if isinstance(value, str):
            return cls(value, "string")
        return cls(value, "number")

    def __str__(self) -> str:
        if self.kind == "boolean":
            return "true" if self.value else "false"
        if self.kind == "string":
            return json.dumps(self.value, ensure_ascii=False)
        if isinstance(self.value, float) and not math.isfinite(self.value):
            return "1e999" if self.value > 0 else "-1e999"
        return repr(self.value)


Operand = Column | Literal


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` with ``op`` one of ``COMPARISON_OPERATORS``."""

    left: Operand
    op: str
    right: Operand

    def mirrored(self) -> Compare:
        """Return the same comparison with its operands swapped."""
        return Compare(self.right, _MIRRORED[self.op], self.left)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class In:
    """``column in [values]`` (or ``not in`` when ``negated``)."""

    column: Column
    values: tuple[Literal, ...]
    negated: bool = False

    def __str__(self) -> str:
        operator = "not in" if self.negated else "in"
        listed = ", ".join(str(value) for value in self.values)
        return f"{self.column} {operator} [{listed}]"


@dataclass(frozen=True, slots=True)
class IsNull:
    """``column is null`` (or ``is not null`` when ``negated``)."""

    column: Column
    negated: bool = False

    def __str__(self) -> str:
        return (
            f"{self.column} is not null" if self.negated else f"{self.column} is null"
        )


@dataclass(frozen=True, slots=True)
class And:
    """True when every operand is true (SQL three-valued ``and``)."""

    operands: tuple[Condition, ...]

    def __str__(self) -> str:
        return " and ".join(_wrap(operand, (Or,)) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    """True when any operand is true (SQL three-valued ``or``)."""

    operands: tuple[Condition, ...]

    def __str__(self) -> str:
        return " or ".join(_wrap(operand, (And,)) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class Not:
    """The negation of a condition; ``not`` of unknown stays unknown."""

    operand: Condition

    def __str__(self) -> str:
        return "not " + _wrap(self.operand, (And, Or))


#: A node that is true, false or unknown for a row: what a rule is.
Condition = Compare | In | IsNull | And | Or | Not | Column | Literal

#: Any node of the tree.
Node = Condition


def _wrap(node: Node, parenthesised: tuple[type, ...]) -> str:
    # `and` binds tighter than `or`; parentheses where reading needs them.
    text = str(node)
    return f"({text})" if isinstance(node, parenthesised) else text


def columns(tree: Node) -> tuple[str, ...]:
    """Return the column names a rule reads, each once, in reading order.

    Parameters
    ----------
    tree : Node
        A parsed rule.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from telcoreach.rules import parse
    >>> columns(parse("a > 1 and (b == 'x' or a < 0)"))
    ('a', 'b')
    """
    found: dict[str, None] = {}
    _collect_columns(tree, found)
    return tuple(found)


def _collect_columns(node: Node, found: dict[str, None]) -> None:
    if isinstance(node, Column):
        found.setdefault(node.name)
    elif isinstance(node, Compare):
        _collect_columns(node.left, found)
        _collect_columns(node.right, found)
    elif isinstance(node, In | IsNull):
        found.setdefault(node.column.name)
    elif isinstance(node, And | Or):
        for operand in node.operands:
            _collect_columns(operand, found)
    elif isinstance(node, Not):
        _collect_columns(node.operand, found)


def atoms(tree: Node) -> tuple[Condition, ...]:
    """Return the leaf conditions of a rule (comparisons, tests, flags) in order.

    ``and``, ``or`` and ``not`` are looked through; a bare boolean column or
    literal used as a condition is a leaf.
    """
    if isinstance(tree, And | Or):
        return tuple(leaf for operand in tree.operands for leaf in atoms(operand))
    if isinstance(tree, Not):
        return atoms(tree.operand)
    return (tree,)
