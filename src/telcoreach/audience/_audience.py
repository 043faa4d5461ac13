"""Ranked, consented audiences and k-anonymous aggregate exports."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis

from telcoreach.engine import Engine
from telcoreach.errors import ConsentError, WorkspaceError
from telcoreach.privacy import consent_status, consented, deidentified_aggregate

__all__ = ["AudienceSummary", "build_audience", "eligible_subscribers"]

logger = logging.getLogger(__name__)


@dataclass
class AudienceSummary:
    """What ``audience`` exported and whom it left out, and why."""

    segment: str
    in_segment: int
    excluded_no_consent: int
    excluded_opted_out: int
    exported: int
    output: str
    output_sha256: str
    group_by: list[str] = field(default_factory=list)
    k_anonymity: dict[str, Any] | None = None
    deidentification: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "segment": self.segment,
            "in_segment": self.in_segment,
            "excluded_no_consent": self.excluded_no_consent,
            "excluded_opted_out": self.excluded_opted_out,
            "exported": self.exported,
            "output": self.output,
            "output_sha256": self.output_sha256,
            "group_by": self.group_by,
            "k_anonymity": self.k_anonymity,
            "deidentification": self.deidentification,
        }


def _purposes(engine: Engine, purpose: str | None) -> list[str]:
    """Return the consents an audience member needs: contact, and profiling."""
    config = engine.workspace.config
    needed = [purpose or config.audience.consent_purpose]
    # Members were chosen by their profile, so profiling consent must hold now.
    if config.profile.require_consent and "profiling" not in needed:
        needed.append("profiling")
    return needed


def eligible_subscribers(
    engine: Engine, profiles: ibis.Table, purpose: str | None = None
) -> ibis.Table:
    """Return ``profiles`` restricted to people who may be contacted now.

    Consent is read at call time from the consent registry, the opt-out
    register and the newest subscriber records (see
    :func:`telcoreach.privacy.consented`), so a revocation takes effect
    without rebuilding profiles or tiers.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace.
    profiles : ibis.Table
        Candidates, with a ``subscriber`` column.
    purpose : str, optional
        Contact purpose; defaults to ``audience.consent_purpose``. Profiling
        consent is required too when ``profile.require_consent`` is set.
    """
    eligible = profiles
    for needed in _purposes(engine, purpose):
        eligible = consented(engine, eligible, needed)
    return eligible


def _exclusions(
    engine: Engine, members: ibis.Table, purpose: str | None
) -> tuple[int, int]:
    """Return members left out (without consent, revoked or opted out)."""
    refused = None
    for needed in _purposes(engine, purpose):
        status = consent_status(engine, members, needed)
        refused = (
            status
            if refused is None
            else refused.join(status, "subscriber").select(
                "subscriber",
                consented=refused.consented & status.consented,
                revoked=refused.revoked | status.revoked,
            )
        )
    refused = refused.filter(~refused.consented)
    counts = refused.aggregate(
        revoked=refused.revoked.cast("int64").sum(), total=refused.count()
    ).to_pyarrow()
    revoked = int(counts["revoked"][0].as_py() or 0)
    return int(counts["total"][0].as_py() or 0) - revoked, revoked


def build_audience(
    engine: Engine,
    segment: str,
    top: int,
    out: Path,
    *,
    group_by: list[str] | None = None,
    purpose: str = "marketing",
    consent_purpose: str | None = None,
) -> AudienceSummary:
    """Export the ``top`` subscribers of ``segment`` ranked by propensity.

    Parameters
    ----------
    engine : Engine
        Workspace engine with ``profiles``, ``tiers`` and ``scores`` tables.
    segment : str
        Tier name.
    top : int
        Most subscribers to list.
    out : Path
        CSV file to write.
    group_by : list of str, optional
        Write an aggregate (counts per group of these profile columns and
        per value of ``privacy.sensitive_attribute``) instead of a token
        list. The columns are generalised and small groups suppressed until
        every group has >= k people and >= l sensitive values
        (:func:`telcoreach.privacy.deidentified_aggregate`).
    purpose : str
        Purpose recorded in the audit log.
    consent_purpose : str, optional
        Consent every exported subscriber must have at the time of export
        (default ``audience.consent_purpose``).

    Raises
    ------
    WorkspaceError
        If the segment does not exist.
    PrivacyError
        If no generalisation within the suppression budget reaches k and l.
    """
    profiles = engine.table("profiles")
    tiers = engine.table("tiers")
    known = sorted(tiers.select("tier").distinct().to_pyarrow()["tier"].to_pylist())
    if segment not in known:
        raise WorkspaceError(
            f"segment {segment!r} not found; expected one of {', '.join(known)} "
            "(names come from the tier rules; run `telcoreach segment` after "
            "changing them)"
        )
    members = profiles.join(tiers.filter(tiers.tier == segment), "subscriber")
    if engine.has_table("scores"):
        members = members.left_join(
            engine.table("scores").select("subscriber", "propensity"), "subscriber"
        ).drop("subscriber_right")
    else:
        members = members.mutate(propensity=ibis.literal(None, "float64"))

    in_segment = members.count().to_pyarrow().as_py()
    no_consent, opted_out = _exclusions(engine, members, consent_purpose)
    eligible = eligible_subscribers(engine, members, consent_purpose)
    ranked = eligible.order_by(
        [ibis.desc(eligible.propensity.fill_null(-1.0)), eligible.subscriber]
    ).limit(top)

    out.parent.mkdir(parents=True, exist_ok=True)
    k_report = deidentified = None
    if group_by:
        missing = [c for c in group_by if c not in eligible.columns]
        if missing:
            raise WorkspaceError(
                f"cannot group by {', '.join(missing)}: not a profile column; "
                f"expected some of {', '.join(eligible.columns)}"
            )
        # Generalise/suppress to k and l; the file holds the anonymised counts.
        deidentified = deidentified_aggregate(
            ranked, group_by, engine.workspace.config.privacy
        )
        frame, k_report = deidentified.frame, deidentified.k_report
        frame.to_csv(out, index=False)
        exported = int(frame["subscribers"].sum())
    else:
        frame = ranked.select(
            "subscriber", "tier", propensity=ranked.propensity.round(4)
        ).to_pandas()
        frame.insert(0, "rank", range(1, len(frame) + 1))
        frame.to_csv(out, index=False)
        exported = len(frame)
    if exported == 0 and in_segment:
        raise ConsentError(
            f"none of the {in_segment} subscribers of {segment!r} may be contacted "
            "(no marketing consent or opted out); nothing was exported"
        )

    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    engine.workspace.record_use(
        "audience",
        purpose,
        tables=["profiles", "tiers", "scores", "subscribers", "consent_events"],
        subscribers=exported,
        # Absolute: a workspace opened by a relative path would resolve a
        # relative ``out`` twice and record no digest.
        output=Path(out).resolve(),
        details={
            "segment": segment,
            "top": top,
            "group_by": group_by or [],
            "consents_required": _purposes(engine, consent_purpose),
            "deidentification": deidentified.to_dict() if deidentified else None,
        },
    )
    summary = AudienceSummary(
        segment=segment,
        in_segment=in_segment,
        excluded_no_consent=no_consent,
        excluded_opted_out=opted_out,
        exported=exported,
        output=str(out),
        output_sha256=digest,
        group_by=list(group_by or []),
        k_anonymity=k_report.to_dict() if k_report else None,
        deidentification=deidentified.to_dict() if deidentified else None,
    )
    logger.info("audience %s: %d exported of %d", segment, exported, in_segment)
    return summary
