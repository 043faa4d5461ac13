"""Personal-information impact assessment (PIA) skeleton, filled with facts.

PIPL Art. 55 requires an assessment before processing sensitive personal
information, automated decision-making, or providing personal information
to others; Art. 56 says what it covers: (1) whether purpose and method are
lawful, legitimate and necessary, (2) the impact on individuals' rights and
the risks, (3) whether the safeguards are lawful, effective and proportionate
to the risk. :func:`write_pia` writes ``reports/pia.md`` with those sections,
filled with what the workspace knows (schemas, configuration, consent
registry, lake manifest, audit log) and leaves the judgements to a person.
The document holds counts only: no token and no raw identifier.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telcoreach.errors import PrivacyError
from telcoreach.lake import Lake
from telcoreach.privacy._consent import (
    CONSENT_TABLE,
    MARKETING_PURPOSES,
    consent_status,
)
from telcoreach.privacy._scan import find_raw_identifiers
from telcoreach.privacy._tokens import KEY_ENV
from telcoreach.schemas import KINDS

__all__ = ["SENSITIVE_KINDS", "run_pia", "write_pia"]

logger = logging.getLogger(__name__)

#: Record kinds holding sensitive personal information (PIPL Art. 28) and why.
SENSITIVE_KINDS: dict[str, str] = {
    "signalling": "whereabouts (location trajectory from serving cells)",
    "dpi": "browsing and app use, search terms, with the serving cell",
    "partner_customers": "financial accounts (credit default, loans)",
    "measurement_reports": (
        "whereabouts (radio measurements that place a handset between cells)"
    ),
}
_CATEGORY: dict[str, str] = {
    "signalling": "location events",
    "measurement_reports": "location measurements (radio signal reports)",
    "dpi": "internet use",
    "subscribers": "identity, demographics, device, consent flags",
    "campaign_outcomes": "marketing contacts and purchases",
    "partner_customers": "partner customer attributes",
    "cells": "network reference (not personal)",
    "pois": "places (not personal)",
    "weather": "weather (not personal)",
}


def _personal(kind: str) -> bool:
    return any(f.identifier is not None for f in KINDS[kind].fields)


def _sensitive(kind: str) -> str | None:
    """Return why a kind holds sensitive personal information, or None."""
    if kind in SENSITIVE_KINDS:
        return SENSITIVE_KINDS[kind]
    if not _personal(kind):
        return None
    fields = KINDS[kind].fields
    # A kind added later is judged by its fields: a cell (serving or
    # neighbour) or a position is a whereabout, free text typed by a person is
    # private communication.
    if any(
        f.name.endswith("cell_id") or f.name in {"lat", "lon", "latitude", "longitude"}
        for f in fields
    ):
        return "whereabouts (position or serving cell of a person)"
    if any(f.free_text for f in fields):
        return "free text typed by a person"
    return None


def _category(kind: str) -> str:
    if kind in _CATEGORY:
        return _CATEGORY[kind]
    return KINDS[kind].description.split(":")[0].split(" (")[0].rstrip(".")


def _lake_facts(engine: Any) -> list[dict[str, Any]]:
    lake = Lake(engine.workspace.lake)
    facts = []
    for kind in KINDS:
        batches = lake.batches(kind)
        if not batches:
            continue
        rows = sum(b.rows_stored - b.rows_erased for b in batches)
        days = sorted(d for b in batches for d in b.days)
        subscribers = None
        if _personal(kind) and engine.has_lake(kind):
            table = engine.lake(kind)
            subscribers = table.subscriber.nunique().to_pyarrow().as_py()
        facts.append(
            {
                "kind": kind,
                "batches": len(batches),
                "rows": rows,
                "subscribers": subscribers,
                "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None,
                "first_ingest": min(b.ingested_at for b in batches),
                "last_ingest": max(b.ingested_at for b in batches),
            }
        )
    return facts


def _consent_facts(engine: Any) -> dict[str, dict[str, int]]:
    """Return per purpose: subscribers consenting now, revoked, and total known."""
    import ibis

    parts = []
    if engine.has_lake("subscribers"):
        parts.append(engine.lake("subscribers").select("subscriber"))
    purposes = [*MARKETING_PURPOSES, "profiling"]
    if engine.has_table(CONSENT_TABLE):
        events = engine.table(CONSENT_TABLE)
        parts.append(events.select("subscriber"))
        recorded = events.select("purpose").distinct().to_pyarrow()["purpose"]
        recorded = recorded.to_pylist()
        purposes += sorted(p for p in recorded if p not in purposes)
    if not parts:
        return {}
    people = ibis.union(*parts, distinct=True) if len(parts) > 1 else parts[0]
    facts = {}
    for purpose in purposes:
        status = consent_status(engine, people, purpose)
        row = (
            status.aggregate(
                known=status.count(),
                consenting=status.consented.cast("int64").sum(),
                revoked=status.revoked.cast("int64").sum(),
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        facts[purpose] = {k: int(v or 0) for k, v in row.items()}
    return facts


#: Actions that hand data to someone: exports and partner sharing.
_SHARING_ACTIONS = ("audience", "psi serve", "psi join")
_SHARING_PREFIXES = ("fl", "federated")


def _is_sharing(entry: dict[str, Any]) -> bool:
    """Whether an audit entry records an export or a sharing with a partner."""
    action = str(entry.get("action", ""))
    output = str(entry.get("output") or "").replace("\\", "/")
    return (
        action in _SHARING_ACTIONS
        or action.split(" ")[0].startswith(_SHARING_PREFIXES)
        or "export" in action
        or output.startswith("exports/")
        or "/exports/" in output
    )


def _recipient(entry: dict[str, Any]) -> tuple[str, str]:
    """Return (level of the data, who receives it) for a sharing entry."""
    action = str(entry.get("action", ""))
    details = entry.get("details") or {}
    if action.startswith("psi"):
        partner = details.get("consent_purpose") or ""
        partner = partner.removeprefix("sharing:") or "peer (no partner named)"
        level = (
            "count only"
            if details.get("mode") == "cardinality"
            else "subscriber-level (tokens)"
        )
        return level, partner
    if action.split(" ")[0].startswith(_SHARING_PREFIXES):
        return "model updates", "federation parties"
    aggregate = details.get("deidentification") or details.get("group_by")
    level = "aggregate" if aggregate else "subscriber-level (tokens)"
    return level, "export file (marketing)"


def _audit_facts(path: Path) -> dict[str, Any]:
    actions: Counter[tuple[str, str]] = Counter()
    exports: dict[tuple[str, str, str], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            actions[(entry.get("action", "?"), entry.get("purpose", "?"))] += 1
            if _is_sharing(entry):
                level, partner = _recipient(entry)
                item = exports.setdefault(
                    (entry.get("action", "?"), level, partner),
                    {"times": 0, "subscribers": 0, "last": None, "purposes": set()},
                )
                item["times"] += 1
                item["subscribers"] += int(entry.get("subscribers") or 0)
                item["last"] = entry.get("at")
                item["purposes"].add(entry.get("purpose", "?"))
    return {"actions": actions, "exports": exports}


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def build_pia(engine: Any) -> str:
    """Return the impact assessment of the engine's workspace as Markdown."""
    return _assess(engine)[0]


