"""Measure what worked: A/B tests with ROI, and multi-touch attribution."""

from telcoreach.measure._attribution import (
    ATTRIBUTION_MODELS,
    DEFAULT_ATTRIBUTION_MODELS,
    AttributionResult,
    attribute,
    read_costs,
    run_attribution,
)
from telcoreach.measure._attribution_journeys import Journeys, read_journeys
from telcoreach.measure._experiments import (
    METRICS,
    SRM_ALPHA,
    Comparison,
    ExperimentResult,
    VariantSummary,
    adjust_p_values,
    analyse_experiment,
)
from telcoreach.measure._experiments_assign import assign_variants
from telcoreach.measure._experiments_io import (
    parse_split,
    read_experiment,
    run_abtest,
    run_abtest_assign,
    run_abtest_plan,
)
from telcoreach.measure._experiments_plan import plan_sample_size

__all__ = [
    "ATTRIBUTION_MODELS",
    "DEFAULT_ATTRIBUTION_MODELS",
    "METRICS",
    "SRM_ALPHA",
    "AttributionResult",
    "Comparison",
    "ExperimentResult",
    "Journeys",
    "VariantSummary",
    "adjust_p_values",
    "analyse_experiment",
    "assign_variants",
    "attribute",
    "parse_split",
    "plan_sample_size",
    "read_costs",
    "read_experiment",
    "read_journeys",
    "run_abtest",
    "run_abtest_assign",
    "run_abtest_plan",
    "run_attribution",
]
