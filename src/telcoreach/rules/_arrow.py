"""Compile a rule tree into a vectorised evaluator over Arrow record batches.

This is the stream's fast path: a micro-batch of events arrives as an Arrow
record batch and one call gives the mask of events matching the rule, with the
same three-valued logic as the Ibis and per-event compilers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc

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

__all__ = ["to_arrow"]

_FUNCTIONS = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}

Batch = pa.Table | pa.RecordBatch
_Datum = pa.Array | pa.ChunkedArray | pa.Scalar


def to_arrow(tree: Node, *, rule: str | None = None) -> Callable[[Batch], pa.Array]:
    """Return a function giving the boolean mask of rows of a batch matching a rule.

    Parameters
    ----------
    tree : Node
        A parsed rule.
    rule : str, optional
        Name of the rule, quoted in errors.

    Returns
    -------
    callable
        ``mask(batch) -> pyarrow.BooleanArray`` for a ``pyarrow.Table`` or
        ``RecordBatch``: ``True`` where the rule is true, ``False`` where it is
        false or unknown, never null. The batch's schema is checked on each
        call (unknown column, type mismatch), which costs microseconds.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from telcoreach.rules import parse
    >>> mask = to_arrow(parse("a > 1 and not flag"))
    >>> mask(pa.table({"a": [0, 2, 3], "flag": [False, False, None]})).to_pylist()
    [False, True, False]
    """

    def mask(batch: Batch) -> pa.Array:
        validate(tree, {field.name: field.type for field in batch.schema}, rule=rule)
        result = pc.fill_null(_condition(tree, batch), False)
        if isinstance(result, pa.Scalar):
            return pa.array([result.as_py()] * batch.num_rows, type=pa.bool_())
        if isinstance(result, pa.ChunkedArray):
            return result.combine_chunks()
        return result

    return mask


def _condition(node: Condition, batch: Batch) -> _Datum:
    if isinstance(node, And):
        return reduce(
            pc.and_kleene, (_condition(item, batch) for item in node.operands)
        )
    if isinstance(node, Or):
        return reduce(pc.or_kleene, (_condition(item, batch) for item in node.operands))
    if isinstance(node, Not):
        return pc.invert(_condition(node.operand, batch))
    if isinstance(node, IsNull):
        missing = pc.is_null(_value(node.column, batch))
        return pc.invert(missing) if node.negated else missing
    if isinstance(node, In):
        return _membership(node, batch)
    if isinstance(node, Compare):
        left = _value(node.left, batch)
        right = _value(node.right, batch)
        try:
            return _FUNCTIONS[node.op](left, right)
        except pa.ArrowNotImplementedError as exc:
            raise RuleError(
                f"rule `{node}`: Arrow cannot compare these types ({exc}); "
                "compare values of the same kind"
            ) from exc
    return _value(node, batch)


def _membership(node: In, batch: Batch) -> _Datum:
    column = _value(node.column, batch)
    value_set = pa.array([literal.value for literal in node.values])
    if _is_number(column.type) and _is_number(value_set.type):
        # Widen both sides rather than narrow the list (300 must not wrap in int8).
        common = (
            pa.int64()
            if pa.types.is_integer(column.type) and pa.types.is_integer(value_set.type)
            else pa.float64()
        )
        column = pc.cast(column, common)
        value_set = value_set.cast(common)
    elif not column.type.equals(value_set.type):
        value_set = value_set.cast(column.type)
    found = pc.is_in(column, value_set=value_set)
    if node.negated:
        found = pc.invert(found)
    # is_in answers false for a null input; the rule language says unknown.
    return pc.if_else(pc.is_null(column), pa.scalar(None, pa.bool_()), found)


def _value(node: Column | Literal, batch: Batch) -> _Datum:
    if isinstance(node, Literal):
        return pa.scalar(node.value)
    column = batch.column(node.name)
    if pa.types.is_floating(column.type):
        return pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column


def _is_number(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