def _assess(engine: Any) -> tuple[str, dict[str, Any]]:
    """Return the assessment as Markdown and its facts as a JSON-ready dict."""
    workspace = engine.workspace
    config = workspace.config
    now = datetime.now(UTC).isoformat(timespec="seconds")
    lake = _lake_facts(engine)
    consent = _consent_facts(engine)
    audit = _audit_facts(workspace.audit_path)
    chain = workspace.verify_audit()
    forgotten = len(workspace.forgotten_tokens())
    fingerprint = workspace.pseudonymiser.fingerprint
    key_store = f"${KEY_ENV}" if os.environ.get(KEY_ENV) else "key file, mode 0600"
    present = {item["kind"] for item in lake}
    sensitive_present = [k for k in KINDS if k in present and _sensitive(k)]
    privacy = config.privacy

    lines = [
        f"# Personal-information impact assessment: {config.city}",
        "",
        f"Generated {now} by `telcoreach pia` from the workspace's schemas, "
        "configuration, consent registry, lake manifest and audit log. Facts "
        "below are filled in; the lines marked *Assessor* need a person's "
        "judgement (PIPL Art. 55-56). Keep this record for at least three "
        "years (Art. 56).",
        "",
        "## 1. Processing assessed",
        "",
        config.description or "(no description in config.yaml)",
        "",
        "### Data categories",
        "",
    ]
    rows = []
    for kind in KINDS:
        fact = next((item for item in lake if item["kind"] == kind), None)
        rows.append(
            [
                f"`{kind}`",
                _category(kind),
                "yes" if _personal(kind) else "no",
                f"**yes**: {_sensitive(kind)}" if _sensitive(kind) else "no",
                f"{fact['rows']:,}" if fact else "not held",
                f"{fact['subscribers']:,}" if fact and fact["subscribers"] else "-",
            ]
        )
    lines += _table(
        ["kind", "category", "personal", "sensitive (Art. 28)", "rows", "subscribers"],
        rows,
    )
    lines += [
        "",
        "Identifiers (MSISDN, IMSI, IMEI) are replaced by keyed tokens at ingest; "
        "the lake and everything derived from it hold tokens only.",
        "",
        "## 2. Purpose, lawfulness and necessity (Art. 55(1), 56(1))",
        "",
        f"- Declared purpose of audiences: **{config.audience.purpose}**; consent "
        f"each member must hold when exported: `{config.audience.consent_purpose}`.",
        "- Profiling only with profiling consent: "
        f"**{'yes' if config.profile.require_consent else 'no'}** "
        "(`profile.require_consent`).",
        f"- Sensitive categories processed: {', '.join(sensitive_present) or 'none'}"
        " (separate consent required, Art. 29).",
        "",
        "### Consent registry now (latest decision wins)",
        "",
    ]
    if consent:
        lines += _table(
            ["purpose", "subscribers known", "consenting now", "revoked or opted out"],
            [
                [
                    f"`{p}`",
                    f"{f['known']:,}",
                    f"{f['consenting']:,}",
                    f"{f['revoked']:,}",
                ]
                for p, f in consent.items()
            ],
        )
    else:
        lines.append("No subscriber records and no consent events yet.")
    lines += ["", "### Uses recorded in the audit log", ""]
    if audit["actions"]:
        lines += _table(
            ["action", "purpose", "times"],
            [[a, p, n] for (a, p), n in sorted(audit["actions"].items())],
        )
    else:
        lines.append("The audit log is empty.")
    lines += [
        "",
        "*Assessor*: is each purpose specific and lawful, and is every data "
        "category necessary for it? Could an aggregate replace subscriber-level "
        "data?",
        "",
        "## 3. Impact on individuals' rights and risks (Art. 56(2))",
        "",
        "- Automated decision-making (Art. 24): tier rules and a propensity "
        "model rank people for marketing; `telcoreach segment --explain TOKEN` "
        "explains one decision.",
        "- Whereabouts and browsing reveal home, workplace, routine and "
        "interests; a leak could enable tracking or discrimination.",
        f"- Erasure requests carried out (`telcoreach forget`): {forgotten}.",
        "- Rights offered: withdraw consent (`telcoreach consent revoke`, SMS "
        "reply TD/退订/STOP via `telcoreach optout`), erasure (`forget`), "
        "access to one's consent history (`consent show`).",
        "",
        "### Recipients (exports and partner sharing, from the audit log)",
        "",
    ]
    if audit["exports"]:
        lines += _table(
            [
                "action",
                "data",
                "recipient",
                "times",
                "subscriber rows",
                "purposes",
                "last",
            ],
            [
                [
                    a,
                    level,
                    partner,
                    e["times"],
                    f"{e['subscribers']:,}",
                    ", ".join(sorted(e["purposes"])),
                    e["last"],
                ]
                for (a, level, partner), e in sorted(audit["exports"].items())
            ],
        )
    else:
        lines.append("No export or sharing recorded.")
    sharing = [p for p in consent if p.startswith("sharing:")]
    lines += [
        "",
        "Partners with a sharing purpose in the consent registry: "
        + (", ".join(f"`{p.removeprefix('sharing:')}`" for p in sharing) or "none")
        + ".",
        "",
        "### Retention",
        "",
    ]
    if lake:
        lines += _table(
            ["kind", "batches", "data from", "data to", "first ingest", "last ingest"],
            [
                [
                    f"`{i['kind']}`",
                    i["batches"],
                    i["first_day"],
                    i["last_day"],
                    i["first_ingest"],
                    i["last_ingest"],
                ]
                for i in lake
            ],
        )
    else:
        lines.append("The lake is empty.")
    lines += [
        "",
        "No automatic retention limit is configured: data stays until erased "
        "(`forget`) or the workspace is deleted. *Assessor*: set a retention "
        "period per category.",
        "",
        "## 4. Safeguards (Art. 56(3))",
        "",
        "- Pseudonymisation: HMAC-SM3 keyed tokens (120 bits, base32) for "
        f"MSISDN, IMSI and IMEI; key fingerprint `{fingerprint}`, kept in the "
        f"{key_store}.",
        f"- Aggregate exports: k-anonymity with k = {privacy.k_anonymity} over "
        f"{', '.join(privacy.quasi_identifiers)}"
        + (
            f"; l-diversity l = {privacy.l_diversity}"
            if getattr(privacy, "l_diversity", None)
            else ""
        )
        + ".",
        "- Consent is checked when data is read (audiences, exports, triggers): "
        "a withdrawal is honoured at once, without a rebuild.",
        "- Rows that fail validation keep no raw identifier; free text has digit "
        "runs redacted.",
        f"- Audit log: {chain.entries} hash-chained (SM3) entries; chain "
        + (
            "**intact**."
            if chain.ok
            else f"**broken at line {chain.broken_line}**: {chain.reason}."
        ),
        "",
        "*Assessor*: are these safeguards effective and proportionate to the "
        "risks above? Residual risk and decision:",
        "",
        "## 5. Conclusion",
        "",
        "- Assessor:",
        "- Date:",
        "- Decision (proceed / proceed with changes / stop):",
        "",
    ]
    lake_by_kind = {item["kind"]: item for item in lake}
    facts = {
        "sections": [line[3:] for line in lines if line.startswith("## ")],
        "categories": [
            {
                "kind": kind,
                "category": _category(kind),
                "personal": _personal(kind),
                "sensitive": _sensitive(kind),
                "rows": lake_by_kind.get(kind, {}).get("rows"),
                "subscribers": lake_by_kind.get(kind, {}).get("subscribers"),
            }
            for kind in KINDS
        ],
        "sensitive_kinds_held": sensitive_present,
        "consent": consent,
        "uses": [
            {"action": a, "purpose": p, "times": n}
            for (a, p), n in sorted(audit["actions"].items())
        ],
        "recipients": [
            {
                "action": a,
                "data": level,
                "recipient": partner,
                "times": e["times"],
                "subscribers": e["subscribers"],
                "purposes": sorted(e["purposes"]),
                "last": e["last"],
            }
            for (a, level, partner), e in sorted(audit["exports"].items())
        ],
        "erasures": forgotten,
        "audit_log": {"entries": chain.entries, "intact": chain.ok},
    }
    return "\n".join(lines), facts


