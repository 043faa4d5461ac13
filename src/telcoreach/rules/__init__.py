"""The one rule language of telcoreach: tier rules, triggers, gates, fraud rules.

A rule is a boolean condition over the columns of a table (or the fields of an
event), such as ``k12_app_count > 3 and not opted_out``. It is parsed once
into a small immutable tree, checked against a schema, then compiled:

- ``to_ibis`` gives an Ibis filter for batch work on the lake (DuckDB, Spark);
- ``to_predicate`` gives a per-event function for the stream;
- ``to_arrow`` gives a vectorised mask over an Arrow batch of events.

All three share SQL's three-valued logic and agree row for row; see
``docs/rules.md`` for the grammar, the null semantics and the errors.

Examples
--------
>>> import ibis
>>> from telcoreach.rules import parse, to_ibis, to_predicate
>>> rule = parse('age_band in ["35-44", "45-54"] and not opted_out')
>>> to_predicate(rule)({"age_band": "35-44", "opted_out": False})
True
>>> to_predicate(rule)({"age_band": "35-44", "opted_out": None})
False
"""

from __future__ import annotations

from telcoreach.rules._arrow import to_arrow
from telcoreach.rules._check import ColumnKind, column_kinds, validate
from telcoreach.rules._ibis import to_ibis
from telcoreach.rules._parse import ALLOWED_SYNTAX, parse
from telcoreach.rules._python import evaluate, is_null, to_predicate
from telcoreach.rules._tree import (
    COMPARISON_OPERATORS,
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
    atoms,
    columns,
)

__all__ = [
    "ALLOWED_SYNTAX",
    "COMPARISON_OPERATORS",
    "And",
    "Column",
    "ColumnKind",
    "Compare",
    "Condition",
    "In",
    "IsNull",
    "Literal",
    "Node",
    "Not",
    "Or",
    "atoms",
    "column_kinds",
    "columns",
    "evaluate",
    "is_null",
    "parse",
    "to_arrow",
    "to_ibis",
    "to_predicate",
    "validate",
]
