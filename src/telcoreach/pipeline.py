"""The steps of the main job, each one function the CLI and the API call.

Every step opens what it needs from the workspace, does one thing, appends to
the audit log where it reads subscriber-level data or exports, and returns a
summary dict (the same dict ``--json`` prints).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from telcoreach.config import Config, load_config
from telcoreach.engine import Engine
from telcoreach.errors import ConsentError, DataSourceError, WorkspaceError
from telcoreach.ingest import ProgressCallback, ingest_batch, open_sources
from telcoreach.workspace import Workspace

__all__ = [
    "DEFAULT_RULES",
    "run_all",
    "run_audience",
    "run_demo",
    "run_ingest",
    "run_profile",
    "run_quality",
    "run_report",
    "run_score",
    "run_segment",
    "run_train",
]

logger = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).parent / "examples" / "rules.yaml"

#: Profile columns that are not features of a propensity model.
_NOT_FEATURES = {
    "subscriber",
    "home_cell",
    "work_cell",
    "home_lat",
    "home_lon",
    "work_lat",
    "work_lon",
    "consent_marketing",
    "consent_profiling",
    "opted_out",
    "tier",
    "rule_index",
}


def init_workspace(root: Path, config: Config | None = None) -> Workspace:
    """Create a workspace with the default tier rules beside its config."""
    workspace = Workspace.create(root, config)
    rules = workspace.resolve(workspace.config.segments)
    if not rules.exists() and DEFAULT_RULES.exists():
        shutil.copyfile(DEFAULT_RULES, rules)
    return workspace


def run_ingest(
    workspace: Workspace,
    kind: str,
    paths: list[Path],
    *,
    adapter: str = "csv",
    options: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    fail_if_nothing_stored: bool = True,
) -> dict[str, Any]:
    """Ingest files (or a public data set through an adapter) as ``kind``.

    Raises :class:`DataSourceError` naming the top quarantine reasons (or the
    files without data rows) when new input stored no row, unless
    ``fail_if_nothing_stored`` is False; the quarantine is kept either way.
    """
    data_dir = data_dir or (
        Path(workspace.config.data_dir) if workspace.config.data_dir else None
    )
    sources = open_sources(
        kind, paths, adapter=adapter, options=options, data_dir=data_dir
    )
    summary = ingest_batch(workspace, kind, sources, progress=progress)
    workspace.record_use(
        action="ingest",
        purpose="operations",
        tables=[kind],
        details={
            "batch_id": summary.batch_id,
            "adapter": adapter,
            "rows_stored": summary.rows_stored,
            "rows_quarantined": summary.rows_quarantined,
        },
    )
    if fail_if_nothing_stored and summary.problem is not None:
        raise DataSourceError(summary.problem)
    return summary.to_dict()


def run_quality(
    workspace: Workspace,
    engine_name: str | None = None,
    *,
    fail_on: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Check the lake against the quality gates (see :mod:`telcoreach.quality`)."""
    from telcoreach.quality import run_quality as check_quality

    summary = check_quality(workspace, engine_name, fail_on=fail_on, progress=progress)
    workspace.audit(
        action="quality",
        purpose="operations",
        tables=sorted(summary["batches"]),
        details={
            "errors": len(summary["errors"]),
            "warnings": len(summary["warnings"]),
        },
        output="warehouse:quality_results",
    )
    return summary


def run_profile(workspace: Workspace, engine_name: str | None = None) -> dict[str, Any]:
    """Build subscriber profiles from the lake."""
    from telcoreach.features import build_profiles

    engine = Engine(workspace, engine_name)
    try:
        summary = build_profiles(
            engine, require_consent=workspace.config.profile.require_consent
        )
    finally:
        engine.close()
    workspace.record_use(
        action="profile",
        purpose="profiling",
        tables=["signalling", "cells", "dpi", "pois", "subscribers"],
        subscribers=summary.subscribers,
        output="warehouse:profiles",
    )
    return summary.to_dict()


def _rules_path(workspace: Workspace, rules: Path | None) -> Path:
    path = Path(rules) if rules else workspace.resolve(workspace.config.segments)
    if not path.exists():
        raise WorkspaceError(
            f"tier rules {path} not found; pass --rules RULES.yaml (see docs/rules.md)"
        )
    return path


