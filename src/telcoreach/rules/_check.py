"""Check a rule against a table schema: known columns, comparable types."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any
from typing import Literal as TypingLiteral

import ibis
import ibis.expr.datatypes as dt

from telcoreach.errors import RuleError
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

__all__ = ["ColumnKind", "column_kinds", "validate"]

#: How the rule language sees a column's type.
ColumnKind = TypingLiteral["number", "string", "boolean", "other"]

_ORDERING = frozenset({"<", "<=", ">", ">="})


def column_kinds(schema: ibis.Schema | Mapping[str, Any]) -> dict[str, ColumnKind]:
    """Return the rule-language kind of every column of a schema.

    Parameters
    ----------
    schema : ibis.Schema or mapping of str to data type
        Column types as Ibis data types or anything ``ibis.dtype`` accepts
        (``"int64"``, ``"string"``, ``"float64"``, ``"bool"``...).

    Returns
    -------
    dict of str to {"number", "string", "boolean", "other"}
    """
    return {name: _kind(ibis.dtype(dtype)) for name, dtype in dict(schema).items()}


def _kind(dtype: dt.DataType) -> ColumnKind:
    if dtype.is_boolean():
        return "boolean"
    if dtype.is_numeric():
        return "number"
    if dtype.is_string():
        return "string"
    return "other"


def validate(
    tree: Node,
    schema: ibis.Schema | Mapping[str, Any],
    *,
    rule: str | None = None,
) -> None:
    """Check that a rule reads only existing columns and compares like with like.

    Parameters
    ----------
    tree : Node
        A parsed rule.
    schema : ibis.Schema or mapping of str to data type
        The table (or event) schema the rule will run against.
    rule : str, optional
        Name of the rule, quoted in errors.

    Raises
    ------
    RuleError
        For an unknown column (naming the closest existing columns), a
        comparison of different kinds (string with number...), an ordering
        comparison of booleans, a non-boolean column used alone as a condition
        or a column of a type rules cannot compare (timestamps, arrays...).
    """
    _Checker(column_kinds(schema), rule=rule, text=str(tree)).condition(tree)


class _Checker:
    def __init__(self, kinds: dict[str, ColumnKind], *, rule: str | None, text: str):
        self.kinds = kinds
        self.rule = rule
        self.text = text

    def error(self, problem: str, fix: str) -> RuleError:
        where = f"rule {self.rule!r}" if self.rule else "rule"
        return RuleError(f"{where} `{self.text}`: {problem}; {fix}")

    def condition(self, node: Condition) -> None:
        if isinstance(node, And | Or):
            for operand in node.operands:
                self.condition(operand)
        elif isinstance(node, Not):
            self.condition(node.operand)
        elif isinstance(node, IsNull):
            self.kind_of(node.column)
        elif isinstance(node, In):
            self.comparable(node.column, node.values[0], "in", str(node))
        elif isinstance(node, Compare):
            self.comparable(node.left, node.right, node.op, str(node))
        elif isinstance(node, Column):
            kind = self.kind_of(node)
            if kind != "boolean":
                raise self.error(
                    f"column {node.name} ({kind}) stands alone as a condition, but "
                    "only a boolean column can",
                    f"compare it, e.g. `{node.name} > 0` or `{node.name} is not null`",
                )

    def kind_of(self, operand: Column | Literal) -> ColumnKind:
        if isinstance(operand, Literal):
            return operand.kind
        if operand.name not in self.kinds:
            raise self.error(
                f"unknown column {operand.name!r}",
                _suggestion(operand.name, list(self.kinds)),
            )
        return self.kinds[operand.name]

    def comparable(self, left, right, op: str, atom: str) -> None:
        left_kind = self.kind_of(left)
        right_kind = self.kind_of(right)
        for operand, kind in ((left, left_kind), (right, right_kind)):
            if kind == "other":
                raise self.error(
                    f"column {operand} has a type rules cannot compare "
                    "(only numbers, strings and booleans)",
                    f"derive a number, string or boolean column from {operand} first",
                )
        if left_kind != right_kind:
            raise self.error(
                f"`{atom}` compares {_described(left, left_kind)} with "
                f"{_described(right, right_kind)}",
                _type_fix(left_kind, right_kind),
            )
        if left_kind == "boolean" and op in _ORDERING:
            raise self.error(
                f"`{atom}` orders booleans with {op}",
                "compare booleans with == or != (or use the column alone)",
            )


def _described(operand: Column | Literal, kind: str) -> str:
    if isinstance(operand, Column):
        return f"column {operand.name} ({kind})"
    return f"the {kind} {operand}"


def _type_fix(left_kind: str, right_kind: str) -> str:
    if "string" in (left_kind, right_kind) and "number" in (left_kind, right_kind):
        return "quote a value compared with a string column; leave a number unquoted"
    return "compare a column with a value of the same kind (true/false for booleans)"


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return f"closest existing columns: {', '.join(close)}"
    if len(known) <= 30:
        return f"existing columns: {', '.join(known)}"
    return f"the table has {len(known)} columns and none is close; check the spelling"
