"""A/B tests: lift, intervals and p-values against statsmodels and scipy;
ROI, sample-ratio mismatch, CUPED, multiple comparisons, planning, assignment."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from telcoreach.errors import ConfigError, PrivacyError, SchemaError
from telcoreach.measure._experiments import analyse_experiment
from telcoreach.measure._experiments_assign import assign_variants
from telcoreach.measure._experiments_io import (
    parse_split,
    read_experiment,
    run_abtest,
    run_abtest_assign,
    run_abtest_plan,
)
from telcoreach.measure._experiments_plan import plan_sample_size

ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz234567"))


@pytest.fixture(scope="module")
def cookie_cats(datasets_dir: Path) -> Path:
    path = datasets_dir / "8-ab-test-extra" / "cookie_cats.csv"
    if not path.is_file():
        pytest.skip(f"cookie_cats.csv not found at {path}")
    return path


def make_tokens(count: int, seed: int = 0) -> list[str]:
    """Random 24-character base32 tokens, like ingest produces."""
    letters = np.random.default_rng(seed).choice(ALPHABET, size=(count, 24))
    return np.ascontiguousarray(letters).view("<U24").ravel().tolist()


def conversion_frame(rates: dict[str, float], persons: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "variant": np.repeat(list(rates), persons),
            "converted": np.concatenate(
                [rng.random(persons) < rate for rate in rates.values()]
            ).astype(int),
        }
    )


# --- real data: cookie_cats, gate_30 (control) vs gate_40 -------------------


@pytest.mark.realdata
@pytest.mark.parametrize("retention", ["retention_1", "retention_7"])
def test_cookie_cats_matches_statsmodels_two_proportion_ztest(cookie_cats, retention):
    players = pd.read_csv(cookie_cats)
    gate_40 = players.loc[players.version == "gate_40", retention]
    gate_30 = players.loc[players.version == "gate_30", retention]
    counts = [gate_40.sum(), gate_30.sum()]
    sizes = [len(gate_40), len(gate_30)]
    z_ref, p_ref = proportions_ztest(counts, sizes)
    low_ref, high_ref = confint_proportions_2indep(
        counts[0], sizes[0], counts[1], sizes[1], method="wald", compare="diff"
    )

    result = analyse_experiment(
        players, variant="version", outcome=retention, control="gate_30"
    )

    (comparison,) = result.comparisons
    assert comparison.treatment == "gate_40"
    assert comparison.statistic == pytest.approx(z_ref, abs=1e-9)
    assert comparison.p_value == pytest.approx(p_ref, abs=1e-9)
    assert comparison.ci_low == pytest.approx(low_ref, abs=1e-9)
    assert comparison.ci_high == pytest.approx(high_ref, abs=1e-9)
    assert comparison.lift == pytest.approx(gate_40.mean() / gate_30.mean() - 1)


@pytest.mark.realdata
def test_cookie_cats_day7_retention_drop_is_significant_and_day1_is_not(
    cookie_cats,
):
    day1 = run_abtest(cookie_cats, variant="version", outcome="retention_1")
    day7 = run_abtest(cookie_cats, variant="version", outcome="retention_7")

    # Published analyses of this test: gate_40 lowers 7-day retention
    # (19.0 % -> 18.2 %, p ~ 0.0016) while 1-day retention moves by noise.
    assert day7["control"] == "gate_30"
    assert day7["comparisons"][0]["difference"] == pytest.approx(-0.0082, abs=5e-5)
    assert day7["comparisons"][0]["p_value"] < 0.01
    assert day1["comparisons"][0]["p_value"] > 0.05
    assert not day7["sample_ratio_mismatch"]


@pytest.mark.realdata
def test_cookie_cats_json_summary_has_the_documented_comparison_fields(cookie_cats):
    summary = run_abtest(cookie_cats, variant="version", outcome="retention_7")

    text = json.dumps(summary, allow_nan=False)
    comparison = json.loads(text)["comparisons"][0]
    for key in ("control", "treatment", "lift", "difference", "ci_low", "ci_high"):
        assert key in comparison
    assert set(comparison) >= {"p_value", "p_value_raw", "srm_p_value"}


@pytest.mark.realdata
def test_welch_on_game_rounds_matches_scipy(cookie_cats):
    players = pd.read_csv(cookie_cats)
    rounds_40 = players.loc[players.version == "gate_40", "sum_game_rounds"]
    rounds_30 = players.loc[players.version == "gate_30", "sum_game_rounds"]
    reference = stats.ttest_ind(rounds_40, rounds_30, equal_var=False)
    interval = reference.confidence_interval(0.95)

    result = analyse_experiment(
        players, metric="revenue", variant="version", outcome="sum_game_rounds"
    )

    (comparison,) = result.comparisons
    assert comparison.statistic == pytest.approx(reference.statistic, abs=1e-9)
    assert comparison.p_value == pytest.approx(reference.pvalue, abs=1e-9)
    assert comparison.ci_low == pytest.approx(interval.low, abs=1e-9)
    assert comparison.ci_high == pytest.approx(interval.high, abs=1e-9)


@pytest.mark.realdata
def test_missing_column_error_says_expected_found_and_how_to_fix(cookie_cats):
    with pytest.raises(SchemaError) as raised:
        read_experiment(cookie_cats, {"outcome": "retention_7"})

    message = str(raised.value)
    assert "'variant'" in message  # expected
    assert "userid, version, sum_game_rounds" in message  # found
    assert "--variant version" in message  # how to fix


@pytest.mark.realdata
def test_amount_column_as_conversion_flag_is_a_schema_error(cookie_cats):
    with pytest.raises(SchemaError, match=r"sum_game_rounds.*--metric revenue"):
        run_abtest(cookie_cats, variant="version", outcome="sum_game_rounds")


# --- ROI with the delta method ----------------------------------------------


def roi_arm(rng, persons, conversion_rate, cost_scale):
    """Cost ~ Gamma(2, scale); revenue = converted * Exp(40) + cost / 2."""
    cost = rng.gamma(2.0, cost_scale, persons)
    revenue = (rng.random(persons) < conversion_rate) * rng.exponential(40.0, persons)
    return revenue + 0.5 * cost, cost


def test_delta_method_roi_interval_covers_true_difference_about_95pct():
    # True ROI = E[revenue] / E[cost] - 1: control (0.05*40 + 1) / 2 - 1 = 0.5,
    # treatment (0.07*40 + 1.2) / 2.4 - 1 = 2/3.
    true_difference = 2 / 3 - 0.5
    rng = np.random.default_rng(20240601)
    persons, reps, covered = 2000, 300, 0
    for _ in range(reps):
        rev_c, cost_c = roi_arm(rng, persons, 0.05, 1.0)
        rev_t, cost_t = roi_arm(rng, persons, 0.07, 1.2)
        frame = pd.DataFrame(
            {
                "variant": ["control"] * persons + ["sms"] * persons,
                "revenue": np.concatenate([rev_c, rev_t]),
                "cost": np.concatenate([cost_c, cost_t]),
            }
        )
        (comparison,) = analyse_experiment(frame, metric="roi").comparisons
        covered += comparison.ci_low <= true_difference <= comparison.ci_high

    # 300 reps: the coverage's standard error is 1.3 points.
    assert 0.91 <= covered / reps <= 0.99


def test_roi_per_variant_is_profit_over_cost_of_the_totals():
    frame = pd.DataFrame(
        {
            "variant": ["push", "push", "sms", "sms", "sms"],
            "revenue": [10.0, 0.0, 30.0, 0.0, 0.0],
            "cost": [1.0, 1.0, 2.0, 2.0, 2.0],
        }
    )

    result = analyse_experiment(frame, metric="roi", control="push")

    comparison = result.comparisons[0]
    assert comparison.control_value == pytest.approx((10 - 2) / 2)
    assert comparison.treatment_value == pytest.approx((30 - 6) / 6)
    assert comparison.money["incremental_profit_per_person"] == pytest.approx(
        (30 - 6) / 3 - (10 - 2) / 2
    )


def test_free_control_gives_incremental_roi_covering_the_truth():
    # SMS costs 1 per person and lifts conversion 0.10 -> 0.13 at 50 per sale:
    # extra revenue 1.5 per person, so the incremental ROI is (1.5 - 1) / 1.
    rng = np.random.default_rng(7)
    persons = 200_000
    converted = np.concatenate([rng.random(persons) < 0.10, rng.random(persons) < 0.13])
    frame = pd.DataFrame(
        {
            "variant": ["none"] * persons + ["sms"] * persons,
            "revenue": 50.0 * converted,
            "cost": np.r_[np.zeros(persons), np.ones(persons)],
        }
    )

    (comparison,) = analyse_experiment(frame, metric="roi").comparisons

    assert comparison.control == "none"
    assert comparison.estimand == "incremental_roi"
    assert comparison.ci_low <= 0.5 <= comparison.ci_high
    assert comparison.ci_high - comparison.ci_low < 0.2


# --- sample-ratio mismatch ----------------------------------------------------


def test_srm_flags_a_52_48_split_on_100k_rows():
    frame = conversion_frame({"control": 0.1}, 52_000, seed=1)
    frame = pd.concat([frame, conversion_frame({"sms": 0.1}, 48_000, seed=2)])
    chi2 = 2 * (52_000 - 50_000) ** 2 / 50_000

    result = analyse_experiment(frame)

    assert result.srm_p_value == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    assert result.sample_ratio_mismatch
    assert result.comparisons[0].srm_p_value < 1e-30
    assert any("SAMPLE RATIO MISMATCH" in w for w in result.warnings)


def test_srm_accepts_a_split_that_matches_the_planned_weights():
    frame = pd.concat(
        [
            conversion_frame({"none": 0.1}, 10_000, seed=3),
            conversion_frame({"sms": 0.1, "push": 0.1}, 45_000, seed=4),
        ]
    )

    planned = analyse_experiment(
        frame, expected_split={"none": 1, "sms": 4.5, "push": 4.5}
    )
    unplanned = analyse_experiment(frame)

    assert planned.srm_p_value == pytest.approx(1.0)
    assert planned.warnings == []
    assert unplanned.sample_ratio_mismatch


# --- CUPED ---------------------------------------------------------------------


def cuped_frame(rng, persons: int, effect: float) -> pd.DataFrame:
    """Revenue driven by last month's revenue (corr 0.8) plus a treatment effect."""
    pre = rng.normal(50.0, 10.0, 2 * persons)
    treated = np.r_[np.zeros(persons), np.ones(persons)]
    revenue = 0.8 * pre + rng.normal(0.0, 6.0, 2 * persons) + effect * treated
    return pd.DataFrame(
        {
            "variant": np.where(treated == 1, "push", "control"),
            "revenue": revenue,
            "pre_revenue": pre,
        }
    )


