"""The rule language: parsing, checking, and three compilers that must agree."""

from __future__ import annotations

import math
import sys

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcoreach.errors import RuleError
from telcoreach.rules import (
    And,
    Column,
    Compare,
    In,
    IsNull,
    Literal,
    Not,
    Or,
    atoms,
    columns,
    evaluate,
    parse,
    to_arrow,
    to_ibis,
    to_predicate,
    validate,
)

PROFILE_SCHEMA = {
    "k12_app_count": "int64",
    "tutoring_searches": "int64",
    "online_min_per_day_school_zone": "float64",
    "age_band": "string",
    "opted_out": "boolean",
    "home_cell": "string",
    "first_seen": "timestamp",
}


def number(value):
    return Literal(value, "number")


def string(value):
    return Literal(value, "string")


# --- parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        (
            "k12_app_count > 3 and tutoring_searches >= 1",
            And(
                (
                    Compare(Column("k12_app_count"), ">", number(3)),
                    Compare(Column("tutoring_searches"), ">=", number(1)),
                )
            ),
        ),
        (
            "online_min_per_day_school_zone > 120 and not opted_out",
            And(
                (
                    Compare(Column("online_min_per_day_school_zone"), ">", number(120)),
                    Not(Column("opted_out")),
                )
            ),
        ),
        (
            'age_band in ["35-44", "45-54"]',
            In(Column("age_band"), (string("35-44"), string("45-54"))),
        ),
        (
            '(a >= 1 or b < 2.5) and c == "x"',
            And(
                (
                    Or(
                        (
                            Compare(Column("a"), ">=", number(1)),
                            Compare(Column("b"), "<", number(2.5)),
                        )
                    ),
                    Compare(Column("c"), "==", string("x")),
                )
            ),
        ),
        ("x is null", IsNull(Column("x"))),
        ("x is not null", IsNull(Column("x"), negated=True)),
        ("age_band not in ('<18',)", In(Column("age_band"), (string("<18"),), True)),
        ("x > -2", Compare(Column("x"), ">", number(-2))),
        ("flag == true", Compare(Column("flag"), "==", Literal(True, "boolean"))),
    ],
)
def test_parse_builds_the_documented_tree(text, tree):
    assert parse(text) == tree


def test_chained_comparison_is_a_range():
    assert parse("18 <= age < 30") == And(
        (
            Compare(number(18), "<=", Column("age")),
            Compare(Column("age"), "<", number(30)),
        )
    )


def test_nested_and_is_flattened():
    assert parse("a > 1 and (b > 2 and c > 3)") == parse("a > 1 and b > 2 and c > 3")


def test_structured_form_builds_the_same_tree_as_text():
    structured = {
        "all": [
            "k12_app_count > 3",
            {"any": ["tutoring_searches >= 1", "age_band in ['35-44']"]},
            {"not": "opted_out"},
        ]
    }
    text = (
        "k12_app_count > 3 and (tutoring_searches >= 1 or age_band in ['35-44'])"
        " and not opted_out"
    )
    assert parse(structured) == parse(text)


def test_structured_form_error_gives_the_path():
    with pytest.raises(RuleError, match=r"rule 'parents' at all\[1\].*arithmetic"):
        parse({"all": ["a > 1", "a + 1 > 2"]}, rule="parents")