def run_segment(
    workspace: Workspace,
    rules: Path | None = None,
    *,
    estimate: bool = False,
    explain_token: str | None = None,
    engine_name: str | None = None,
) -> dict[str, Any]:
    """Assign tiers (or estimate their sizes, or explain one subscriber)."""
    from telcoreach.segments import assign_tiers, estimate_tiers, explain, load_rules

    tier_rules = load_rules(_rules_path(workspace, rules))
    engine = Engine(workspace, engine_name)
    try:
        profiles = engine.table("profiles")
        if explain_token is not None:
            workspace.record_use(
                action="segment explain",
                purpose="transparency",
                tables=["profiles"],
                subscribers=1,
            )
            return explain(profiles, tier_rules, explain_token).to_dict()
        sizes = estimate_tiers(profiles, tier_rules).to_dict()
        if estimate:
            workspace.record_use(
                action="segment estimate",
                purpose="profiling",
                tables=["profiles"],
                subscribers=sizes.get("subscribers"),
            )
            return sizes
        engine.save("tiers", assign_tiers(profiles, tier_rules))
    finally:
        engine.close()
    workspace.record_use(
        action="segment",
        purpose="profiling",
        tables=["profiles"],
        subscribers=sizes.get("subscribers"),
        output="warehouse:tiers",
    )
    return sizes


def _training_frame(engine: Engine) -> Any:
    from telcoreach.models import campaign_training_frame

    config = engine.workspace.config.model
    outcomes = engine.lake("campaign_outcomes")
    if config.campaign_id:
        outcomes = outcomes.filter(outcomes.campaign_id == config.campaign_id)
    if config.features == "partner_customers":
        customers = engine.lake("partner_customers").drop("_batch_seq")
        return campaign_training_frame(customers.to_pyarrow(), outcomes.to_pyarrow())
    profiles = engine.table("profiles")
    return campaign_training_frame(profiles.to_pyarrow(), outcomes.to_pyarrow())


def _profile_features(frame: Any) -> list[str]:
    return [
        column
        for column in frame.columns
        if column not in _NOT_FEATURES
        and column not in {"converted", "campaign_id", "channel", "contact_month"}
    ]


def run_train(workspace: Workspace, engine_name: str | None = None) -> dict[str, Any]:
    """Train the propensity model on campaign outcomes and register it."""
    from telcoreach.models import save_model, train_propensity

    config = workspace.config.model
    engine = Engine(workspace, engine_name)
    try:
        frame = _training_frame(engine)
    finally:
        engine.close()
    # Partner attributes are all features; a profile also has ids, cells, flags.
    features = (
        None if config.features == "partner_customers" else _profile_features(frame)
    )
    result = train_propensity(
        frame,
        "converted",
        features,
        test_size=config.test_size,
        seed=config.seed,
        baseline=None if config.baseline == "none" else config.baseline,
    )
    card = save_model(workspace.models_dir, config.name, result)
    workspace.record_use(
        action="train",
        purpose="modelling",
        tables=["campaign_outcomes", config.features],
        subscribers=len(frame),
        output=f"models/{config.name}/v{card.version}",
    )
    summary = card.to_dict()
    summary["rows"] = len(frame)
    return summary


def run_score(workspace: Workspace, engine_name: str | None = None) -> dict[str, Any]:
    """Score every profiled subscriber with the latest model."""
    import pyarrow as pa

    from telcoreach.errors import ModelError
    from telcoreach.models import load_model, score

    config = workspace.config.model
    try:
        model = load_model(workspace.models_dir, config.name)
    except ModelError as error:
        raise ModelError(f"{error}; run `telcoreach train` first") from None
    if config.features != "profile":
        return {
            "scored": 0,
            "reason": (
                f"model {config.name!r} was trained on {config.features}, a "
                "different population from the profiled subscribers; nothing to "
                "score"
            ),
        }
    engine = Engine(workspace, engine_name)
    try:
        profiles = engine.table("profiles").to_pandas()
        propensity = score(model, profiles)
        engine.save(
            "scores",
            pa.table(
                {
                    "subscriber": profiles["subscriber"].to_numpy(),
                    "propensity": propensity,
                    "model_version": [model.card.version] * len(profiles),
                }
            ),
        )
    finally:
        engine.close()
    workspace.record_use(
        action="score",
        purpose="modelling",
        tables=["profiles"],
        subscribers=len(profiles),
        output="warehouse:scores",
    )
    return {
        "scored": len(profiles),
        "mean_propensity": round(float(propensity.mean()), 4),
    }


