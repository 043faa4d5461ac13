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
from telcoreach.privacy import check_k_anonymity

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
        }


def eligible_subscribers(engine: Engine, profiles: ibis.Table) -> ibis.Table:
    """Return ``profiles`` restricted to people who may receive marketing.

    A subscriber is eligible with marketing consent and no opt-out, both in
    the subscriber table and in the workspace's opt-out register
    (``optouts`` table), which takes effect without rebuilding profiles.
    """
    consent = profiles.consent_marketing.fill_null(False)
    opted_out = profiles.opted_out.fill_null(False)
    eligible = profiles.filter(consent & ~opted_out)
    if engine.has_table("optouts"):
        eligible = eligible.anti_join(engine.table("optouts"), "subscriber")
    return eligible


def build_audience(
    engine: Engine,
    segment: str,
    top: int,
    out: Path,
    *,
    group_by: list[str] | None = None,
    purpose: str = "marketing",
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
        Write an aggregate (counts per group of these profile columns)
        instead of a token list; refused when a group is smaller than the
        workspace's k.
    purpose : str
        Purpose recorded in the audit log.

    Raises
    ------
    WorkspaceError
        If the segment does not exist.
    PrivacyError
        If an aggregate has a group smaller than k.
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

    counts = members.aggregate(
        total=members.count(),
        no_consent=(~members.consent_marketing.fill_null(False)).sum(),
        opted_out=members.opted_out.fill_null(False).sum(),
    ).to_pyarrow()
    in_segment = counts["total"][0].as_py()
    eligible = eligible_subscribers(engine, members)
    ranked = eligible.order_by(
        [ibis.desc(eligible.propensity.fill_null(-1.0)), eligible.subscriber]
    ).limit(top)

    out.parent.mkdir(parents=True, exist_ok=True)
    k = engine.workspace.config.privacy.k_anonymity
    k_report = None
    if group_by:
        missing = [c for c in group_by if c not in eligible.columns]
        if missing:
            raise WorkspaceError(
                f"cannot group by {', '.join(missing)}: not a profile column; "
                f"expected some of {', '.join(eligible.columns)}"
            )
        frame = (
            ranked.group_by(group_by).aggregate(subscribers=ranked.count()).to_pandas()
        )
        k_report = check_k_anonymity(frame, group_by, k, count_column="subscribers")
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
    engine.workspace.audit(
        action="audience",
        purpose=purpose,
        tables=["profiles", "tiers", "scores"],
        subscribers=exported,
        output=str(out),
        output_sha256=digest,
        details={"segment": segment, "top": top, "group_by": group_by or []},
    )
    summary = AudienceSummary(
        segment=segment,
        in_segment=in_segment,
        excluded_no_consent=int(counts["no_consent"][0].as_py() or 0),
        excluded_opted_out=int(counts["opted_out"][0].as_py() or 0),
        exported=exported,
        output=str(out),
        output_sha256=digest,
        group_by=list(group_by or []),
        k_anonymity=k_report.to_dict() if k_report else None,
    )
    logger.info("audience %s: %d exported of %d", segment, exported, in_segment)
    return summary
