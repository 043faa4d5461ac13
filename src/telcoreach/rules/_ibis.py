"""Compile a rule tree into an Ibis boolean expression (for batch on the lake)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import reduce
from typing import Any

import ibis
import ibis.expr.types as ir

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

__all__ = ["to_ibis"]

_OPERATORS: dict[str, Callable[[Any, Any], ir.BooleanValue]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def to_ibis(
    tree: Node, table: ibis.Table, *, rule: str | None = None
) -> ir.BooleanValue:
    """Return an Ibis boolean expression that is true where a rule matches a row.

    Parameters
    ----------
    tree : Node
        A parsed rule.
    table : ibis.Table
        The table the rule reads; the rule is checked against its schema.
    rule : str, optional
        Name of the rule, quoted in errors.

    Returns
    -------
    ibis.expr.types.BooleanValue
        Never null: rows where the rule is false or unknown give ``False``, so
        the expression can be negated, filtered on or summed safely and agrees
        row for row with ``to_predicate``.

    Raises
    ------
    RuleError
        When the rule reads an unknown column or compares different kinds.

    Notes
    -----
    Inside the rule, logic is SQL's three-valued logic, which DuckDB and Spark
    evaluate natively. A float NaN is read as null, as in the per-event
    predicate.

    Examples
    --------
    >>> import ibis
    >>> from telcoreach.rules import parse
    >>> table = ibis.table({"a": "int64", "b": "string"}, name="profile")
    >>> expression = to_ibis(parse("a > 1 and b in ['x', 'y']"), table)
    >>> expression.type()
    Boolean(nullable=True)
    """
    validate(tree, table.schema(), rule=rule)
    return _condition(tree, table).fill_null(False)


def _condition(node: Condition, table: ibis.Table) -> ir.BooleanValue:
    if isinstance(node, And):
        return reduce(
            operator.and_, (_condition(item, table) for item in node.operands)
        )
    if isinstance(node, Or):
        return reduce(operator.or_, (_condition(item, table) for item in node.operands))
    if isinstance(node, Not):
        return ~_condition(node.operand, table)
    if isinstance(node, IsNull):
        column = _value(node.column, table)
        return column.notnull() if node.negated else column.isnull()
    if isinstance(node, In):
        column = _value(node.column, table)
        values = [literal.value for literal in node.values]
        return column.notin(values) if node.negated else column.isin(values)
    if isinstance(node, Compare):
        left = _value(node.left, table)
        right = _value(node.right, table)
        return _OPERATORS[node.op](left, right)
    return _value(node, table)


def _value(node: Column | Literal, table: ibis.Table) -> ir.Value:
    if isinstance(node, Literal):
        return ibis.literal(node.value)
    column = table[node.name]
    if column.type().is_floating():
        # NaN is a missing measurement, as it is for the per-event predicate.
        return column.nullif(float("nan"))
    return column