def test_cuped_removes_the_variance_explained_by_the_pre_period():
    frame = cuped_frame(np.random.default_rng(11), 50_000, effect=0.3)
    rho = np.corrcoef(frame.revenue, frame.pre_revenue)[0, 1]

    plain = analyse_experiment(frame, metric="revenue")
    adjusted = analyse_experiment(frame, metric="revenue", pre="pre_revenue")

    assert adjusted.cuped["variance_reduction"] == pytest.approx(rho**2, abs=1e-3)
    plain_width = plain.comparisons[0].ci_high - plain.comparisons[0].ci_low
    cuped_width = adjusted.comparisons[0].ci_high - adjusted.comparisons[0].ci_low
    assert cuped_width == pytest.approx(plain_width * np.sqrt(1 - rho**2), rel=0.01)


def test_cuped_estimate_is_unbiased_over_repeated_experiments():
    rng = np.random.default_rng(12)
    estimates = [
        analyse_experiment(
            cuped_frame(rng, 500, effect=2.0), metric="revenue", pre="pre_revenue"
        )
        .comparisons[0]
        .difference
        for _ in range(200)
    ]

    # Each estimate has SE ~ 6 * sqrt(2 / 500) = 0.38; their mean ~ 0.027.
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert np.mean(estimates) == pytest.approx(2.0, abs=4 * standard_error)


