"""Compile a rule tree into a per-event Python predicate (for the stream).

The tree is turned once into nested closures, so evaluating an event costs a
few function calls and no tree walking. Logic is SQL's three-valued logic, as
in the batch compiler: a comparison with a null is unknown, ``not`` of unknown
is unknown, and a rule matches only when it is true.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import ibis
import numpy as np
import pandas as pd

from telcoreach.errors import RuleError
from telcoreach.rules._check import validate
from telcoreach.rules._tree import (
    And,
    Column,
    Compare,
    Condition,
    In,
    IsNull,
    Literal,
    Node,
    Not,
    Or,
)

__all__ = ["evaluate", "is_null", "to_predicate"]

Row = Mapping[str, Any]
_Truth = bool | None

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FAST_KINDS = {str: "string", bool: "boolean", int: "number", float: "number"}


def is_null(value: object) -> bool:
    """Return whether a value counts as null in a rule (None, NaN, pandas NA/NaT)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and value != value


def _value_kind(value: object) -> str | None:
    kind = _FAST_KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | float | Decimal | np.integer | np.floating):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def evaluate(tree: Node, row: Row) -> _Truth:
    """Return the three-valued result of a rule on one row: True, False or None.

    ``None`` means unknown (a null made the answer undecidable); a rule
    matches a row only when this is ``True``.

    Examples
    --------
    >>> from telcoreach.rules import parse
    >>> evaluate(parse("a > 1 or b == 'x'"), {"a": None, "b": "y"}) is None
    True
    """
    return _Compiler(rule=None).condition(tree)(row)


def to_predicate(
    tree: Node,
    *,
    schema: ibis.Schema | Mapping[str, Any] | None = None,
    rule: str | None = None,
) -> Callable[[Row], bool]:
    """Return a function telling whether one event (a mapping) matches a rule.

    Parameters
    ----------
    tree : Node
        A parsed rule.
    schema : ibis.Schema or mapping of str to data type, optional
        When given, the rule is first checked against it (see ``validate``),
        so an unknown column or a type mismatch fails here, once, rather than
        on the first event that reaches it.
    rule : str, optional
        Name of the rule, quoted in errors.

    Returns
    -------
    callable
        ``predicate(row) -> bool``: ``True`` only when the rule is true for the
        row; false and unknown (null) both give ``False``.

    Raises
    ------
    RuleError
        At call time, when the event lacks a field the rule reads or a value
        has the wrong kind (a string where a number is compared).

    Notes
    -----
    ``None``, float NaN, ``pandas.NA`` and ``pandas.NaT`` are null. ``and``
    and ``or`` stop at the first operand that decides the answer, so a field
    read only after that point is not required in the event.
    """
    if schema is not None:
        validate(tree, schema, rule=rule)
    condition = _Compiler(rule=rule).condition(tree)

    def predicate(row: Row) -> bool:
        return condition(row) is True

    return predicate