def test_structured_form_rejects_an_unknown_key():
    with pytest.raises(RuleError, match="exactly one key out of all, any, not"):
        parse({"every": ["a > 1"]})


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("len(age_band) > 3", "a function call"),
        ("profile.age > 3", "attribute access"),
        ("k12_app_count + 1 > 3", r"arithmetic \(\+\)"),
        ("k12_app_count ** 2 > 3", r"arithmetic \(\*\*\)"),
        ("age_band[0] == 'a'", "indexing"),
        ("(lambda: True)", "a lambda"),
        ("a if b else c", "conditional expression"),
        ("a > 1 & b > 2", "the operator &"),
        ("__import__('os').system('true')", "a function call"),
    ],
)
def test_disallowed_construct_is_named_with_the_allowed_operators(text, construct):
    with pytest.raises(RuleError) as caught:
        parse(text, rule="demo")

    message = str(caught.value)
    assert "rule 'demo'" in message
    assert caught.match(construct)
    assert "==, !=, <, <=, >, >=, in [...]" in message


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("x = 1", "=="),
        ("a > 1 && b > 2", "and, or, not"),
        ("x == null", "x is null"),
        ("x != None", "x is not null"),
        ("x is 3", "only tests for null"),
        ("x in y", "list"),
        ("x in []", "empty"),
        ("x in [1, 'a']", "mixes"),
        ("3 > 2", "no column"),
        ("'x'", "not a condition"),
        ("", "empty"),
    ],
)
def test_syntax_mistakes_get_a_hint(text, hint):
    with pytest.raises(RuleError, match=hint):
        parse(text)


def test_columns_lists_each_column_once_in_reading_order():
    rule = parse("b > 1 and (a is null or b < 5) and c in ['x'] and not d")
    assert columns(rule) == ("b", "a", "c", "d")


def test_atoms_are_the_leaf_conditions():
    rule = parse("not (a > 1 or b is null) and flag")
    assert [str(leaf) for leaf in atoms(rule)] == ["a > 1", "b is null", "flag"]


@given(st.text(max_size=12))
def test_any_string_literal_renders_and_parses_back(value):
    rule = Compare(Column("home_cell"), "==", string(value))
    assert parse(str(rule)) == rule


# --- checking against a schema ---------------------------------------------


def test_unknown_column_names_the_rule_the_column_and_the_closest_columns():
    rule = parse("online_min_per_day_scool_zone > 120")
    with pytest.raises(RuleError) as caught:
        validate(rule, PROFILE_SCHEMA, rule="student")

    message = str(caught.value)
    assert "rule 'student'" in message
    assert "'online_min_per_day_scool_zone'" in message
    assert "closest existing columns: online_min_per_day_school_zone" in message


def test_string_column_compared_with_a_number_is_an_error():
    with pytest.raises(RuleError, match=r"column age_band \(string\) with the number"):
        validate(parse("age_band > 35"), PROFILE_SCHEMA)


def test_number_column_in_a_list_of_strings_is_an_error():
    with pytest.raises(RuleError, match="k12_app_count"):
        validate(parse("k12_app_count in ['3', '4']"), PROFILE_SCHEMA)


def test_a_number_column_cannot_stand_alone_as_a_condition():
    with pytest.raises(RuleError, match="only a boolean column can"):
        validate(parse("k12_app_count and not opted_out"), PROFILE_SCHEMA)


def test_booleans_cannot_be_ordered():
    with pytest.raises(RuleError, match="orders booleans"):
        validate(parse("opted_out > false"), PROFILE_SCHEMA)


def test_timestamps_can_only_be_tested_for_null():
    validate(parse("first_seen is not null"), PROFILE_SCHEMA)
    with pytest.raises(RuleError, match="type rules cannot compare"):
        validate(parse("first_seen > '2024-01-01'"), PROFILE_SCHEMA)


def test_to_ibis_checks_the_table_schema():
    table = ibis.table(PROFILE_SCHEMA, name="profile")
    with pytest.raises(RuleError, match="closest existing columns: age_band"):
        to_ibis(parse("age_bnd == '18-24'"), table, rule="young")


# --- per-event semantics (SQL three-valued logic) --------------------------

# SQL's truth tables for and/or/not over true, false and unknown (None).
KLEENE_AND = {
    (True, True): True,
    (True, False): False,
    (True, None): None,
    (False, False): False,
    (False, None): False,
    (None, None): None,
}
KLEENE_OR = {
    (True, True): True,
    (True, False): True,
    (True, None): True,
    (False, False): False,
    (False, None): None,
    (None, None): None,
}