def test_cuped_is_refused_for_the_ratio_metric():
    frame = pd.DataFrame({"variant": ["a", "b"], "revenue": [1, 2], "cost": [1, 1]})
    with pytest.raises(ConfigError, match="CUPED"):
        analyse_experiment(frame, metric="roi", pre="revenue")


# --- several variants ----------------------------------------------------------


@pytest.mark.parametrize("correction", ["holm", "bonferroni"])
def test_multiple_comparison_adjustment_equals_statsmodels(correction):
    frame = conversion_frame(
        {"none": 0.100, "sms": 0.115, "push": 0.108, "wechat": 0.102},
        persons=8_000,
        seed=5,
    )

    result = analyse_experiment(frame, correction=correction)

    raw = [c.p_value_raw for c in result.comparisons]
    reference = multipletests(raw, alpha=0.05, method=correction)[1]
    assert [c.p_value for c in result.comparisons] == pytest.approx(
        reference, abs=1e-12
    )
    assert [c.treatment for c in result.comparisons] == ["push", "sms", "wechat"]


def test_each_time_slot_is_tested_against_the_control_slot_alone():
    frame = conversion_frame({"09-12": 0.05, "12-14": 0.055, "18-21": 0.065}, 6_000, 6)

    result = analyse_experiment(frame, control="09-12", correction="bonferroni")

    base = frame[frame.variant == "09-12"].converted
    for comparison in result.comparisons:
        slot = frame[frame.variant == comparison.treatment].converted
        _, p_ref = proportions_ztest([slot.sum(), base.sum()], [len(slot), len(base)])
        assert comparison.p_value_raw == pytest.approx(p_ref, abs=1e-12)
        assert comparison.p_value == pytest.approx(min(1.0, 2 * p_ref), abs=1e-12)


