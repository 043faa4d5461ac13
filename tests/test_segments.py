"""Tier rules: loading, first-match assignment, sizing and explanations."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telcoreach.errors import ConfigError, RuleError, SchemaError
from telcoreach.rules import to_predicate
from telcoreach.segments import (
    SubscriberNotFoundError,
    TierRules,
    assign_tiers,
    estimate_tiers,
    explain,
    load_rules,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RULES = ROOT / "examples" / "rules.yaml"

PROFILE_SCHEMA = pa.schema(
    [
        ("subscriber", pa.string()),
        ("k12_app_count", pa.int64()),
        ("tutoring_searches", pa.int64()),
        ("online_min_per_day", pa.float64()),
        ("online_min_per_day_school_zone", pa.float64()),
        ("online_min_per_day_home", pa.float64()),
        ("online_min_per_day_work", pa.float64()),
        ("days_near_school", pa.int64()),
        ("age_band", pa.string()),
        ("gender", pa.string()),
        ("radius_of_gyration_km", pa.float64()),
        ("subway_commuter", pa.bool_()),
        ("home_cell", pa.string()),
        ("work_cell", pa.string()),
        ("consent_marketing", pa.bool_()),
        ("opted_out", pa.bool_()),
    ]
)


def token(label: str) -> str:
    """Return a subscriber token shaped like ingest's: 24 lowercase base32 chars."""
    digest = hashlib.sha256(label.encode()).digest()[:15]
    return base64.b32encode(digest).decode().lower()


def person(label: str, **values) -> dict:
    row = dict.fromkeys(PROFILE_SCHEMA.names)
    row.update(
        subscriber=token(label),
        k12_app_count=0,
        tutoring_searches=0,
        online_min_per_day=60.0,
        online_min_per_day_school_zone=0.0,
        online_min_per_day_home=40.0,
        online_min_per_day_work=20.0,
        days_near_school=0,
        age_band="25-34",
        gender="f",
        radius_of_gyration_km=3.0,
        subway_commuter=False,
        home_cell="c1",
        work_cell="c2",
        consent_marketing=True,
        opted_out=False,
    )
    row.update(values)
    return row


# Each person is written for one behaviour; the comments give the expected tier.
PEOPLE = [
    # parent: 5 K-12 apps and 2 tutoring searches
    person("parent", k12_app_count=5, tutoring_searches=2, age_band="35-44"),
    # also > 120 min near school, but the parent tier comes first
    person("parent-at-school", k12_app_count=4, tutoring_searches=1,
           online_min_per_day_school_zone=200.0),
    # student: 180 min a day near a school
    person("student", age_band="<18", online_min_per_day_school_zone=180.0),
    # many K-12 apps but never searched for tutoring: not a parent
    person("no-search", k12_app_count=6, online_min_per_day_school_zone=30.0),
    # unknown app count: the parent rule is unknown, so no match
    person("unknown-apps", k12_app_count=None, tutoring_searches=3),
    # NaN minutes near school read as null: not a student
    person("nan-minutes", online_min_per_day_school_zone=float("nan")),
    # no home cell, opt-out unknown
    person("no-home", home_cell=None, opted_out=None),
    # exactly 120 minutes is not more than 120
    person("boundary", online_min_per_day_school_zone=120.0),
]  # fmt: skip

EXPECTED_TIERS = {
    "parent": "high-potential parent",
    "parent-at-school": "high-potential parent",
    "student": "student",
    "no-search": "low priority",
    "unknown-apps": "low priority",
    "nan-minutes": "low priority",
    "no-home": "low priority",
    "boundary": "low priority",
}


@pytest.fixture(scope="module")
def duckdb():
    return ibis.duckdb.connect()


@pytest.fixture(scope="module")
def profile():
    return ibis.memtable(pa.Table.from_pylist(PEOPLE, schema=PROFILE_SCHEMA))


@pytest.fixture(scope="module")
def rules():
    return load_rules(EXAMPLE_RULES)


def tiers_by_subscriber(duckdb, table) -> dict[str, str]:
    rows = duckdb.to_pyarrow(table).to_pylist()
    return {row["subscriber"]: row["tier"] for row in rows}


