"""Analyse a randomised experiment (A/B test): lift, interval, p-value, ROI.

An experiment splits people at random into variants (for example an SMS
offer, an app push and no contact at all) and compares an outcome between
each treatment variant and the control. The input has one row per person:
the variant they were assigned and what they did (converted or not, revenue,
campaign cost, optionally the same metric over a pre-period).

Three metrics are supported:

``conversion``
    The share of people who converted. Compared with the two-proportion
    z-test; the test's standard error pools both arms (the rate under the
    null hypothesis of no difference) while the confidence interval uses the
    unpooled (Wald) standard error, exactly as statsmodels'
    ``proportions_ztest`` and ``confint_proportions_2indep(method="wald")``.
``revenue``
    The mean revenue per person. Compared with Welch's t-test (unequal
    variances, Welch-Satterthwaite degrees of freedom), as
    ``scipy.stats.ttest_ind(equal_var=False)``.
``roi``
    The return on investment of each arm, ``(revenue - cost) / cost`` over
    the arm's totals. It is a ratio of two means, so its standard error comes
    from the delta method (a first-order Taylor expansion); the difference is
    tested with a z-test. A control that costs nothing (no contact) has no
    ROI; the comparison then reports the treatment's incremental ROI,
    ``(extra revenue - extra cost) / extra cost`` per person.

Two safeguards and one refinement:

- **Sample-ratio mismatch (SRM)**: a chi-square goodness-of-fit test of the
  observed arm sizes against the planned split. A p-value below 0.001 means
  assignment or logging is broken and the comparison cannot be trusted; the
  result then carries a warning.
- **Multiple comparisons**: with several treatments, p-values are adjusted
  with Holm's step-down method (default) or Bonferroni, so the chance of any
  false positive stays at ``alpha``.
- **CUPED** (controlled experiments using pre-experiment data): given each
  person's metric over a period before the experiment, the outcome ``Y`` is
  replaced by ``Y - theta * (X - mean(X))`` with ``theta = cov(Y, X) /
  var(X)`` estimated on all arms pooled. Randomisation makes ``X``
  independent of the arm, so the difference stays unbiased while its
  variance shrinks by about ``corr(X, Y)**2``. The adjusted outcome is
  compared with Welch's test.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from telcoreach.errors import ConfigError, SchemaError

__all__ = [
    "CONTROL_NAMES",
    "CORRECTIONS",
    "METRICS",
    "SRM_ALPHA",
    "Comparison",
    "ExperimentResult",
    "VariantSummary",
    "adjust_p_values",
    "analyse_experiment",
]

logger = logging.getLogger(__name__)

#: Metrics :func:`analyse_experiment` can compare.
METRICS = ("conversion", "revenue", "roi")
#: Multiple-comparison corrections of the p-values.
CORRECTIONS = ("holm", "bonferroni", "none")
#: Sample-ratio-mismatch p-value below which the result carries a warning.
SRM_ALPHA = 0.001
#: Variant names taken as the control when none is given.
CONTROL_NAMES = ("control", "none", "holdout", "baseline")
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
_MIN_ARM_SIZE = 30
_ARM_ROLES = ("outcome", "revenue", "cost")


@dataclass(frozen=True)
class VariantSummary:
    """The size and metric value of one variant (arm) of an experiment.

    Attributes
    ----------
    name : str
        Variant name as found in the data.
    persons : int
        People assigned to the variant (rows analysed).
    share, expected_share : float
        Observed share of all people, and the share the split planned.
    value : float or None
        The metric in this arm: conversion rate, mean revenue per person or
        ROI (``None`` when the arm has no cost, so no ROI).
    std_error : float or None
        Standard error of ``value``.
    money : dict or None
        When revenue and/or cost columns exist: ``revenue_total``,
        ``revenue_per_person``, ``cost_total``, ``cost_per_person``,
        ``profit_per_person`` and ``roi`` (each ``None`` when its column is
        absent or, for ROI, when the cost is zero).
    """

    name: str
    persons: int
    share: float
    expected_share: float
    value: float | None
    std_error: float | None
    money: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "name": self.name,
            "persons": self.persons,
            "share": self.share,
            "expected_share": self.expected_share,
            "value": self.value,
            "std_error": self.std_error,
            "money": self.money,
        }


@dataclass(frozen=True)
class Comparison:
    """One treatment compared with the control.

    Attributes
    ----------
    control, treatment : str
        Variant names.
    estimand : str
        What ``difference`` measures: ``rate_difference``,
        ``mean_difference``, ``roi_difference`` or ``incremental_roi`` (ROI
        of the extra spend when the control costs nothing).
    control_value, treatment_value : float or None
        The metric in each arm (the CUPED-adjusted mean when a pre-period
        metric is used).
    difference : float or None
        ``treatment_value - control_value`` (for ``incremental_roi``, the
        incremental ROI itself).
    ci_low, ci_high : float or None
        Confidence interval of ``difference`` at level ``1 - alpha``, not
        adjusted for multiple comparisons.
    lift : float or None
        Relative lift ``difference / |control_value|``; ``None`` when the
        control value is 0 or for ``incremental_roi``.
    lift_ci_low, lift_ci_high : float or None
        Delta-method confidence interval of ``lift``.
    statistic : float or None
        z or t statistic of the test.
    p_value : float or None
        Two-sided p-value adjusted for multiple comparisons.
    p_value_raw : float or None
        The same p-value before adjustment.
    significant : bool
        ``p_value < alpha``.
    control_persons, treatment_persons : int
        Arm sizes.
    srm_p_value : float
        Sample-ratio-mismatch p-value of the whole experiment.
    money : dict or None
        ``incremental_revenue_per_person``, ``incremental_cost_per_person``,
        ``incremental_profit_per_person`` and ``incremental_profit_total``
        (per-person profit difference times the treatment's size), when
        revenue or cost columns exist.
    """

    control: str
    treatment: str
    estimand: str
    control_value: float | None
    treatment_value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    lift: float | None
    lift_ci_low: float | None
    lift_ci_high: float | None
    statistic: float | None
    p_value: float | None
    p_value_raw: float | None
    significant: bool
    control_persons: int
    treatment_persons: int
    srm_p_value: float
    money: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as a JSON-serialisable dict."""
        return {
            "control": self.control,
            "treatment": self.treatment,
            "estimand": self.estimand,
            "control_value": self.control_value,
            "treatment_value": self.treatment_value,
            "difference": self.difference,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "lift": self.lift,
            "lift_ci_low": self.lift_ci_low,
            "lift_ci_high": self.lift_ci_high,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "p_value_raw": self.p_value_raw,
            "significant": self.significant,
            "control_persons": self.control_persons,
            "treatment_persons": self.treatment_persons,
            "srm_p_value": self.srm_p_value,
            "money": self.money,
        }


@dataclass(frozen=True)
class ExperimentResult:
    """Everything :func:`analyse_experiment` found about one experiment.

    Attributes
    ----------
    metric : str
        ``conversion``, ``revenue`` or ``roi``.
    outcome : str or None
        Column compared (``None`` for ROI, which uses revenue and cost).
    control : str
        Control variant.
    alpha : float
        Significance level; intervals have coverage ``1 - alpha``.
    correction : str
        Multiple-comparison correction applied to the p-values.
    method : str
        One sentence naming the test and interval used.
    persons : int
        Rows analysed.
    rows_dropped : int
        Rows left out because the variant or a needed value was missing.
    variants : list of VariantSummary
        One per variant, control first.
    comparisons : list of Comparison
        One per treatment variant, against the control.
    srm_chi2, srm_p_value : float
        Chi-square statistic (``None`` when a variant was planned at share 0
        yet has people) and p-value of the sample-ratio-mismatch test.
    cuped : dict or None
        ``pre`` column, ``theta`` and ``variance_reduction`` (share of the
        outcome's variance removed) when a pre-period metric was used.
    warnings : list of str
        Problems an analyst must see: sample-ratio mismatch, tiny arms,
        dropped rows.
    """

    metric: str
    outcome: str | None
    control: str
    alpha: float
    correction: str
    method: str
    persons: int
    rows_dropped: int
    variants: list[VariantSummary]
    comparisons: list[Comparison]
    srm_chi2: float | None
    srm_p_value: float
    cuped: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def sample_ratio_mismatch(self) -> bool:
        """Whether the SRM p-value is below :data:`SRM_ALPHA`."""
        return self.srm_p_value < SRM_ALPHA

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict."""
        return {
            "metric": self.metric,
            "outcome": self.outcome,
            "control": self.control,
            "alpha": self.alpha,
            "correction": self.correction,
            "method": self.method,
            "persons": self.persons,
            "rows_dropped": self.rows_dropped,
            "sample_ratio_mismatch": self.sample_ratio_mismatch,
            "srm_chi2": self.srm_chi2,
            "srm_p_value": self.srm_p_value,
            "cuped": self.cuped,
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class _Arm:
    """Per-arm values of the outcome (and money columns) after cleaning."""

    name: str
    outcome: np.ndarray | None
    revenue: np.ndarray | None
    cost: np.ndarray | None

    @property
    def persons(self) -> int:
        columns = (self.outcome, self.revenue, self.cost)
        return len(next(c for c in columns if c is not None))


@dataclass(frozen=True)
class _Estimate:
    """A comparison's difference with its standard error and test."""

    estimand: str
    control_value: float | None
    treatment_value: float | None
    control_var: float
    treatment_var: float
    difference: float | None
    std_error: float | None
    statistic: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None


def analyse_experiment(
    frame: pd.DataFrame,
    *,
    metric: str = "conversion",
    variant: str = "variant",
    outcome: str | None = None,
    control: str | None = None,
    revenue: str = "revenue",
    cost: str = "cost",
    pre: str | None = None,
    user: str | None = "user",
    expected_split: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
) -> ExperimentResult:
    """Compare each treatment variant of an experiment with its control.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per person.
    metric : {"conversion", "revenue", "roi"}
        Conversion rate (two-proportion z-test), mean revenue per person
        (Welch's t-test) or ROI ``(revenue - cost) / cost`` per arm (delta
        method).
    variant : str
        Column holding each person's variant.
    outcome : str, optional
        Column compared: for ``conversion`` a 0/1 or boolean column (default
        ``"converted"``), for ``revenue`` a number (default: the ``revenue``
        column). Not used for ``roi``.
    control : str, optional
        Control variant. Default: the variant named ``control``, ``none``,
        ``holdout`` or ``baseline`` if exactly one exists, else the first
        name in sorted order.
    revenue, cost : str
        Money columns, used by ``roi`` and, when present, summarised for the
        other metrics.
    pre : str, optional
        Column with each person's metric over a pre-period; turns on CUPED.
        Missing values are set to the pre-period mean (no adjustment).
    user : str or None
        Column identifying each person; when present it must be unique.
    expected_split : mapping of str to float, optional
        Planned share (or weight) of each variant for the sample-ratio
        check; equal shares by default.
    alpha : float
        Significance level, in (0, 1).
    correction : {"holm", "bonferroni", "none"}
        Multiple-comparison adjustment of the p-values.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    ConfigError
        If an option is invalid (unknown metric, control not among the
        variants, ``alpha`` out of range, CUPED asked for ROI).
    SchemaError
        If a column is missing, has values of the wrong kind, a person
        appears twice, or fewer than two variants remain.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"variant": ["a", "a", "b", "b"] * 50,
    ...                       "converted": [0, 1, 1, 1] * 50})
    >>> result = analyse_experiment(frame, control="a")
    >>> round(result.comparisons[0].difference, 2)
    0.5
    """
    _check_options(metric, alpha, correction)
    if metric == "roi" and pre is not None:
        raise ConfigError(
            "CUPED (the pre-period option) is not supported for the roi metric: "
            "expected pre=None with metric='roi', found pre="
            f"{pre!r}; use metric='revenue' with the pre-period revenue instead"
        )
    if metric == "roi":
        outcome = None
    elif outcome is None:
        outcome = "converted" if metric == "conversion" else revenue
    _require_columns(frame, metric, variant, outcome, revenue, cost, pre)
    if user is not None and user in frame.columns:
        _require_unique_people(frame[user], user)

    codes, names, columns, rows_dropped = _clean(
        frame, metric, variant, outcome, revenue, cost, pre
    )
    if len(names) < 2:
        raise SchemaError(
            f"experiment column {variant!r}: expected at least two variants, found "
            f"{len(names)} ({', '.join(names) or 'none'}); check the "
            "variant column (--variant COL) and that the file holds every arm"
        )
    control = _choose_control(sorted(names), control)
    ordered = [control, *sorted(n for n in names if n != control)]

    cuped = _apply_cuped(columns, pre) if pre is not None else None
    arms = _split_arms(codes, names, columns, ordered)
    counts = np.array([arms[n].persons for n in ordered], dtype=float)
    expected = _expected_shares(ordered, expected_split)
    srm_chi2, srm_p = _sample_ratio_test(counts, expected)
    warnings = _warnings(ordered, counts, expected, srm_p, rows_dropped)

    use_means = metric == "revenue" or cuped is not None
    estimates = [
        _estimate(metric, use_means, arms[control], arms[name], alpha)
        for name in ordered[1:]
    ]
    raw = np.array([np.nan if e.p_value is None else e.p_value for e in estimates])
    adjusted = adjust_p_values(raw, correction)

    comparisons = [
        _comparison(est, arms[control], arms[name], raw_p, adj_p, alpha, srm_p)
        for est, name, raw_p, adj_p in zip(
            estimates, ordered[1:], raw, adjusted, strict=True
        )
    ]
    summaries = [
        _variant_summary(arms[name], metric, use_means, count, share, counts.sum())
        for name, count, share in zip(ordered, counts, expected, strict=True)
    ]
    result = ExperimentResult(
        metric=metric,
        outcome=outcome,
        control=control,
        alpha=alpha,
        correction=correction,
        method=_method_sentence(metric, use_means, cuped is not None, correction),
        persons=int(counts.sum()),
        rows_dropped=rows_dropped,
        variants=summaries,
        comparisons=comparisons,
        srm_chi2=_num(srm_chi2),
        srm_p_value=_num(srm_p),
        cuped=cuped,
        warnings=warnings,
    )
    logger.info(
        "analysed %d people in %d variants (%s), %d warnings",
        result.persons,
        len(ordered),
        metric,
        len(warnings),
    )
    return result


def adjust_p_values(p_values: np.ndarray, correction: str) -> np.ndarray:
    """Return p-values adjusted for multiple comparisons.

    ``holm`` is Holm's step-down method: sort the ``m`` p-values, multiply
    the i-th smallest by ``m - i`` (i from 0), take the running maximum and
    cap at 1. ``bonferroni`` multiplies each by ``m``. NaN entries (tests
    that could not be run) are left out of ``m`` and stay NaN.
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p_values, np.nan)
    valid = ~np.isnan(p_values)
    tested = p_values[valid]
    m = tested.size
    if m == 0 or correction == "none":
        adjusted[valid] = tested
        return adjusted
    if correction == "bonferroni":
        adjusted[valid] = np.minimum(tested * m, 1.0)
        return adjusted
    order = np.argsort(tested, kind="stable")
    stepped = np.maximum.accumulate(tested[order] * (m - np.arange(m)))
    holm = np.empty(m)
    holm[order] = np.minimum(stepped, 1.0)
    adjusted[valid] = holm
    return adjusted


def _check_options(metric: str, alpha: float, correction: str) -> None:
    if metric not in METRICS:
        raise ConfigError(
            f"metric: expected one of {', '.join(METRICS)}, found {metric!r}"
        )
    if correction not in CORRECTIONS:
        raise ConfigError(
            f"correction: expected one of {', '.join(CORRECTIONS)}, found "
            f"{correction!r}"
        )
    if not 0 < alpha < 1:
        raise ConfigError(
            f"alpha: expected a significance level in (0, 1) such as 0.05, "
            f"found {alpha!r}"
        )


def _require_columns(
    frame: pd.DataFrame,
    metric: str,
    variant: str,
    outcome: str | None,
    revenue: str,
    cost: str,
    pre: str | None,
) -> None:
    needed = {variant: "variant"}
    if outcome is not None:
        needed[outcome] = "outcome"
    if metric == "roi":
        needed[revenue] = "revenue"
        needed[cost] = "cost"
    if pre is not None:
        needed[pre] = "pre-period metric"
    missing = [f"{col!r} ({role})" for col, role in needed.items() if col not in frame]
    if missing:
        raise SchemaError(
            f"experiment data: expected column(s) {', '.join(missing)}, found "
            f"{', '.join(map(str, frame.columns)) or 'no columns'}; name the "
            "right columns (variant=, outcome=, revenue=, cost=, pre=; on the "
            "command line --variant COL, --outcome COL, ...)"
        )


def _warnings(
    ordered: list[str],
    counts: np.ndarray,
    expected: np.ndarray,
    srm_p: float,
    rows_dropped: int,
) -> list[str]:
    """Return what an analyst must see before trusting the comparisons."""
    warnings = []
    if srm_p < SRM_ALPHA:
        observed = ", ".join(
            f"{n} {int(c)} ({c / counts.sum():.1%} vs {e:.1%} planned)"
            for n, c, e in zip(ordered, counts, expected, strict=True)
        )
        warnings.append(
            f"SAMPLE RATIO MISMATCH: chi-square p = {srm_p:.2g} < {SRM_ALPHA}; "
            f"{observed}. Assignment or logging is broken; do not trust these "
            "comparisons until the cause is found"
        )
    if rows_dropped:
        warnings.append(
            f"{rows_dropped} rows left out: missing variant or missing value in the "
            "columns analysed"
        )
    warnings += [
        f"variant {name!r} has only {int(count)} people; the normal "
        f"approximation needs at least {_MIN_ARM_SIZE}"
        for name, count in zip(ordered, counts, strict=True)
        if count < _MIN_ARM_SIZE
    ]
    # Returned in the result (the CLI prints them loudly); logged at info so a
    # command line does not show each one twice.
    for warning in warnings:
        logger.info(warning)
    return warnings


def _require_unique_people(users: pd.Series, column: str) -> None:
    repeated = int(users.duplicated().sum())
    if repeated:
        raise SchemaError(
            f"experiment data: expected one row per person, found {repeated} "
            f"repeated values in {column!r}; aggregate to one row per person "
            "(sum revenue and cost, any conversion) before the analysis"
        )


def _clean(
    frame: pd.DataFrame,
    metric: str,
    variant: str,
    outcome: str | None,
    revenue: str,
    cost: str,
    pre: str | None,
) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], int]:
    """Return variant codes and names, float arrays per role, rows dropped.

    Roles are ``outcome``, ``revenue``, ``cost`` and ``pre`` (those present).
    """
    columns: dict[str, np.ndarray] = {}
    if outcome is not None:
        columns["outcome"] = (
            _as_binary(frame[outcome], outcome)
            if metric == "conversion"
            else _as_number(frame[outcome], outcome)
        )
    for role, name in (("revenue", revenue), ("cost", cost)):
        if name in frame.columns:
            columns[role] = _as_number(frame[name], name)
    if pre is not None:
        columns["pre"] = _as_number(frame[pre], pre)

    codes, labels = pd.factorize(frame[variant], use_na_sentinel=True)
    keep = codes >= 0
    required = ["outcome"] if outcome is not None else ["revenue", "cost"]
    for role in required:
        keep &= ~np.isnan(columns[role])
    codes = codes[keep]
    present = np.bincount(codes, minlength=len(labels)) > 0
    names = [str(label) for label, seen in zip(labels, present, strict=True) if seen]
    # Re-number so that codes index `names` (variants with no rows removed).
    renumber = np.cumsum(present) - 1
    codes = renumber[codes]
    columns = {role: values[keep] for role, values in columns.items()}
    for role in ("revenue", "cost"):
        if role in columns and role not in required:
            columns[role] = np.nan_to_num(columns[role], nan=0.0)
    if metric == "roi" and (columns["cost"] < 0).any():
        raise SchemaError(
            f"column {cost!r}: expected costs >= 0, found "
            f"{int((columns['cost'] < 0).sum())} negative values; fix the cost "
            "column (refunds belong in revenue)"
        )
    return codes, names, columns, int((~keep).sum())


def _as_binary(values: pd.Series, column: str) -> np.ndarray:
    """Return 0/1 floats (NaN where missing) or raise naming bad values."""
    if pd.api.types.is_bool_dtype(values) and not values.hasnans:
        return values.to_numpy(dtype=float)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isnan(numbers) & (numbers != 0) & (numbers != 1)
    else:
        words = values.astype("string").str.strip().str.lower()
        numbers = np.full(len(values), np.nan)
        numbers[words.isin(_TRUE_WORDS).fillna(False).to_numpy(bool)] = 1.0
        numbers[words.isin(_FALSE_WORDS).fillna(False).to_numpy(bool)] = 0.0
        bad = values.notna().to_numpy() & np.isnan(numbers)
    if bad.any():
        examples = ", ".join(map(repr, pd.unique(values[bad])[:5].tolist()))
        raise SchemaError(
            f"column {column!r}: expected a conversion flag (0/1, true/false, "
            f"yes/no), found {int(bad.sum())} other values such as {examples}; "
            "map it with --outcome COL to a 0/1 column or use --metric revenue "
            "for amounts"
        )
    return numbers


def _as_number(values: pd.Series, column: str) -> np.ndarray:
    """Return floats (NaN where missing) or raise naming non-numbers."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        bad = values.notna().to_numpy() & np.isnan(numbers)
        if bad.any():
            examples = ", ".join(map(repr, pd.unique(values[bad])[:5].tolist()))
            raise SchemaError(
                f"column {column!r}: expected numbers, found {int(bad.sum())} "
                f"other values such as {examples}; clean the column or map "
                "another one"
            )
    if np.isinf(numbers).any():
        raise SchemaError(
            f"column {column!r}: expected finite numbers, found infinity; "
            "remove or cap those rows"
        )
    return numbers


def _choose_control(names: list[str], control: str | None) -> str:
    if control is not None:
        if control not in names:
            raise ConfigError(
                f"control: expected one of the variants {', '.join(names)}, found "
                f"{control!r}; pass --control NAME with a variant from the data"
            )
        return control
    named = [n for n in names if n.lower() in CONTROL_NAMES]
    chosen = named[0] if len(named) == 1 else names[0]
    logger.info("no control given; using variant %r", chosen)
    return chosen


def _expected_shares(
    names: list[str], expected_split: Mapping[str, float] | None
) -> np.ndarray:
    if expected_split is None:
        return np.full(len(names), 1.0 / len(names))
    unknown = [n for n in names if n not in expected_split]
    weights = np.array([float(expected_split.get(n, 0.0)) for n in names])
    if unknown or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(
            f"expected split: expected a non-negative weight for each variant "
            f"({', '.join(names)}), found {dict(expected_split)!r}; give weights "
            "such as sms=0.45,push=0.45,none=0.1"
        )
    extra = sorted(set(expected_split) - set(names))
    if extra:
        logger.warning("expected split names variants absent from the data: %s", extra)
    # Variants planned but absent from the data count against the others.
    total = sum(float(w) for w in expected_split.values())
    return weights / total


def _sample_ratio_test(counts: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Return the chi-square statistic and p-value of observed vs planned sizes.

    ``expected`` may sum to less than 1 when planned variants are absent from
    the data; their share becomes one more cell observed with nobody in it.
    """
    absent = 1.0 - float(expected.sum())
    if absent > 1e-12:
        counts = np.append(counts, 0.0)
        expected = np.append(expected, absent)
    planned = expected * counts.sum()
    unplanned = planned <= 0
    if (counts[unplanned] > 0).any():
        return math.inf, 0.0
    observed, planned = counts[~unplanned], planned[~unplanned]
    chi2 = float(((observed - planned) ** 2 / planned).sum())
    return chi2, float(stats.chi2.sf(chi2, len(observed) - 1))


def _apply_cuped(columns: dict[str, np.ndarray], pre: str) -> dict[str, Any]:
    """Replace ``outcome`` by its CUPED-adjusted value; return theta and gain."""
    covariate = columns["pre"]
    missing = np.isnan(covariate)
    if missing.all():
        raise SchemaError(
            f"pre-period column {pre!r}: expected numbers, found only missing "
            "values; give a column with each person's metric before the test"
        )
    covariate = np.where(missing, np.nanmean(covariate), covariate)
    values = columns["outcome"]
    centred = covariate - covariate.mean()
    variance = float(centred @ centred)
    theta = (
        0.0 if variance == 0 else float(centred @ (values - values.mean())) / variance
    )
    adjusted = values - theta * centred
    before = float(np.var(values, ddof=1))
    after = float(np.var(adjusted, ddof=1))
    columns["outcome"] = adjusted
    logger.info(
        "CUPED theta %.4g removed %.1f %% of the outcome variance",
        theta,
        0.0 if before == 0 else 100 * (1 - after / before),
    )
    return {
        "pre": pre,
        "theta": theta,
        "variance_before": before,
        "variance_after": after,
        "variance_reduction": 0.0 if before == 0 else 1.0 - after / before,
        "pre_missing": int(missing.sum()),
    }


def _split_arms(
    codes: np.ndarray,
    names: list[str],
    columns: dict[str, np.ndarray],
    ordered: list[str],
) -> dict[str, _Arm]:
    """Return each variant's rows of every role, one stable sort for all."""
    position = {name: i for i, name in enumerate(ordered)}
    codes = np.array([position[n] for n in names], dtype=np.int64)[codes]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(ordered) + 1))
    arms = {}
    for i, name in enumerate(ordered):
        rows = order[bounds[i] : bounds[i + 1]]
        picked = {r: columns[r][rows] if r in columns else None for r in _ARM_ROLES}
        arms[name] = _Arm(name, **picked)
    return arms