def test_control_defaults_to_the_variant_named_none():
    frame = conversion_frame({"sms": 0.1, "none": 0.1, "push": 0.1}, 100, seed=8)

    result = analyse_experiment(frame)

    assert result.control == "none"
    assert [v.name for v in result.variants] == ["none", "push", "sms"]


def test_a_person_in_two_rows_is_a_schema_error():
    frame = pd.DataFrame(
        {"user": ["u1", "u2", "u1"], "variant": ["a", "b", "b"], "converted": [1, 0, 1]}
    )
    with pytest.raises(SchemaError, match="one row per person"):
        analyse_experiment(frame)


def test_unknown_control_names_the_variants_found():
    frame = conversion_frame({"a": 0.1, "b": 0.1}, 50, seed=9)
    with pytest.raises(ConfigError, match="expected one of the variants a, b"):
        analyse_experiment(frame, control="c")


# --- planning ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "effect", "options"),
    [
        (0.10, 0.10, {}),
        (0.02, 0.25, {"power": 0.9, "alpha": 0.01}),
        (0.30, -0.02, {"relative": False, "ratio": 2.0}),
    ],
)
def test_plan_matches_statsmodels_normal_ind_power(baseline, effect, options):
    plan = plan_sample_size(baseline, effect, **options)

    target = (
        baseline * (1 + effect) if options.get("relative", True) else baseline + effect
    )
    reference = NormalIndPower().solve_power(
        proportion_effectsize(target, baseline),
        alpha=options.get("alpha", 0.05),
        power=options.get("power", 0.8),
        ratio=options.get("ratio", 1.0),
    )
    assert plan["n_control_exact"] == pytest.approx(reference, rel=1e-6)
    assert plan["n_control"] == int(np.ceil(reference))


def test_plan_for_three_arms_splits_alpha_over_two_comparisons():
    plan = run_abtest_plan(0.05, 0.2, variants=3, daily_reach=10_000)

    reference = NormalIndPower().solve_power(
        proportion_effectsize(0.06, 0.05), alpha=0.025, power=0.8
    )
    assert plan["n_control_exact"] == pytest.approx(reference, rel=1e-6)
    assert plan["n_total"] == 3 * int(np.ceil(reference))
    assert plan["days"] == int(np.ceil(plan["n_total"] / 10_000))