@pytest.mark.parametrize(("pair", "expected"), KLEENE_AND.items())
def test_and_follows_the_sql_truth_table(pair, expected):
    for p, q in (pair, pair[::-1]):
        assert evaluate(parse("p and q"), {"p": p, "q": q}) is expected


@pytest.mark.parametrize(("pair", "expected"), KLEENE_OR.items())
def test_or_follows_the_sql_truth_table(pair, expected):
    for p, q in (pair, pair[::-1]):
        assert evaluate(parse("p or q"), {"p": p, "q": q}) is expected


def test_not_of_unknown_is_unknown_so_not_a_match():
    opted_in = to_predicate(parse("not opted_out"))
    assert opted_in({"opted_out": False}) is True
    assert opted_in({"opted_out": True}) is False
    assert opted_in({"opted_out": None}) is False


def test_comparison_with_null_matches_neither_way():
    above = to_predicate(parse("k12_app_count > 3"))
    not_above = to_predicate(parse("not k12_app_count > 3"))
    assert above({"k12_app_count": None}) is False
    assert not_above({"k12_app_count": None}) is False


def test_null_tests_see_missing_values():
    row = {"home_cell": None}
    assert to_predicate(parse("home_cell is null"))(row) is True
    assert to_predicate(parse("home_cell is not null"))(row) is False


def test_nan_and_pandas_na_count_as_null():
    import pandas as pd

    rule = to_predicate(parse("minutes is null"))
    assert rule({"minutes": math.nan})
    assert rule({"minutes": pd.NA})
    assert not rule({"minutes": 0.0})


def test_in_and_not_in_on_events():
    rule = parse('age_band in ["35-44", "45-54"]')
    assert to_predicate(rule)({"age_band": "45-54"}) is True
    assert to_predicate(rule)({"age_band": "25-34"}) is False
    excluded = to_predicate(parse('age_band not in ["35-44", "45-54"]'))
    assert excluded({"age_band": "25-34"}) is True
    assert excluded({"age_band": None}) is False


def test_numpy_values_compare_like_python_numbers():
    import numpy as np

    rule = to_predicate(parse("k12_app_count > 3 and tutoring_searches in [1, 2]"))
    assert rule({"k12_app_count": np.int64(4), "tutoring_searches": np.int32(2)})


def test_event_without_a_field_names_it_and_the_closest_field():
    rule = to_predicate(parse("tutoring_searches >= 1"), rule="parents")
    with pytest.raises(
        RuleError, match=r"rule 'parents'.*closest fields: tutoring_search"
    ):
        rule({"tutoring_search": 1})


def test_event_with_a_string_where_a_number_is_compared_is_an_error():
    rule = to_predicate(parse("k12_app_count > 3"))
    with pytest.raises(RuleError, match="expects k12_app_count to be a number"):
        rule({"k12_app_count": "4"})


def test_to_predicate_with_a_schema_fails_before_any_event():
    with pytest.raises(RuleError, match="unknown column 'age'"):
        to_predicate(parse("age > 3"), schema=PROFILE_SCHEMA)


def test_arrow_mask_on_a_batch():
    batch = pa.table(
        {
            "k12_app_count": pa.array([5, 5, None, 1], pa.int64()),
            "opted_out": pa.array([False, None, False, False]),
        }
    )
    mask = to_arrow(parse("k12_app_count > 3 and not opted_out"))(batch)
    assert mask.to_pylist() == [True, False, False, False]


# --- the compilers agree (hypothesis) --------------------------------------

AGREEMENT_SCHEMA = pa.schema(
    [
        ("n", pa.int64()),
        ("m", pa.int32()),
        ("x", pa.float64()),
        ("s", pa.string()),
        ("flag", pa.bool_()),
    ]
)
NUMBER_COLUMNS = ("n", "m", "x")
NUMBERS = st.one_of(st.integers(-3, 3), st.sampled_from([-2.5, 0.0, 1.5, 2.0]))
STRINGS = st.text(alphabet="ab", max_size=2)
BOOLEANS = st.booleans()
OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _flat(kind, operands):
    flat = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return kind(tuple(flat))