def _estimate(
    metric: str, use_means: bool, control: _Arm, treatment: _Arm, alpha: float
) -> _Estimate:
    if metric == "roi":
        return _roi_estimate(control, treatment, alpha)
    if use_means:
        return _welch_estimate(control.outcome, treatment.outcome, alpha)
    return _proportion_estimate(control.outcome, treatment.outcome, alpha)


def _proportion_estimate(
    control: np.ndarray, treatment: np.ndarray, alpha: float
) -> _Estimate:
    """Two-proportion z-test (pooled SE) with a Wald interval (unpooled SE)."""
    n_c, n_t = len(control), len(treatment)
    x_c, x_t = float(control.sum()), float(treatment.sum())
    p_c, p_t = x_c / n_c, x_t / n_t
    difference = p_t - p_c
    pooled = (x_c + x_t) / (n_c + n_t)
    test_se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    var_c, var_t = p_c * (1 - p_c) / n_c, p_t * (1 - p_t) / n_t
    ci_se = math.sqrt(var_c + var_t)
    z = stats.norm.ppf(1 - alpha / 2)
    if test_se > 0:
        statistic = difference / test_se
        p_value = float(2 * stats.norm.sf(abs(statistic)))
    else:
        statistic, p_value = None, None
    return _Estimate(
        "rate_difference",
        p_c,
        p_t,
        var_c,
        var_t,
        difference,
        ci_se,
        statistic,
        p_value,
        difference - z * ci_se,
        difference + z * ci_se,
    )