def run_audience(
    workspace: Workspace,
    segment: str | None = None,
    top: int | None = None,
    out: Path | None = None,
    *,
    group_by: list[str] | None = None,
    engine_name: str | None = None,
) -> dict[str, Any]:
    """Export a ranked, consented audience (or a k-anonymous, l-diverse aggregate)."""
    from telcoreach.audience import build_audience

    settings = workspace.config.audience
    segment = segment or settings.segment
    slug = segment.replace(" ", "-")
    out = Path(out) if out else workspace.exports_dir / f"audience-{slug}.csv"
    engine = Engine(workspace, engine_name)
    try:
        summary = build_audience(
            engine,
            segment,
            top or settings.top,
            out,
            group_by=group_by,
            purpose=settings.purpose,
        )
    finally:
        engine.close()
    return summary.to_dict()


def run_report(
    workspace: Workspace,
    *,
    truth: Path | None = None,
    engine_name: str | None = None,
) -> dict[str, Any]:
    """Write ``reports/index.html`` (with ground-truth accuracy when given)."""
    from telcoreach.evaluate import evaluate_against_truth
    from telcoreach.reports import build_report

    engine = Engine(workspace, engine_name)
    try:
        evaluation = None
        if truth is not None:
            evaluation = evaluate_against_truth(engine, truth)
            (workspace.reports_dir / "evaluation.json").write_text(
                json.dumps(evaluation, indent=2)
            )
        summary = build_report(engine).to_dict()
    finally:
        engine.close()
    workspace.record_use(
        action="report",
        purpose="reporting",
        tables=["profiles", "tiers", "scores", "consent_events"],
        # Absolute, so a workspace opened by a relative path is not resolved
        # twice (which would record no digest).
        output=Path(summary["path"]).resolve() if summary.get("path") else None,
        details={"evaluated_against_truth": evaluation is not None},
    )
    if evaluation is not None:
        summary["evaluation"] = evaluation
    return summary


def run_subway_check(
    workspace: Workspace, engine_name: str | None = None
) -> dict[str, Any]:
    """Check detected subway rides against GeoLife's transport-mode labels."""
    from telcoreach.evaluate import check_subway_against_geolife_labels
    from telcoreach.ingest import default_data_dir

    data_dir = (
        Path(workspace.config.data_dir) if workspace.config.data_dir else None
    ) or default_data_dir()
    engine = Engine(workspace, engine_name)
    try:
        check = check_subway_against_geolife_labels(engine, data_dir)
    finally:
        engine.close()
    workspace.record_use(
        action="subway check", purpose="quality assurance", tables=["signalling"]
    )
    return check


def _subway_note(check: dict[str, Any]) -> str:
    return (
        "Subway riding checked against GeoLife's own transport-mode labels: "
        f"{check['labelled_subway_trips_with_events']} labelled subway trips fall "
        "inside the Beijing trajectories of this sample "
        f"({check['labelled_subway_trips_found']} found); "
        f"{check['rides_detected']} rides detected, "
        f"{check['rides_overlapping_another_mode']} of them during a trip labelled "
        "with another mode."
    )


def _save_run(workspace: Workspace, summary: dict[str, Any]) -> None:
    (workspace.reports_dir / "run.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str)
    )


def run_all(
    workspace: Workspace,
    *,
    truth: Path | None = None,
    notes: list[str] | None = None,
    progress: ProgressCallback | None = None,
    engine_name: str | None = None,
) -> dict[str, Any]:
    """Run every step on the sources listed in the workspace configuration."""
    started = time.perf_counter()
    config = workspace.config
    steps: dict[str, Any] = {"ingest": {}}
    total = len(config.sources) + 6

    def tick(step: str, done: int) -> None:
        if progress:
            progress(step, done, total)

    for number, source in enumerate(config.sources, start=1):
        tick(f"ingest {source.kind} ({source.adapter})", number - 1)
        label = f"{source.kind}:{source.adapter}"
        steps["ingest"][label] = run_ingest(
            workspace,
            source.kind,
            [Path(p) for p in source.paths],
            adapter=source.adapter,
            options=source.options,
            fail_if_nothing_stored=False,
        )
    done = len(config.sources)
    if config.sources:
        # A failed error gate stops the run before anything reads the batch.
        from telcoreach.quality import gate_error

        tick("quality", done)
        steps["quality"] = run_quality(workspace, engine_name)
        error = gate_error(steps["quality"], "error")
        if error is not None:
            error.summary = {
                "workspace": str(workspace.root),
                "city": config.city,
                "stopped": str(error),
                "notes": list(notes or []),
                "steps": steps,
            }
            _save_run(workspace, error.summary)
            raise error
    tick("profile", done)
    steps["profile"] = run_profile(workspace, engine_name)
    if any(source.adapter == "geolife" for source in config.sources):
        check = run_subway_check(workspace, engine_name)
        steps["subway_check"] = check
        notes = [*(notes or []), _subway_note(check)]
    tick("segment", done + 1)
    steps["segment"] = run_segment(workspace, engine_name=engine_name)
    tick("train", done + 2)
    steps["train"] = run_train(workspace, engine_name)
    tick("score", done + 3)
    steps["score"] = run_score(workspace, engine_name)
    tick("audience", done + 4)
    try:
        steps["audience"] = run_audience(workspace, engine_name=engine_name)
    except (ConsentError, WorkspaceError) as error:
        # An empty tier or nobody with consent is a result of the run, not a crash.
        steps["audience"] = {"exported": 0, "reason": str(error)}
    summary: dict[str, Any] = {
        "workspace": str(workspace.root),
        "city": config.city,
        "headline": _headline(steps),
        "notes": list(notes or []),
        "steps": steps,
    }
    _save_run(workspace, summary)
    tick("report", done + 5)
    steps["report"] = run_report(workspace, truth=truth, engine_name=engine_name)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["report"] = steps["report"].get("path")
    _save_run(workspace, summary)
    tick("done", total)
    return summary


