"""Parse rule text (or its structured ``all``/``any``/``not`` form) into a tree.

Rule text is read by Python's own parser in expression mode, then every node of
the syntax tree is checked against a short whitelist. Nothing is ever
evaluated, so a rule cannot call a function, read an attribute or compute.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from telcoreach.errors import RuleError
from telcoreach.rules._tree import (
    And,
    Column,
    Compare,
    Condition,
    In,
    IsNull,
    Literal,
    Not,
    Operand,
    Or,
)

__all__ = ["ALLOWED_SYNTAX", "parse"]

#: One line naming everything a rule may contain, quoted in every syntax error.
ALLOWED_SYNTAX = (
    "rules may use: and, or, not, ==, !=, <, <=, >, >=, in [...], not in [...], "
    "is null, is not null, parentheses, column names, and string, number or "
    "boolean (true/false) constants"
)

_STRUCTURED_KEYS = ("all", "any", "not")
_INT64_MAX = 2**63 - 1
_NULL_NAMES = frozenset({"null", "None"})
_BOOLEAN_NAMES = {"true": True, "false": False, "True": True, "False": False}

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}

_ARITHMETIC: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
}

_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Call: "a function call",
    ast.Attribute: "attribute access (a.b)",
    ast.Subscript: "indexing or slicing (a[...])",
    ast.Lambda: "a lambda",
    ast.IfExp: "a conditional expression (x if c else y)",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.NamedExpr: "an assignment expression (:=)",
    ast.Starred: "unpacking (*x)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


class _Null:
    """The ``null`` keyword: valid only right of ``is`` / ``is not``."""


_NULL = _Null()


def parse(source: str | Mapping[str, Any], *, rule: str | None = None) -> Condition:
    """Return the rule tree of a rule given as text or in structured form.

    Parameters
    ----------
    source : str or mapping
        Rule text such as ``"k12_app_count > 3 and not opted_out"``, or a
        structured form: a mapping with one key, ``all`` (a list: every item
        must hold), ``any`` (a list: one item must hold) or ``not`` (one item),
        whose items are rule texts or further structured forms.
    rule : str, optional
        Name of the rule (a tier name, a trigger name), quoted in errors.

    Returns
    -------
    Condition
        An immutable tree; ``str(tree)`` is its canonical text.

    Raises
    ------
    RuleError
        When the text is not valid syntax or uses a construct outside the
        language; the message names the construct and lists what is allowed.

    Examples
    --------
    >>> print(parse({"all": ["a > 1", {"not": "b in ['x', 'y']"}]}))
    a > 1 and not b in ["x", "y"]
    """
    return _parse_any(source, rule=rule, path="")


def _parse_any(source: object, *, rule: str | None, path: str) -> Condition:
    if isinstance(source, str):
        return _TextParser(source, rule=rule, path=path).parse()
    if isinstance(source, Mapping):
        return _parse_structured(source, rule=rule, path=path)
    raise RuleError(
        f"{_where(rule, path)}: expected rule text (a string) or a mapping with "
        f"one key out of {', '.join(_STRUCTURED_KEYS)}; found "
        f"{type(source).__name__} {source!r}. Quote the rule as a string."
    )


def _parse_structured(
    source: Mapping[str, Any], *, rule: str | None, path: str
) -> Condition:
    keys = list(source)
    if len(keys) != 1 or keys[0] not in _STRUCTURED_KEYS:
        raise RuleError(
            f"{_where(rule, path)}: a structured condition has exactly one key out "
            f"of {', '.join(_STRUCTURED_KEYS)}; found keys {keys!r}. Write e.g. "
            "{all: ['a > 1', 'b < 2']}."
        )
    key = keys[0]
    value = source[key]
    here = f"{path}.{key}" if path else key
    if key == "not":
        return Not(_parse_any(value, rule=rule, path=here))

    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise RuleError(
            f"{_where(rule, here)}: expected a non-empty list of conditions; "
            f"found {value!r}. Write {key}: ['a > 1', 'b < 2']."
        )
    items = [
        _parse_any(item, rule=rule, path=f"{here}[{index}]")
        for index, item in enumerate(value)
    ]
    return _combine(And if key == "all" else Or, items)


def _combine(kind: type[And] | type[Or], items: Sequence[Condition]) -> Condition:
    # `a and (b and c)` is `a and b and c`: flatten so equal rules are equal trees.
    if len(items) == 1:
        return items[0]
    flat: list[Condition] = []
    for item in items:
        flat.extend(item.operands if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def _where(rule: str | None, path: str) -> str:
    where = f"rule {rule!r}" if rule else "rule"
    return f"{where} at {path}" if path else where


class _TextParser:
    """Walks Python's syntax tree of one rule text, building rule nodes."""

    def __init__(self, text: str, *, rule: str | None, path: str) -> None:
        self.text = text
        self.rule = rule
        self.path = path

    def parse(self) -> Condition:
        if not self.text.strip():
            raise self.error("the rule is empty", "write a condition such as a > 1")
        try:
            expression = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise self.error(
                f"not valid rule syntax at character {exc.offset or 0} ({exc.msg})",
                _syntax_hint(self.text),
            ) from None
        return self.condition(expression.body)

    def error(self, problem: str, fix: str = ALLOWED_SYNTAX) -> RuleError:
        return RuleError(
            f"{_where(self.rule, self.path)} `{self.text}`: {problem}; {fix}"
        )

    def not_allowed(self, node: ast.AST) -> RuleError:
        position = getattr(node, "col_offset", None)
        at = f" at character {position + 1}" if position is not None else ""
        return self.error(f"{_describe(node)} is not allowed{at}")

    def condition(self, node: ast.expr) -> Condition:
        if isinstance(node, ast.BoolOp):
            kind = And if isinstance(node.op, ast.And) else Or
            return _combine(kind, [self.condition(value) for value in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self.comparison(node)

        operand = self.operand(node)
        if isinstance(operand, _Null):
            raise self.error(
                "null alone is not a condition", "test a column: x is null"
            )
        if isinstance(operand, Literal) and operand.kind != "boolean":
            raise self.error(
                f"the constant {operand} is not a condition",
                "compare it with a column, e.g. x == " + str(operand),
            )
        return operand

    def comparison(self, node: ast.Compare) -> Condition:
        left_nodes = [node.left, *node.comparators[:-1]]
        parts = [
            self.pair(left, op, right)
            for left, op, right in zip(
                left_nodes, node.ops, node.comparators, strict=True
            )
        ]
        # `1 <= x < 5` is `1 <= x and x < 5`, as in Python.
        return _combine(And, parts)

    def pair(self, left_node: ast.expr, op: ast.cmpop, right_node: ast.expr):
        if isinstance(op, ast.In | ast.NotIn):
            return self.membership(left_node, isinstance(op, ast.NotIn), right_node)

        left = self.operand(left_node)
        right = self.operand(right_node)
        if isinstance(op, ast.Is | ast.IsNot):
            return self.null_test(left, isinstance(op, ast.IsNot), right)

        symbol = _COMPARISONS[type(op)]
        if isinstance(left, _Null) or isinstance(right, _Null):
            negation = "not " if symbol == "!=" else ""
            column = left if isinstance(left, Column) else right
            name = column.name if isinstance(column, Column) else "x"
            raise self.error(
                f"comparing with null using {symbol} is never true",
                f"write `{name} is {negation}null`",
            )
        if isinstance(left, Literal) and isinstance(right, Literal):
            raise self.error(
                f"the comparison {left} {symbol} {right} has no column",
                "one side must be a column name (unquoted)",
            )
        return Compare(left, symbol, right)

    def null_test(self, left: object, negated: bool, right: object) -> IsNull:
        operator = "is not" if negated else "is"
        if not isinstance(right, _Null):
            raise self.error(
                f"`{operator}` only tests for null, found `{operator} {right}`",
                "write `x is null` / `x is not null`; compare values with == or !=",
            )
        if not isinstance(left, Column):
            raise self.error(
                f"the left of `{operator} null` must be a column, found {left}",
                "write `x is null` with x a column name",
            )
        return IsNull(left, negated)

    def membership(self, left_node: ast.expr, negated: bool, right_node: ast.expr):
        operator = "not in" if negated else "in"
        left = self.operand(left_node)
        if not isinstance(left, Column):
            raise self.error(
                f"the left of `{operator}` must be a column, found {left}",
                f'write e.g. age_band {operator} ["35-44", "45-54"]',
            )
        if not isinstance(right_node, ast.List | ast.Tuple):
            raise self.error(
                f"`{operator}` needs a [list] of constants on its right, found "
                f"{_describe(right_node)}",
                f'write e.g. {left} {operator} ["a", "b"]',
            )
        if not right_node.elts:
            raise self.error(
                f"the list after `{operator}` is empty", "list at least one value"
            )
        values = []
        for element in right_node.elts:
            value = self.operand(element)
            if not isinstance(value, Literal):
                raise self.error(
                    f"the list after `{operator}` may hold only constants, found "
                    f"{'null' if isinstance(value, _Null) else value}",
                    "test nulls separately with `x is null`",
                )
            values.append(value)
        kinds = sorted({value.kind for value in values})
        if len(kinds) > 1:
            raise self.error(
                f"the list after `{operator}` mixes {' and '.join(kinds)} values",
                "list values of one kind",
            )
        return In(left, tuple(values), negated)

    def operand(self, node: ast.expr) -> Operand | _Null:
        if isinstance(node, ast.Name):
            if node.id in _NULL_NAMES:
                return _NULL
            if node.id in _BOOLEAN_NAMES:
                return Literal(_BOOLEAN_NAMES[node.id], "boolean")
            return Column(node.id)
        if isinstance(node, ast.Constant):
            return self.constant(node.value, node)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and _is_number(node.operand.value)
        ):
            value = node.operand.value
            return self.constant(
                -value if isinstance(node.op, ast.USub) else value, node
            )
        raise self.not_allowed(node)

    def constant(self, value: object, node: ast.expr) -> Literal | _Null:
        if value is None:
            return _NULL
        if isinstance(value, bool | str | float):
            return Literal.of(value)
        if isinstance(value, int):
            if abs(value) > _INT64_MAX:
                raise self.error(
                    f"the integer {value} does not fit in 64 bits",
                    "use a smaller number",
                )
            return Literal.of(value)
        raise self.error(
            f"the constant {value!r} ({type(value).__name__}) is not allowed at "
            f"character {node.col_offset + 1}"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr):
        word = "and" if isinstance(node.op, ast.BitAnd) else "or"
        return f"the operator {_ARITHMETIC[type(node.op)]} (use {word})"
    if isinstance(node, ast.BinOp):
        return f"arithmetic ({_ARITHMETIC.get(type(node.op), '?')})"
    if isinstance(node, ast.Name):
        return f"the column {node.id}"
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Invert):
            return "the ~ operator (use not)"
        return "a sign on something other than a number"
    if isinstance(node, ast.List | ast.Tuple):
        return "a list outside `in [...]`"
    if isinstance(node, ast.BoolOp | ast.Compare):
        return "a condition used as a value"
    for construct, description in _CONSTRUCTS.items():
        if isinstance(node, construct):
            return description
    return f"the construct {type(node).__name__}"


def _syntax_hint(text: str) -> str:
    padded = f" {text} "
    if "&&" in text or "||" in text or " AND " in padded or " OR " in padded:
        return "write the logical operators in lowercase words: and, or, not"
    if " NOT " in padded or "!" in text.replace("!=", ""):
        return "write negation as the word not"
    if "=" in text.replace("==", "").replace("!=", "").replace("<=", "").replace(
        ">=", ""
    ):
        return "test equality with == (a single = is not a comparison)"
    if "between" in text.lower():
        return "write a range as a chained comparison: 18 <= age <= 30"
    return ALLOWED_SYNTAX
