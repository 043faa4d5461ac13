"""Audience: who may be contacted, ranked by propensity, exported safely."""

from telcoreach.audience._audience import (
    AudienceSummary,
    build_audience,
    eligible_subscribers,
)

__all__ = ["AudienceSummary", "build_audience", "eligible_subscribers"]