def write_pia(engine: Any, out_dir: Path | None = None) -> Path:
    """Write ``pia.md`` and return its path.

    Raises
    ------
    PrivacyError
        If the text would contain anything that looks like a raw identifier.
    """
    return _write(engine, out_dir)[0]


def _write(engine: Any, out_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    """Write ``pia.md``; return its path and the facts it states."""
    text, facts = _assess(engine)
    leaks = find_raw_identifiers(text)
    if leaks:
        raise PrivacyError(
            f"the impact assessment would contain raw identifiers ({leaks}); "
            "nothing was written. Check the workspace description in config.yaml"
        )
    folder = Path(out_dir) if out_dir else engine.workspace.reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pia.md"
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path, facts


def run_pia(workspace: Any, out_dir: Path | None = None) -> dict[str, Any]:
    """Write the assessment, audit it and return a summary dict.

    The summary holds the file's path and digests and the facts the
    assessment states: its sections, every data category (personal,
    sensitive, rows, subscribers), consent counts per purpose, uses and
    recipients from the audit log. Counts only, no token.
    """
    from telcoreach.engine import Engine

    engine = Engine(workspace)
    try:
        path, facts = _write(engine, out_dir)
    finally:
        engine.close()
    entry = workspace.record_use(
        "pia",
        "compliance (PIPL Art. 55-56)",
        tables=["manifest", "subscribers", CONSENT_TABLE, "audit.log"],
        output=path.resolve(),  # relative to the cwd, not to the workspace
    )
    return {
        "path": str(path),
        "output_sm3": entry.get("output_sm3"),
        "output_sha256": entry.get("output_sha256"),
        **facts,
    }