def _welch_estimate(
    control: np.ndarray, treatment: np.ndarray, alpha: float
) -> _Estimate:
    """Welch's unequal-variance t-test and its t interval."""
    n_c, n_t = len(control), len(treatment)
    m_c, m_t = float(control.mean()), float(treatment.mean())
    difference = m_t - m_c
    var_c = float(np.var(control, ddof=1)) / n_c if n_c > 1 else math.nan
    var_t = float(np.var(treatment, ddof=1)) / n_t if n_t > 1 else math.nan
    se = math.sqrt(var_c + var_t)
    if not se > 0:
        return _Estimate(
            "mean_difference", m_c, m_t, var_c, var_t, difference, None, None, None,
            None, None,
        )  # fmt: skip
    dof = (var_c + var_t) ** 2 / (var_c**2 / (n_c - 1) + var_t**2 / (n_t - 1))
    statistic = difference / se
    p_value = float(2 * stats.t.sf(abs(statistic), dof))
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    return _Estimate(
        "mean_difference",
        m_c,
        m_t,
        var_c,
        var_t,
        difference,
        se,
        statistic,
        p_value,
        difference - half,
        difference + half,
    )


def _ratio_moments(
    numerator: np.ndarray, denominator: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """Return the means and the covariance matrix of the two arm means."""
    n = len(numerator)
    covariance = np.cov(numerator, denominator, ddof=1) / n
    return float(numerator.mean()), float(denominator.mean()), covariance


def _roi_estimate(control: _Arm, treatment: _Arm, alpha: float) -> _Estimate:
    """Delta-method comparison of ROI, or incremental ROI for a free control."""
    z = stats.norm.ppf(1 - alpha / 2)
    rev_c, cost_c, cov_c = _ratio_moments(control.revenue, control.cost)
    rev_t, cost_t, cov_t = _ratio_moments(treatment.revenue, treatment.cost)

    if cost_c > 0 and cost_t > 0:
        roi_c, var_c = _delta_ratio(rev_c, cost_c, cov_c)
        roi_t, var_t = _delta_ratio(rev_t, cost_t, cov_t)
        difference = roi_t - roi_c
        se = math.sqrt(var_c + var_t)
        estimand = "roi_difference"
    else:
        # A control without cost has no ROI: compare the extra money instead.
        roi_c = None if cost_c <= 0 else rev_c / cost_c - 1
        roi_t = None if cost_t <= 0 else rev_t / cost_t - 1
        var_c = var_t = math.nan
        extra_cost = cost_t - cost_c
        estimand = "incremental_roi"
        if extra_cost == 0:
            return _Estimate(
                estimand, roi_c, roi_t, var_c, var_t, None, None, None, None, None,
                None,
            )  # fmt: skip
        difference, variance = _delta_ratio(rev_t - rev_c, extra_cost, cov_t + cov_c)
        se = math.sqrt(variance)

    if not se > 0:
        return _Estimate(
            estimand, roi_c, roi_t, var_c, var_t, difference, None, None, None, None,
            None,
        )  # fmt: skip
    statistic = difference / se
    return _Estimate(
        estimand,
        roi_c,
        roi_t,
        var_c,
        var_t,
        difference,
        se,
        statistic,
        float(2 * stats.norm.sf(abs(statistic))),
        difference - z * se,
        difference + z * se,
    )


def _delta_ratio(
    numerator: float, denominator: float, covariance: np.ndarray
) -> tuple[float, float]:
    """Return ``numerator / denominator - 1`` and its delta-method variance."""
    ratio = numerator / denominator
    gradient = np.array([1 / denominator, -ratio / denominator])
    return ratio - 1, float(gradient @ covariance @ gradient)


def _comparison(
    estimate: _Estimate,
    control: _Arm,
    treatment: _Arm,
    raw_p: float,
    adjusted_p: float,
    alpha: float,
    srm_p: float,
) -> Comparison:
    lift = lift_low = lift_high = None
    c, t = estimate.control_value, estimate.treatment_value
    if estimate.estimand != "incremental_roi" and c is not None and c != 0:
        lift = (t - c) / abs(c)
        var = estimate.treatment_var / c**2 + t**2 * estimate.control_var / c**4
        if var > 0 and math.isfinite(var):
            half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(var)
            lift_low, lift_high = lift - half, lift + half
    return Comparison(
        control=control.name,
        treatment=treatment.name,
        estimand=estimate.estimand,
        control_value=_num(c),
        treatment_value=_num(t),
        difference=_num(estimate.difference),
        ci_low=_num(estimate.ci_low),
        ci_high=_num(estimate.ci_high),
        lift=_num(lift),
        lift_ci_low=_num(lift_low),
        lift_ci_high=_num(lift_high),
        statistic=_num(estimate.statistic),
        p_value=_num(adjusted_p),
        p_value_raw=_num(raw_p),
        significant=bool(adjusted_p < alpha) if not math.isnan(adjusted_p) else False,
        control_persons=control.persons,
        treatment_persons=treatment.persons,
        srm_p_value=_num(srm_p),
        money=_money_difference(control, treatment),
    )


def _money(arm: _Arm) -> dict[str, float | None] | None:
    if arm.revenue is None and arm.cost is None:
        return None
    revenue = None if arm.revenue is None else float(arm.revenue.sum())
    cost = None if arm.cost is None else float(arm.cost.sum())
    per = arm.persons
    return {
        "revenue_total": revenue,
        "revenue_per_person": None if revenue is None else revenue / per,
        "cost_total": cost,
        "cost_per_person": None if cost is None else cost / per,
        "profit_per_person": None
        if revenue is None or cost is None
        else (revenue - cost) / per,
        "roi": None if not cost or revenue is None else (revenue - cost) / cost,
    }


def _money_difference(control: _Arm, treatment: _Arm) -> dict[str, float | None] | None:
    before, after = _money(control), _money(treatment)
    if before is None or after is None:
        return None

    def change(key: str) -> float | None:
        if before[key] is None or after[key] is None:
            return None
        return after[key] - before[key]

    profit = change("profit_per_person")
    return {
        "incremental_revenue_per_person": change("revenue_per_person"),
        "incremental_cost_per_person": change("cost_per_person"),
        "incremental_profit_per_person": profit,
        "incremental_profit_total": None
        if profit is None
        else profit * treatment.persons,
    }


def _variant_summary(
    arm: _Arm,
    metric: str,
    use_means: bool,
    count: float,
    expected_share: float,
    total: float,
) -> VariantSummary:
    value = std_error = None
    if metric == "roi":
        revenue, cost, covariance = _ratio_moments(arm.revenue, arm.cost)
        if cost > 0:
            value, variance = _delta_ratio(revenue, cost, covariance)
            std_error = math.sqrt(variance)
    elif arm.persons:
        value = float(arm.outcome.mean())
        if use_means:
            spread = float(np.var(arm.outcome, ddof=1)) if arm.persons > 1 else math.nan
        else:
            spread = value * (1 - value)
        std_error = math.sqrt(spread / arm.persons)
    return VariantSummary(
        name=arm.name,
        persons=int(count),
        share=float(count / total),
        expected_share=float(expected_share),
        value=_num(value),
        std_error=_num(std_error),
        money=_money(arm),
    )


def _method_sentence(metric: str, use_means: bool, cuped: bool, correction: str) -> str:
    if metric == "roi":
        test = (
            "ROI = (revenue - cost) / cost per arm, delta-method standard errors, "
            "z-test and normal interval (incremental ROI when the control has no "
            "cost)"
        )
    elif use_means:
        test = "Welch's t-test and t interval on the per-person means"
    else:
        test = (
            "two-proportion z-test (pooled standard error) with a Wald interval "
            "(unpooled standard error)"
        )
    if cuped:
        test += " of the CUPED-adjusted outcome"
    adjust = {
        "holm": "p-values adjusted with Holm's step-down method",
        "bonferroni": "p-values adjusted with Bonferroni",
        "none": "p-values not adjusted",
    }[correction]
    return f"{test}; {adjust}; intervals not adjusted."


def _num(value: Any) -> float | None:
    """Return a plain float, or None for missing/NaN values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
