"""Plan an experiment: how many people each arm needs to detect an effect.

Power is the chance that the test finds an effect of the planned size when
it is really there; ``alpha`` is the chance of a false alarm when there is
none. For conversion rates the effect is measured with Cohen's ``h``, the
difference of the arcsine-square-root transformed rates, whose sampling
variance does not depend on the rate. This is the convention of statsmodels'
``proportion_effectsize`` with ``NormalIndPower``, so the figures agree with
it.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import optimize, stats

from telcoreach.errors import ConfigError

__all__ = ["plan_sample_size"]


def plan_sample_size(
    baseline_rate: float,
    minimum_detectable_effect: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    variants: int = 2,
) -> dict[str, Any]:
    """Return the people needed per arm to detect a change in a conversion rate.

    Parameters
    ----------
    baseline_rate : float
        Conversion rate expected in the control, in (0, 1).
    minimum_detectable_effect : float
        Smallest change worth detecting: relative to the baseline (0.1 means
        +10 %) when ``relative``, else in rate points (0.01 means +1 point).
        Negative values plan for a drop.
    relative : bool
        How to read ``minimum_detectable_effect``.
    alpha : float
        Two-sided significance level of each comparison before correction.
    power : float
        Wanted chance of detecting the effect, in (alpha, 1).
    ratio : float
        People in each treatment arm per person in the control.
    variants : int
        Arms including the control. With more than two, ``alpha`` is split
        over the ``variants - 1`` comparisons (Bonferroni), which is
        conservative for Holm.

    Returns
    -------
    dict
        ``baseline_rate``, ``target_rate``, ``absolute_effect``,
        ``relative_effect``, ``effect_size_h`` (Cohen's h), ``alpha``,
        ``alpha_per_comparison``, ``power``, ``ratio``, ``variants``,
        ``n_control`` and ``n_per_treatment`` (rounded up), ``n_total``,
        ``n_control_exact`` and ``method``.

    Raises
    ------
    ConfigError
        If a rate, level or size is out of range.

    Examples
    --------
    >>> plan = plan_sample_size(0.10, 0.10)  # detect 10 % -> 11 %
    >>> plan["n_control"], plan["n_total"]
    (14745, 29490)
    """
    _check_plan(baseline_rate, alpha, power, ratio, variants)
    if relative:
        target_rate = baseline_rate * (1 + minimum_detectable_effect)
    else:
        target_rate = baseline_rate + minimum_detectable_effect
    if not 0 < target_rate < 1 or target_rate == baseline_rate:
        raise ConfigError(
            "minimum detectable effect: expected a non-zero change that keeps "
            f"the rate in (0, 1), found {baseline_rate} -> {target_rate:.6g} "
            f"(effect {minimum_detectable_effect}, relative={relative}); give a "
            "smaller effect, or relative=False for rate points"
        )

    h = 2 * (math.asin(math.sqrt(target_rate)) - math.asin(math.sqrt(baseline_rate)))
    alpha_each = alpha / (variants - 1)
    effective_n = _effective_n(abs(h), alpha_each, power)
    # effective_n = 1 / (1/n_control + 1/n_treatment) with n_treatment = ratio * n_c
    n_control_exact = effective_n * (1 + ratio) / ratio
    n_control = math.ceil(n_control_exact - 1e-9)
    n_treatment = math.ceil(n_control_exact * ratio - 1e-9)
    return {
        "baseline_rate": baseline_rate,
        "target_rate": target_rate,
        "absolute_effect": target_rate - baseline_rate,
        "relative_effect": target_rate / baseline_rate - 1,
        "effect_size_h": h,
        "alpha": alpha,
        "alpha_per_comparison": alpha_each,
        "power": power,
        "ratio": ratio,
        "variants": variants,
        "n_control": n_control,
        "n_per_treatment": n_treatment,
        "n_total": n_control + (variants - 1) * n_treatment,
        "n_control_exact": n_control_exact,
        "method": (
            "two-sided normal test on Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p0))"
            + (", Bonferroni over the treatments" if variants > 2 else "")
        ),
    }


def _check_plan(
    baseline_rate: float, alpha: float, power: float, ratio: float, variants: int
) -> None:
    problems = []
    if not 0 < baseline_rate < 1:
        problems.append(f"baseline_rate in (0, 1), found {baseline_rate!r}")
    if not 0 < alpha < 1:
        problems.append(f"alpha in (0, 1), found {alpha!r}")
    if not 0 < power < 1:
        problems.append(f"power in (0, 1), found {power!r}")
    if not ratio > 0:
        problems.append(f"ratio > 0, found {ratio!r}")
    if int(variants) != variants or variants < 2:
        problems.append(f"variants an integer >= 2, found {variants!r}")
    if problems:
        raise ConfigError(
            "sample-size plan: expected " + "; ".join(problems) + "; fix the option"
        )


def _power(effect: float, effective_n: float, alpha: float) -> float:
    """Two-sided power of a z-test whose statistic has mean effect*sqrt(n)."""
    shift = effect * math.sqrt(effective_n)
    critical = stats.norm.isf(alpha / 2)
    return float(stats.norm.sf(critical - shift) + stats.norm.cdf(-critical - shift))


def _effective_n(effect: float, alpha: float, power: float) -> float:
    """Solve the power equation (both tails) for the effective sample size."""
    if _power(effect, 1e-12, alpha) >= power:
        return 1e-12
    guess = ((stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) / effect) ** 2
    upper = 2 * guess + 10
    return float(
        optimize.brentq(
            lambda n: _power(effect, n, alpha) - power,
            1e-12,
            upper,
            xtol=1e-10,
            rtol=1e-14,
        )
    )