class _Compiler:
    def __init__(self, *, rule: str | None) -> None:
        self.rule = rule

    def error(self, problem: str, fix: str) -> RuleError:
        where = f"rule {self.rule!r}" if self.rule else "rule"
        return RuleError(f"{where}: {problem}; {fix}")

    def condition(self, node: Condition) -> Callable[[Row], _Truth]:
        if isinstance(node, And):
            return _all_of(tuple(self.condition(item) for item in node.operands))
        if isinstance(node, Or):
            return _any_of(tuple(self.condition(item) for item in node.operands))
        if isinstance(node, Not):
            return _negation(self.condition(node.operand))
        if isinstance(node, IsNull):
            return self.null_test(node)
        if isinstance(node, In):
            return self.membership(node)
        if isinstance(node, Compare):
            return self.comparison(node)
        if isinstance(node, Literal):
            constant = bool(node.value)
            return lambda row: constant
        return self.flag(node)

    def value(self, node: Column | Literal) -> Callable[[Row], Any]:
        if isinstance(node, Literal):
            constant = node.value
            return lambda row: constant
        name = node.name

        def read(row: Row) -> Any:
            try:
                value = row[name]
            except KeyError:
                raise self.missing(name, row) from None
            kind = type(value)
            if kind is str or kind is int or kind is bool:
                return value
            if kind is float:
                return None if value != value else value
            return None if is_null(value) else value

        return read

    def missing(self, name: str, row: Row) -> RuleError:
        close = difflib.get_close_matches(name, [str(key) for key in row], n=3)
        hint = f"closest fields: {', '.join(close)}" if close else "check the spelling"
        return self.error(f"the event has no field {name!r}", hint)

    def mismatch(self, atom: str, column: str, value: Any, expected: str) -> RuleError:
        return self.error(
            f"`{atom}` expects {column} to be a {expected}, found "
            f"{type(value).__name__} {value!r}",
            "fix the event's field type or the rule",
        )

    def comparison(self, node: Compare) -> Callable[[Row], _Truth]:
        atom = str(node)
        if isinstance(node.left, Literal):
            return self.comparison_with_constant(node.mirrored(), atom)
        if isinstance(node.right, Literal):
            return self.comparison_with_constant(node, atom)
        left = self.value(node.left)
        right = self.value(node.right)
        compare = _OPERATORS[node.op]

        def check(row: Row) -> _Truth:
            left_value = left(row)
            right_value = right(row)
            if left_value is None or right_value is None:
                return None
            left_kind = _value_kind(left_value)
            if left_kind is None or left_kind != _value_kind(right_value):
                bad, value, other = (
                    (node.left, left_value, right_value)
                    if isinstance(node.left, Column)
                    else (node.right, right_value, left_value)
                )
                raise self.mismatch(atom, str(bad), value, str(_value_kind(other)))
            return bool(compare(left_value, right_value))

        return check

    def comparison_with_constant(
        self, node: Compare, atom: str
    ) -> Callable[[Row], _Truth]:
        # The common case, `column op constant`, gets a closure of its own.
        read = self.value(node.left)
        constant = node.right.value
        expected = node.right.kind
        compare = _OPERATORS[node.op]

        def check(row: Row) -> _Truth:
            value = read(row)
            if value is None:
                return None
            if (_FAST_KINDS.get(type(value)) or _value_kind(value)) != expected:
                raise self.mismatch(atom, str(node.left), value, expected)
            return bool(compare(value, constant))

        return check

    def membership(self, node: In) -> Callable[[Row], _Truth]:
        read = self.value(node.column)
        values = frozenset(literal.value for literal in node.values)
        expected = node.values[0].kind
        negated = node.negated
        atom = str(node)

        def check(row: Row) -> _Truth:
            value = read(row)
            if value is None:
                return None
            if _value_kind(value) != expected:
                raise self.mismatch(atom, node.column.name, value, expected)
            return (value in values) != negated

        return check

    def null_test(self, node: IsNull) -> Callable[[Row], _Truth]:
        read = self.value(node.column)
        negated = node.negated
        return lambda row: (read(row) is None) != negated

    def flag(self, node: Column) -> Callable[[Row], _Truth]:
        read = self.value(node)

        def check(row: Row) -> _Truth:
            value = read(row)
            if value is None:
                return None
            if _value_kind(value) != "boolean":
                raise self.mismatch(node.name, node.name, value, "boolean")
            return bool(value)

        return check


def _all_of(parts: tuple[Callable[[Row], _Truth], ...]) -> Callable[[Row], _Truth]:
    def check(row: Row) -> _Truth:
        unknown = False
        for part in parts:
            result = part(row)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return check


def _any_of(parts: tuple[Callable[[Row], _Truth], ...]) -> Callable[[Row], _Truth]:
    def check(row: Row) -> _Truth:
        unknown = False
        for part in parts:
            result = part(row)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return check


def _negation(part: Callable[[Row], _Truth]) -> Callable[[Row], _Truth]:
    def check(row: Row) -> _Truth:
        result = part(row)
        return None if result is None else not result

    return check