def rules_from(tiers: list[dict], default: str = "rest") -> TierRules:
    return TierRules.from_mapping({"tiers": tiers, "default": default})


# --- the rules file ----------------------------------------------------------


def test_example_rules_file_has_the_three_tiers(rules):
    assert rules.names == ("high-potential parent", "student", "low priority")
    assert rules.tiers[0].rule == "k12_app_count > 3 and tutoring_searches >= 1"
    assert rules.tiers[0].description.startswith("Parents of school children")


def test_unknown_key_is_reported_with_its_path_and_the_allowed_keys(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("tiers:\n  - name: student\n    wen: a > 1\ndefault: rest\n")

    with pytest.raises(ConfigError) as caught:
        load_rules(path)

    message = str(caught.value)
    assert str(path) in message
    assert "tiers[0].wen: unknown key (did you mean 'when'?)" in message
    assert "expected one of name, when, description" in message


def test_wrong_type_is_reported_with_expected_type_and_value_found():
    with pytest.raises(ConfigError) as caught:
        rules_from([{"name": ["a", "b"], "when": "a > 1"}])

    assert "tiers[0].name: expected a valid string, found list ['a', 'b']" in str(
        caught.value
    )


def test_missing_default_is_reported():
    with pytest.raises(ConfigError, match="default: required key is missing"):
        TierRules.from_mapping({"tiers": [{"name": "a", "when": "x > 1"}]})


def test_tier_names_must_be_unique():
    with pytest.raises(ConfigError, match=r"tiers\[1\].name: tier 'a' is named twice"):
        rules_from([{"name": "a", "when": "x > 1"}, {"name": "a", "when": "x > 2"}])


def test_invalid_yaml_gives_the_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("tiers:\n  - name: [unclosed\ndefault: rest\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_rules(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the tier rules file"):
        load_rules(tmp_path / "absent.yaml")


def test_bad_operator_error_names_the_tier_and_the_construct():
    with pytest.raises(RuleError) as caught:
        rules_from([{"name": "parents", "when": "k12_app_count ** 2 > 9"}])

    message = str(caught.value)
    assert "tiers[0].when" in message
    assert "rule 'parents'" in message
    assert "arithmetic (**) is not allowed" in message


def test_structured_when_gives_the_same_rule_as_text():
    structured = rules_from(
        [
            {
                "name": "young commuter",
                "when": {
                    "all": [
                        'age_band in ["18-24", "25-34"]',
                        "subway_commuter",
                        {"not": "opted_out"},
                    ]
                },
            }
        ]
    )
    text = rules_from(
        [
            {
                "name": "young commuter",
                "when": 'age_band in ["18-24", "25-34"] and subway_commuter '
                "and not opted_out",
            }
        ]
    )
    assert structured.tiers[0].when == text.tiers[0].when


# --- assignment ----------------------------------------------------------------


def test_first_matching_tier_wins_and_the_rest_get_the_default(duckdb, profile, rules):
    assigned = tiers_by_subscriber(duckdb, assign_tiers(profile, rules))
    assert assigned == {token(label): tier for label, tier in EXPECTED_TIERS.items()}


def test_assignment_has_subscriber_tier_and_rule_index(duckdb, profile, rules):
    table = assign_tiers(profile, rules)
    assert table.schema() == ibis.schema(
        {"subscriber": "string", "tier": "string", "rule_index": "int32"}
    )
    rows = duckdb.to_pyarrow(table).to_pylist()
    index_of = {"high-potential parent": 0, "student": 1, "low priority": 2}
    assert all(row["rule_index"] == index_of[row["tier"]] for row in rows)


def test_reversing_the_order_changes_who_wins_an_overlap(duckdb, profile, rules):
    reversed_rules = TierRules(rules.tiers[::-1], rules.default)
    assigned = tiers_by_subscriber(duckdb, assign_tiers(profile, reversed_rules))
    assert assigned[token("parent-at-school")] == "student"
    assert assigned[token("parent")] == "high-potential parent"


def test_in_and_not_in_tiers(duckdb, profile):
    rules = rules_from(
        [
            {"name": "midlife", "when": 'age_band in ["35-44", "45-54"]'},
            {"name": "not young", "when": 'age_band not in ["<18", "18-24"]'},
        ]
    )
    assigned = tiers_by_subscriber(duckdb, assign_tiers(profile, rules))
    assert assigned[token("parent")] == "midlife"
    assert assigned[token("student")] == "rest"
    assert assigned[token("no-search")] == "not young"


def test_null_values_only_match_null_tests(duckdb, profile):
    rules = rules_from(
        [
            {"name": "reachable", "when": "not opted_out and home_cell is not null"},
            {"name": "no home", "when": "home_cell is null"},
        ]
    )
    assigned = tiers_by_subscriber(duckdb, assign_tiers(profile, rules))
    assert assigned[token("no-home")] == "no home"
    assert assigned[token("parent")] == "reachable"


def test_unknown_column_names_the_tier_the_column_and_close_columns(profile):
    rules = rules_from([{"name": "student", "when": "online_min_school_zone > 120"}])
    with pytest.raises(RuleError) as caught:
        assign_tiers(profile, rules)

    message = str(caught.value)
    assert "rule 'student'" in message
    assert "'online_min_school_zone'" in message
    assert "online_min_per_day_school_zone" in message


def test_type_mismatch_names_the_tier_and_the_column(profile):
    rules = rules_from([{"name": "teen", "when": "age_band < 18"}])
    with pytest.raises(RuleError, match=r"rule 'teen'.*column age_band \(string\)"):
        assign_tiers(profile, rules)


def test_a_true_tier_catches_everyone_left(profile):
    rules = rules_from(
        [
            {"name": "parents", "when": "k12_app_count > 3 and tutoring_searches >= 1"},
            {"name": "everyone else", "when": "true"},
        ]
    )
    estimate = estimate_tiers(profile, rules)
    assert [tier.subscribers for tier in estimate.tiers] == [2, 6, 0]
    assert estimate.tiers[1].matching_rule == 8


def test_profile_without_subscriber_column_is_a_schema_error(rules):
    table = ibis.memtable({"k12_app_count": [1]})
    with pytest.raises(SchemaError, match="no 'subscriber' column"):
        assign_tiers(table, rules)


# --- estimate ----------------------------------------------------------------


def test_estimate_counts_and_shares_every_tier(profile, rules):
    estimate = estimate_tiers(profile, rules)

    expected = {name: 0 for name in rules.names}
    for tier in EXPECTED_TIERS.values():
        expected[tier] += 1
    assert estimate.subscribers == len(PEOPLE)
    assert {tier.name: tier.subscribers for tier in estimate.tiers} == expected
    assert [tier.share for tier in estimate.tiers] == [2 / 8, 1 / 8, 5 / 8]


def test_estimate_shows_subscribers_taken_by_an_earlier_tier(profile, rules):
    student = estimate_tiers(profile, rules).tiers[1]
    # "student" and "parent-at-school" both spend > 120 min near a school.
    assert student.matching_rule == 2
    assert student.taken_by_earlier_tiers == 1


def test_estimate_lists_empty_tiers_and_is_json_ready(profile):
    rules = rules_from([{"name": "nobody", "when": "days_near_school > 1000"}])
    summary = estimate_tiers(profile, rules).to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["tiers"][0]["subscribers"] == 0
    assert summary["tiers"][1] | {"share": None} == {
        "name": "rest",
        "rule_index": 1,
        "rule": None,
        "subscribers": 8,
        "share": None,
        "matching_rule": None,
        "taken_by_earlier_tiers": 0,
    }


def test_estimate_of_an_empty_profile_is_zero(rules):
    empty = ibis.memtable(pa.Table.from_pylist([], schema=PROFILE_SCHEMA))
    estimate = estimate_tiers(empty, rules)
    assert estimate.subscribers == 0
    assert all(tier.subscribers == 0 and tier.share == 0 for tier in estimate.tiers)


# --- explain -----------------------------------------------------------------


def test_explain_names_the_values_that_failed_earlier_tiers(profile, rules):
    explanation = explain(profile, rules, token("student"))

    assert explanation.tier == "student"
    assert [check.outcome for check in explanation.checks] == ["false", "true"]
    parent_check = explanation.checks[0]
    assert parent_check.values == {"k12_app_count": 0, "tutoring_searches": 0}
    assert [c.outcome for c in parent_check.conditions] == ["false", "false"]
    assert explanation.checks[1].values == {"online_min_per_day_school_zone": 180.0}


def test_explain_text_shows_each_condition_with_its_value(profile, rules):
    text = explain(profile, rules, token("unknown-apps")).to_text()

    assert "tier 'low priority'" in text
    assert "unknown  k12_app_count > 3  (k12_app_count = null)" in text
    assert "true     tutoring_searches >= 1  (tutoring_searches = 3)" in text
    assert "no tier rule matched: default tier 'low priority'" in text


def test_explain_dict_is_json_ready_and_reads_nan_as_null(profile, rules):
    explained = explain(profile, rules, token("nan-minutes")).to_dict()

    assert json.loads(json.dumps(explained)) == explained
    student_check = explained["checks"][1]
    assert student_check["outcome"] == "unknown"
    assert student_check["values"] == {"online_min_per_day_school_zone": None}


def test_explain_unknown_token_is_a_clear_error(profile, rules):
    with pytest.raises(SubscriberNotFoundError, match="no profile row has the"):
        explain(profile, rules, token("stranger"))


# --- the engine agrees with the per-row predicate (hypothesis) ----------------

HYPOTHESIS_RULES = rules_from(
    [
        {"name": "parent", "when": "k12_app_count > 3 and tutoring_searches >= 1"},
        {"name": "student", "when": "online_min_per_day_school_zone > 120"},
        {"name": "movers", "when": {"any": ["subway_commuter", {"not": "opted_out"}]}},
        {"name": "no home", "when": "home_cell is null or age_band in ['<18']"},
    ],
    default="low priority",
)
PROFILE_ROWS = st.lists(
    st.builds(
        lambda k12, searches, minutes, subway, opted_out, home, age: {
            "k12_app_count": k12,
            "tutoring_searches": searches,
            "online_min_per_day_school_zone": minutes,
            "subway_commuter": subway,
            "opted_out": opted_out,
            "home_cell": home,
            "age_band": age,
        },
        st.none() | st.integers(0, 6),
        st.none() | st.integers(0, 2),
        st.none() | st.sampled_from([0.0, 120.0, 120.5, 300.0, float("nan")]),
        st.none() | st.booleans(),
        st.none() | st.booleans(),
        st.none() | st.sampled_from(["c1", "c2"]),
        st.none() | st.sampled_from(["<18", "25-34"]),
    ),
    min_size=1,
    max_size=20,
)


def first_match(rules: TierRules, row: dict) -> str:
    for tier in rules.tiers:
        if to_predicate(tier.when)(row):
            return tier.name
    return rules.default


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=PROFILE_ROWS)
def test_engine_tiers_equal_first_match_of_per_row_predicates(duckdb, rows):
    people = [person(f"p{i}", **values) for i, values in enumerate(rows)]
    profile = ibis.memtable(pa.Table.from_pylist(people, schema=PROFILE_SCHEMA))

    assigned = tiers_by_subscriber(duckdb, assign_tiers(profile, HYPOTHESIS_RULES))

    expected = {row["subscriber"]: first_match(HYPOTHESIS_RULES, row) for row in people}
    assert assigned == expected


# --- Spark --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_assign_tiers_on_pyspark_equals_duckdb(tmp_path, monkeypatch, rules):
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    monkeypatch.chdir(tmp_path)  # Spark may leave a warehouse folder in the cwd
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    path = tmp_path / "profile.parquet"
    pq.write_table(pa.Table.from_pylist(PEOPLE, schema=PROFILE_SCHEMA), path)

    spark = ibis.pyspark.connect()
    on_spark = tiers_by_subscriber(
        spark, assign_tiers(spark.read_parquet(str(path)), rules)
    )
    estimate = estimate_tiers(spark.read_parquet(str(path)), rules)

    assert on_spark == {token(label): tier for label, tier in EXPECTED_TIERS.items()}
    assert [tier.subscribers for tier in estimate.tiers] == [2, 1, 5]