def test_plan_refuses_an_effect_that_leaves_the_unit_interval():
    with pytest.raises(ConfigError, match="minimum detectable effect"):
        plan_sample_size(0.6, 0.8)


# --- assignment ----------------------------------------------------------------


def test_assignment_is_a_sha256_of_salt_and_token():
    tokens = make_tokens(200, seed=1)

    table = assign_variants(tokens, "spring-sms", {"sms": 1, "push": 1}, holdout=0.2)

    for token, variant in zip(tokens, table["variant"].to_pylist(), strict=True):
        digest = hashlib.sha256(f"spring-sms:{token}".encode()).digest()
        holdout_u = (int.from_bytes(digest[:8], "big") >> 11) / 2**53
        variant_u = (int.from_bytes(digest[8:16], "big") >> 11) / 2**53
        expected = (
            "holdout" if holdout_u < 0.2 else ("sms" if variant_u < 0.5 else "push")
        )
        assert variant == expected


def test_same_salt_gives_the_same_assignment_and_a_new_salt_another():
    tokens = make_tokens(20_000, seed=2)
    arms = {"sms": 1, "push": 1}

    first = assign_variants(tokens, "exp-1", arms)["variant"].to_pylist()
    again = assign_variants(list(reversed(tokens)), "exp-1", arms)["variant"]
    other = assign_variants(tokens, "exp-2", arms)["variant"].to_pylist()

    assert first == list(reversed(again.to_pylist()))
    agreement = np.mean(np.array(first) == np.array(other))
    # Independent splits agree by chance: 0.1^2 + 2 * 0.45^2 = 0.415.
    assert agreement == pytest.approx(0.415, abs=0.02)


def test_holdout_and_variant_shares_are_within_sampling_error():
    persons = 100_000
    table = assign_variants(make_tokens(persons, 3), "exp", {"sms": 3, "push": 1}, 0.1)

    shares = pd.Series(table["variant"].to_pylist()).value_counts(normalize=True)
    for name, share in {"holdout": 0.1, "sms": 0.675, "push": 0.225}.items():
        assert shares[name] == pytest.approx(share, abs=4 * np.sqrt(share / persons))


def test_changing_variant_weights_keeps_the_holdout_unchanged():
    tokens = make_tokens(5_000, seed=4)

    before = assign_variants(tokens, "exp", {"sms": 1, "push": 1})["variant"]
    after = assign_variants(tokens, "exp", {"sms": 1, "push": 1, "call": 2})["variant"]

    held_before = np.array(before.to_pylist()) == "holdout"
    held_after = np.array(after.to_pylist()) == "holdout"
    assert held_before.any()
    assert (held_before == held_after).all()


def test_raw_phone_numbers_are_refused_as_tokens():
    with pytest.raises(PrivacyError):
        assign_variants(["13912345678", "13812345678"], "exp", {"sms": 1})


def test_assign_command_writes_the_audience_with_a_variant_column(tmp_path):
    audience = tmp_path / "audience.csv"
    tokens = make_tokens(3_000, seed=5)
    pd.DataFrame({"rank": range(1, 3_001), "subscriber": tokens}).to_csv(
        audience, index=False
    )

    summary = run_abtest_assign(
        audience, salt="exp", variants="sms=1,push=1", out=tmp_path / "assigned.csv"
    )

    written = pacsv.read_csv(tmp_path / "assigned.csv").to_pandas()
    assert written.columns.tolist() == ["rank", "subscriber", "variant"]
    assert written.subscriber.tolist() == tokens
    counts = written.variant.value_counts()
    assert {row["variant"]: row["subscribers"] for row in summary["variants"]} == {
        name: counts.get(name, 0) for name in ("sms", "push", "holdout")
    }


def test_split_text_with_a_bad_item_is_a_config_error():
    assert parse_split("sms=0.45, push=0.45,none=0.1") == {
        "sms": 0.45,
        "push": 0.45,
        "none": 0.1,
    }
    with pytest.raises(ConfigError, match="NAME=WEIGHT"):
        parse_split("sms=half")