def _headline(steps: dict[str, Any]) -> dict[str, Any]:
    """Return the figures a reader wants first from a run's step summaries."""
    metrics = steps.get("train", {}).get("metrics", {})
    return {
        "rows_ingested": {k: v["rows_stored"] for k, v in steps["ingest"].items()},
        "rows_quarantined": {
            k: v["rows_quarantined"] for k, v in steps["ingest"].items()
        },
        "subscribers_profiled": steps["profile"]["subscribers"],
        "home_cells_found": steps["profile"]["home_cells_found"],
        "work_cells_found": steps["profile"]["work_cells_found"],
        "tiers": {t["name"]: t["subscribers"] for t in steps["segment"]["tiers"]},
        "auc": {name: round(m["auc"], 4) for name, m in metrics.items()},
        "audience_exported": steps.get("audience", {}).get("exported", 0),
    }


def demo_config(inbox: Path) -> Config:
    """Return the configuration of a simulated city read from ``inbox``."""
    from telcoreach.config import parse_config

    def source(kind: str, path: str) -> dict[str, Any]:
        return {"kind": kind, "adapter": "csv", "paths": [str(inbox / path)]}

    return parse_config(
        {
            "city": "beijing (simulated)",
            "description": (
                "A synthetic city: real Beijing base stations and subway stations "
                "as the cell grid (plus virtual H3 cells where stations are "
                "sparse), synthetic people, schools and malls, with a hidden "
                "ground truth used only to measure accuracy."
            ),
            "sources": [
                source("cells", "cells.csv"),
                source("pois", "pois.csv"),
                source("subscribers", "subscribers.csv"),
                source("signalling", "signalling"),
                source("dpi", "dpi"),
                source("campaign_outcomes", "campaign_outcomes.csv"),
                source("weather", "weather.csv"),
            ],
        },
        "demo configuration",
    )


def run_demo(
    root: Path,
    *,
    subscribers: int = 20_000,
    days: int = 7,
    seed: int = 42,
    dirty_rate: float = 0.01,
    data_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Simulate a city into a fresh workspace and run the whole job on it."""
    from telcoreach.ingest import default_data_dir
    from telcoreach.simulate import simulate_city

    started = time.perf_counter()
    root = Path(root)
    inbox = root / "inbox" / "city"
    if progress:
        progress("simulate city", 0, 1)
    simulation = simulate_city(
        inbox,
        subscribers=subscribers,
        days=days,
        seed=seed,
        dirty_rate=dirty_rate,
        data_dir=data_dir or default_data_dir(),
        # Same seed, same bytes: a re-run finds its files already ingested.
        overwrite=True,
    )
    workspace = init_workspace(root, demo_config(inbox))
    summary = run_all(
        workspace,
        truth=inbox / "truth" / "ground_truth.csv",
        progress=progress,
    )
    summary["simulation"] = simulation.to_dict()
    summary["seconds"] = round(time.perf_counter() - started, 1)
    _save_run(workspace, summary)
    return summary


def load_run_config(path: Path) -> Config:
    """Read a run configuration (a workspace config with ``sources``)."""
    return load_config(path)
