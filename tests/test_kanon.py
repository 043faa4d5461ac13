"""k-anonymity, l-diversity and generalisation, checked against pycanon."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from telcoreach.config import Config, PrivacyConfig, parse_config
from telcoreach.errors import ConfigError, PrivacyError
from telcoreach.privacy import (
    Hierarchy,
    anonymise,
    check_k_anonymity,
    check_l_diversity,
    deidentified_aggregate,
)

AGE_BANDS = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
AGE_HIERARCHY = Hierarchy(
    maps=(
        {
            "<18": "<25",
            "18-24": "<25",
            "25-34": "25-44",
            "35-44": "25-44",
            "45-54": "45+",
            "55+": "45+",
        },
        {"<25": "<45", "25-44": "<45"},
    )
)
HIERARCHIES = {
    "age_band": AGE_HIERARCHY,
    "gender": Hierarchy(),
    "tenure_months": Hierarchy(bin_widths=(12, 60)),
}
QI = ["age_band", "gender", "tenure_months"]


def _people(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age_band": rng.choice(AGE_BANDS, rows, p=[0.05, 0.2, 0.3, 0.2, 0.15, 0.1]),
            "gender": rng.choice(["M", "F"], rows),
            "tenure_months": rng.integers(0, 120, rows),
            "plan": rng.choice(["basic", "family", "unlimited"], rows),
        }
    )


HAND_MADE = [
    pd.DataFrame({"a": ["x", "x", "y", "y", "y"], "b": [1, 1, 2, 2, 2]}),
    pd.DataFrame({"a": ["x", "x", "x", "y"], "b": [1, 2, 1, 2]}),
    pd.DataFrame({"a": list("aabbbcccc"), "b": list("xyxyzxyzz")}),
    pd.DataFrame({"a": ["p"] * 6, "b": ["q"] * 6}),
]


@pytest.mark.parametrize("table", HAND_MADE)
def test_smallest_group_equals_pycanon_k(table):
    report = check_k_anonymity(table, ["a"], 1, raise_on_failure=False)

    assert report.smallest_group == anonymity.k_anonymity(table, ["a"])


@pytest.mark.parametrize("table", HAND_MADE)
def test_least_diverse_group_equals_pycanon_l(table):
    report = check_l_diversity(table, ["a"], "b", 1, raise_on_failure=False)

    assert report.least_diverse_group == anonymity.l_diversity(table, ["a"], ["b"])


def test_l_diversity_of_counted_groups_ignores_empty_cells():
    counts = pd.DataFrame(
        {"a": ["x", "x", "y", "y"], "s": ["p", "q", "p", "q"], "n": [5, 5, 9, 0]}
    )
    people = counts.loc[counts.index.repeat(counts["n"])].reset_index()

    report = check_l_diversity(
        counts, ["a"], "s", 2, count_column="n", raise_on_failure=False
    )

    assert report.least_diverse_group == anonymity.l_diversity(people, ["a"], ["s"])
    assert not report.ok


def test_uniform_group_is_refused_with_the_count_and_l():
    table = pd.DataFrame({"a": ["x", "x", "y", "y"], "s": ["p", "q", "p", "p"]})

    with pytest.raises(PrivacyError, match=r"1 of 2 groups.*fewer than l=2"):
        check_l_diversity(table, ["a"], "s", 2)


def test_numeric_hierarchy_makes_nested_half_open_ranges():
    tenure = pd.Series([0, 11, 12, 59, 60, None])
    hierarchy = Hierarchy(bin_widths=(12, 60))

    assert hierarchy.generalise(tenure, 1).tolist() == [
        "0-12",
        "0-12",
        "12-24",
        "48-60",
        "60-72",
        "unknown",
    ]
    assert hierarchy.generalise(tenure, 2).tolist() == [
        "0-60",
        "0-60",
        "0-60",
        "0-60",
        "60-120",
        "unknown",
    ]
    assert set(hierarchy.generalise(tenure, 3)) == {"*"}


def test_categorical_hierarchy_applies_its_maps_in_turn():
    bands = pd.Series(["18-24", "35-44", "55+"])

    assert AGE_HIERARCHY.generalise(bands, 1).tolist() == ["<25", "25-44", "45+"]
    assert AGE_HIERARCHY.generalise(bands, 2).tolist() == ["<45", "<45", "45+"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anonymised_table_has_the_k_and_l_pycanon_measures(seed):
    people = _people(400, seed)

    result = anonymise(
        people,
        QI,
        k=10,
        l_diversity=2,
        sensitive_attribute="plan",
        hierarchies=HIERARCHIES,
        max_suppression_share=0.05,
    )

    assert anonymity.k_anonymity(result.table, QI) == result.k_value >= 10
    assert anonymity.l_diversity(result.table, QI, ["plan"]) == result.l_value >= 2
    assert result.suppressed_rows == len(people) - len(result.table) <= 20


def test_least_costly_generalisation_is_chosen_over_suppression():
    # Every (age, gender) pair has 5 people. Lifting age two of its three
    # levels (loss 2/3 on one of two columns) costs less than dropping
    # gender (loss 1/1), and either beats suppressing everyone.
    people = pd.DataFrame(
        {
            "age_band": ["18-24"] * 10 + ["35-44"] * 10,
            "gender": (["M"] * 5 + ["F"] * 5) * 2,
        }
    )

    result = anonymise(people, ["age_band", "gender"], k=10, hierarchies=HIERARCHIES)

    assert result.levels == {"age_band": 2, "gender": 0}
    assert result.information_loss == pytest.approx(1 / 3)
    assert result.suppressed_rows == 0
    assert set(result.table["age_band"]) == {"<45"}


def test_small_class_is_suppressed_when_it_fits_the_budget():
    people = pd.DataFrame({"plan": ["basic"] * 30 + ["family"] * 30 + ["vip"] * 2})

    result = anonymise(people, ["plan"], k=10, max_suppression_share=0.05)

    assert result.suppressed_rows == 2
    assert "vip" not in set(result.table["plan"])


def test_unreachable_k_raises_with_what_was_found_and_how_to_fix():
    people = pd.DataFrame({"plan": ["basic"] * 30 + ["vip"] * 5})

    with pytest.raises(PrivacyError) as error:
        anonymise(people, ["plan"], k=10, max_suppression_share=0.05)

    message = str(error.value)
    assert "fewer than k=10" in message
    assert "1 groups" in message and "(5 rows)" in message
    assert "privacy.hierarchies for plan" in message


def test_greedy_search_also_reaches_k_and_l():
    people = _people(400, 3)

    result = anonymise(
        people,
        QI,
        k=10,
        l_diversity=2,
        sensitive_attribute="plan",
        hierarchies=HIERARCHIES,
        max_suppression_share=0.05,
        max_nodes=1,
    )

    assert result.search == "greedy"
    assert anonymity.k_anonymity(result.table, QI) >= 10
    assert anonymity.l_diversity(result.table, QI, ["plan"]) >= 2


def test_least_loss_node_matches_a_brute_force_over_the_lattice():
    people = _people(300, 4)
    budget = 15
    best = None
    for age in range(4):
        for gender in range(2):
            for tenure in range(4):
                table = people.assign(
                    age_band=AGE_HIERARCHY.generalise(people.age_band, age),
                    gender=HIERARCHIES["gender"].generalise(people.gender, gender),
                    tenure_months=HIERARCHIES["tenure_months"].generalise(
                        people.tenure_months, tenure
                    ),
                )
                sizes = table.groupby(QI)["plan"].transform("size")
                kinds = table.groupby(QI)["plan"].transform("nunique")
                dropped = int(((sizes < 10) | (kinds < 2)).sum())
                if dropped > budget:
                    continue
                share = dropped / len(people)
                loss = (1 - share) * (age / 3 + gender / 1 + tenure / 3) / 3 + share
                if best is None or loss < best[0] - 1e-12:
                    best = (
                        loss,
                        {"age_band": age, "gender": gender, "tenure_months": tenure},
                    )

    result = anonymise(
        people,
        QI,
        k=10,
        l_diversity=2,
        sensitive_attribute="plan",
        hierarchies=HIERARCHIES,
        max_suppression_share=budget / len(people),
    )

    assert result.levels == best[1]
    assert result.information_loss == pytest.approx(best[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(min_value=0, max_value=120),
    k=st.integers(min_value=2, max_value=15),
    l_target=st.integers(min_value=1, max_value=3),
    share=st.sampled_from([0.0, 0.05, 0.2]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_output_is_k_anonymous_and_l_diverse_or_an_error_is_raised(
    rows, k, l_target, share, seed
):
    people = _people(rows, seed)

    try:
        result = anonymise(
            people,
            QI,
            k=k,
            l_diversity=l_target,
            sensitive_attribute="plan",
            hierarchies=HIERARCHIES,
            max_suppression_share=share,
        )
    except PrivacyError as error:
        assert f"fewer than k={k}" in str(error)
        return

    assert result.suppressed_rows <= share * rows + 1e-9
    if len(result.table):
        assert anonymity.k_anonymity(result.table, QI) >= k
        assert anonymity.l_diversity(result.table, QI, ["plan"]) >= l_target


def test_sensitive_attribute_that_is_also_grouped_is_refused():
    people = _people(50, 0)

    with pytest.raises(PrivacyError, match="both a quasi-identifier"):
        anonymise(people, ["plan"], k=2, l_diversity=2, sensitive_attribute="plan")


def test_aggregate_export_counts_match_pycanon_on_the_expanded_people():
    rng = np.random.default_rng(5)
    people = _people(600, 5).assign(propensity=rng.random(600))
    privacy = Config().privacy

    export = deidentified_aggregate(
        ibis.memtable(people), ["age_band", "gender", "tenure_months"], privacy
    )
    frame = export.frame
    expanded = frame.loc[frame.index.repeat(frame["subscribers"])].reset_index()
    facts = export.to_dict()

    assert list(frame.columns) == [*QI, "propensity_band", "subscribers"]
    assert anonymity.k_anonymity(expanded, QI) == facts["k"] >= privacy.k_anonymity
    assert (
        anonymity.l_diversity(expanded, QI, ["propensity_band"])
        == facts["l"]
        >= privacy.l_diversity
    )
    assert frame["subscribers"].sum() == 600 - facts["suppressed_rows"]


def test_aggregate_export_without_scores_fails_l_diversity_and_says_why():
    people = _people(300, 6).assign(propensity=np.nan)

    with pytest.raises(PrivacyError, match="distinct propensity_band values"):
        deidentified_aggregate(ibis.memtable(people), ["age_band"], Config().privacy)


def test_aggregate_export_with_l_check_off_needs_only_k():
    people = _people(300, 6).assign(propensity=np.nan)
    privacy = PrivacyConfig(sensitive_attribute=None)

    export = deidentified_aggregate(ibis.memtable(people), ["age_band"], privacy)

    assert list(export.frame.columns) == ["age_band", "subscribers"]
    assert export.frame["subscribers"].min() >= privacy.k_anonymity


def test_hierarchy_config_with_nested_widths_is_accepted_and_other_refused():
    good = parse_config(
        {"privacy": {"hierarchies": {"tenure_months": {"bin_widths": [6, 24]}}}}, "t"
    )

    assert good.privacy.hierarchies["tenure_months"].bin_widths == (6.0, 24.0)
    with pytest.raises(ConfigError, match="multiple of the last"):
        parse_config(
            {"privacy": {"hierarchies": {"tenure_months": {"bin_widths": [5, 12]}}}},
            "t",
        )