def _compare(column_name, literal_values, operators=OPERATORS):
    return st.builds(
        lambda value, op, flip: (
            Compare(Literal.of(value), op, Column(column_name))
            if flip
            else Compare(Column(column_name), op, Literal.of(value))
        ),
        literal_values,
        operators,
        st.booleans(),
    )


def _membership(column_name, literal_values):
    return st.builds(
        lambda values, negated: In(
            Column(column_name), tuple(Literal.of(v) for v in values), negated
        ),
        st.lists(literal_values, min_size=1, max_size=3),
        st.booleans(),
    )


LEAVES = st.one_of(
    *(_compare(name, NUMBERS) for name in NUMBER_COLUMNS),
    _compare("s", STRINGS),
    _compare("flag", BOOLEANS, st.sampled_from(["==", "!="])),
    st.builds(
        Compare,
        st.sampled_from(NUMBER_COLUMNS).map(Column),
        OPERATORS,
        st.sampled_from(NUMBER_COLUMNS).map(Column),
    ),
    *(_membership(name, NUMBERS) for name in NUMBER_COLUMNS),
    _membership("s", STRINGS),
    st.builds(IsNull, st.sampled_from(AGREEMENT_SCHEMA.names).map(Column), BOOLEANS),
    st.just(Column("flag")),
    st.sampled_from([Literal(True, "boolean"), Literal(False, "boolean")]),
)
RULES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        children.map(Not),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: _flat(And, xs)),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: _flat(Or, xs)),
    ),
    max_leaves=8,
)
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "n": st.none() | st.integers(-3, 3),
            "m": st.none() | st.integers(-3, 3),
            "x": st.none() | st.sampled_from([-2.5, 0.0, 1.5, 2.0, math.nan]),
            "s": st.none() | STRINGS,
            "flag": st.none() | BOOLEANS,
        }
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def duckdb():
    return ibis.duckdb.connect()


@given(rule=RULES)
def test_rendered_rule_parses_back_to_the_same_tree(rule):
    assert parse(str(rule)) == rule


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rule=RULES, rows=ROWS)
def test_ibis_predicate_and_arrow_agree_on_every_row(duckdb, rule, rows):
    batch = pa.Table.from_pylist(rows, schema=AGREEMENT_SCHEMA)
    table = ibis.memtable(batch)

    in_engine = duckdb.to_pyarrow(table.select(match=to_ibis(rule, table)))
    per_event = [to_predicate(rule)(row) for row in rows]
    vectorised = to_arrow(rule)(batch).to_pylist()

    assert in_engine["match"].to_pylist() == per_event
    assert vectorised == per_event


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(
    max_examples=1,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(rules=st.lists(RULES, min_size=60, max_size=60), rows=ROWS)
def test_spark_agrees_with_the_predicate(tmp_path, monkeypatch, rules, rows):
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    monkeypatch.chdir(tmp_path)  # Spark may leave a warehouse folder in the cwd
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    path = tmp_path / "rows.parquet"
    numbered = [dict(row, row_id=index) for index, row in enumerate(rows)]
    schema = AGREEMENT_SCHEMA.append(pa.field("row_id", pa.int64()))
    pq.write_table(pa.Table.from_pylist(numbered, schema=schema), path)

    spark = ibis.pyspark.connect()
    table = spark.read_parquet(str(path))
    matches = {f"rule_{i}": to_ibis(rule, table) for i, rule in enumerate(rules)}
    in_spark = spark.to_pyarrow(table.select("row_id", **matches).order_by("row_id"))

    for index, rule in enumerate(rules):
        per_event = [to_predicate(rule)(row) for row in rows]
        assert in_spark[f"rule_{index}"].to_pylist() == per_event, str(rule)
