"""Build the workspace's HTML report: one self-contained page of sections."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

import telcoreach
from telcoreach.engine import Engine
from telcoreach.errors import PrivacyError
from telcoreach.privacy import find_raw_identifiers
from telcoreach.reports._format import compact, count, decimal, exact
from telcoreach.reports._layout import Banner, Card, Section
from telcoreach.reports._model import latest_card, model_section
from telcoreach.reports._truth import evaluation_section, notes_section, read_json
from telcoreach.reports._warehouse import (
    audience_size,
    data_section,
    profiles_section,
    tiers_section,
    virtual_cell_counts,
)

__all__ = [
    "PLOTLY_JS",
    "REPORT_FILE",
    "ReportSummary",
    "build_report",
    "render_page",
    "write_page",
]

logger = logging.getLogger(__name__)

#: Name of the report page inside the output folder.
REPORT_FILE = "index.html"
#: Name of the Plotly library written beside the page, so it works offline.
PLOTLY_JS = "plotly.min.js"
_RUN_FILE = "run.json"
_EVALUATION_FILE = "evaluation.json"
_SECTION_ORDER = (
    "quality",
    "data",
    "tiers",
    "profiles",
    "model",
    "audience",
    "truth",
    "notes",
)


@dataclass
class ReportSummary:
    """What ``report`` wrote.

    Attributes
    ----------
    path : str
        The HTML page.
    sections : list of str
        Sections on the page, in order (``headline`` always first).
    skipped : list of str
        Sections left out because their data does not exist yet.
    charts : int
        Charts drawn.
    plotly_js_written : bool
        Whether ``plotly.min.js`` was (re)written; false when an identical
        copy was already there.
    seconds : float
        Time taken.
    """

    path: str
    sections: list[str]
    skipped: list[str] = field(default_factory=list)
    charts: int = 0
    plotly_js_written: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "path": self.path,
            "sections": list(self.sections),
            "skipped": list(self.skipped),
            "charts": self.charts,
            "plotly_js_written": self.plotly_js_written,
            "seconds": round(self.seconds, 2),
        }


def build_report(engine: Engine, out_dir: Path | None = None) -> ReportSummary:
    """Write the workspace's HTML report and return what it holds.

    The page (``index.html``) shows, each only when its data exists: a
    headline, the data received, tier sizes, profile distributions, the
    propensity model's held-out metrics, scores against ground truth
    (``reports/evaluation.json``, simulated cities only) and the run's notes
    (``reports/run.json``). Charts are drawn by ``plotly.min.js``, written
    once beside the page, so the page needs no network.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace to report on. Tables are aggregated in the
        engine; only counts per group reach Python.
    out_dir : Path, optional
        Folder to write to; defaults to the workspace's ``reports`` folder.
        ``run.json`` and ``evaluation.json`` are always read from the
        workspace's ``reports`` folder.

    Returns
    -------
    ReportSummary

    Raises
    ------
    PrivacyError
        If the page would contain something shaped like a raw MSISDN, IMSI or
        IMEI (say, in a tier name or a note); nothing is written then.
    WorkspaceError
        If ``run.json`` or ``evaluation.json`` is not a JSON object.
    ModelError
        If the newest model card cannot be read.

    Notes
    -----
    From ``run.json`` the report reads, each when present: ``notes`` (list
    of str), ``seconds`` (run time; else the sum of ``steps.*.seconds``),
    ``finished_at`` or ``started_at`` (ISO 8601) and ``audience.exported`` or
    ``steps.audience.exported`` (subscribers exported).
    """
    started = time.perf_counter()
    workspace = engine.workspace
    target = Path(out_dir) if out_dir is not None else workspace.reports_dir
    target.mkdir(parents=True, exist_ok=True)

    run = read_json(workspace.reports_dir / _RUN_FILE)
    evaluation = read_json(workspace.reports_dir / _EVALUATION_FILE)
    card = latest_card(workspace.models_dir, workspace.config.model.name)

    built = {
        "quality": quality_section(engine),
        "data": data_section(engine),
        "tiers": tiers_section(engine),
        "profiles": profiles_section(engine),
        "model": model_section(card),
        "audience": audience_section(run),
        "truth": evaluation_section(evaluation),
        "notes": notes_section(run),
    }
    sections = [built[key] for key in _SECTION_ORDER if built[key] is not None]
    skipped = [key for key in _SECTION_ORDER if built[key] is None]
    headline = headline_section(engine, run, card)

    html = render_page("report.html", headline, sections, datetime.now(UTC))
    page = target / REPORT_FILE
    plotly_written = write_page(
        html, page, "Check tier names, run notes and evaluation.json"
    )

    summary = ReportSummary(
        path=str(page),
        sections=["headline", *(section.key for section in sections)],
        skipped=skipped,
        charts=sum(len(section.charts) for section in sections),
        plotly_js_written=plotly_written,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "report written to %s: %d sections, %d charts, %.1f s (skipped: %s)",
        page,
        len(summary.sections),
        summary.charts,
        summary.seconds,
        ", ".join(skipped) or "none",
    )
    return summary


def headline_section(
    engine: Engine, run: dict[str, Any] | None, card: dict[str, Any] | None
) -> Section:
    """Return the page's headline: the city and its key figures."""
    config = engine.workspace.config
    city = config.city.replace("_", " ").replace("-", " ").title()
    section = Section(
        key="headline",
        title=city,
        lead=config.description
        or (
            "Who in the city is worth an offer, found from the carrier's network "
            "data with privacy built in: every figure here is an aggregate."
        ),
    )

    run_card = _run_card(run)
    if run_card is not None:
        section.cards.append(run_card)
    if engine.has_table("profiles"):
        profiled = engine.table("profiles").count().to_pyarrow().as_py()
        section.cards.append(
            Card(
                "Subscribers profiled",
                compact(profiled),
                exact(profiled) or "with a behaviour profile",
            )
        )
    audience_card = _audience_card(engine, run)
    if audience_card is not None:
        section.cards.append(audience_card)
    metrics = (card or {}).get("metrics") or {}
    primary = metrics.get("logistic_regression") or next(iter(metrics.values()), None)
    if isinstance(primary, dict) and primary.get("auc") is not None:
        section.cards.append(
            Card(
                "Model AUC",
                decimal(primary["auc"], 3),
                f"held-out, {count(card.get('rows_test'))} people",
            )
        )

    cells = virtual_cell_counts(engine)
    if cells is not None and cells[0] > 0:
        virtual, total = cells
        section.banners.append(
            Banner(
                "Positions run on a virtual H3 grid: "
                f"{count(virtual)} of {count(total)} cells are hexagons of a "
                "regular grid standing in for base stations, not real cell "
                "sites. Homes, workplaces and trips are only as precise as "
                "the grid.",
                "warning",
            )
        )
    return section


def _run_card(run: dict[str, Any] | None) -> Card | None:
    if not run:
        return None
    when = str(run.get("finished_at") or run.get("started_at") or "")
    when_text = when[:16].replace("T", " ")
    if when.endswith(("Z", "+00:00")):
        when_text += " UTC"
    seconds = _number(run.get("seconds"))
    detail = f"finished {when_text}" if when else "the whole pipeline"
    if seconds is None:
        # The pipeline writes the report before it knows its own total time.
        seconds = _steps_seconds(run.get("steps"))
        detail = "ingest to audience, summed over the steps"
    if seconds is not None:
        return Card("Run time", _duration(seconds), detail)
    if when:
        return Card("Run", when_text[:10], when_text[11:])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _steps_seconds(steps: Any) -> float | None:
    """Return the summed ``seconds`` of the run's step summaries, or None."""
    if not isinstance(steps, dict):
        return None
    found = []
    for summary in steps.values():
        if not isinstance(summary, dict):
            continue
        own = _number(summary.get("seconds"))
        if own is not None:
            found.append(own)
            continue
        # Ingest keeps one summary per source.
        found.extend(
            seconds
            for inner in summary.values()
            if isinstance(inner, dict)
            and (seconds := _number(inner.get("seconds"))) is not None
        )
    return sum(found) if found else None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _audience_card(engine: Engine, run: dict[str, Any] | None) -> Card | None:
    run = run or {}
    steps = run.get("steps") if isinstance(run.get("steps"), dict) else {}
    exported = run.get("audience") or steps.get("audience")
    if isinstance(exported, dict) and isinstance(exported.get("exported"), int):
        segment = exported.get("segment") or engine.workspace.config.audience.segment
        return Card(
            "Audience",
            compact(exported["exported"]),
            f"exported from “{segment}”, with consent",
        )
    segment = engine.workspace.config.audience.segment
    sizes = audience_size(engine, segment)
    if sizes is None:
        return None
    in_segment, eligible = sizes
    if eligible is None:
        return Card("Audience", compact(in_segment), f"in “{segment}”, consent unknown")
    return Card(
        "Audience",
        compact(eligible),
        f"may be contacted, of {count(in_segment)} in “{segment}”",
    )


def quality_section(engine: Engine) -> Section | None:
    """Return the failed quality gates of the newest batches, or None if unchecked.

    Reads the results ``telcoreach quality`` (or ``run``) stored; a report
    written before any quality check has no quality section.
    """
    from telcoreach.quality import stored_failures

    failures = stored_failures(engine)
    if failures is None:
        return None
    section = Section(
        "quality",
        "Data quality",
        "Gates checked on the newest batch of each source; errors stop a run, "
        "warnings are listed here.",
    )
    if not failures:
        section.banners.append(Banner("Every quality gate passed.", "pass"))
        return section
    for result in failures:
        tone = "fail" if result.severity == "error" else "warning"
        section.banners.append(Banner(result.describe(), tone))
    return section


def audience_section(run: dict[str, Any] | None) -> Section | None:
    """Return who was exported from the chosen tier, and who was left out why."""
    steps = (run or {}).get("steps")
    chosen = steps.get("audience") if isinstance(steps, dict) else None
    if not isinstance(chosen, dict):
        return None
    section = Section(
        "audience",
        "Audience",
        "Who may be contacted from the chosen tier, ranked by propensity: people "
        "without marketing consent or who opted out are never exported.",
    )
    if chosen.get("reason"):
        section.banners.append(Banner(str(chosen["reason"]), "warning"))
        return section
    section.cards = [
        Card(
            "In the tier", count(chosen.get("in_segment", 0)), chosen.get("segment", "")
        ),
        Card("No consent", count(chosen.get("excluded_no_consent", 0)), "left out"),
        Card("Opted out", count(chosen.get("excluded_opted_out", 0)), "left out"),
        Card("Exported", count(chosen.get("exported", 0)), "tokens only, by rank"),
    ]
    return section


def render_page(
    template: str,
    headline: Section,
    sections: list[Section],
    generated_at: datetime,
    **context: Any,
) -> str:
    """Return the HTML of a page template filled with a headline and sections.

    The figures of every section's charts are embedded as one JSON object;
    ``context`` passes further variables to templates that extend
    ``report.html``.
    """
    environment = Environment(
        loader=PackageLoader("telcoreach.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    figures = {
        chart.chart_id: chart.figure for section in sections for chart in section.charts
    }
    return environment.get_template(template).render(
        headline=headline,
        sections=sections,
        figures_json=_script_json(figures),
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        version=telcoreach.__version__,
        **context,
    )


def write_page(html: str, page: Path, where_to_look: str) -> bool:
    """Write a page and ``plotly.min.js`` beside it; return whether the library was.

    The page is scanned for raw identifiers first and written atomically.

    Raises
    ------
    PrivacyError
        If the page holds text shaped like a raw MSISDN, IMSI or IMEI;
        nothing is written then. ``where_to_look`` (say, "Check tier names")
        starts the message's advice.
    """
    leaks = find_raw_identifiers(html)
    if leaks:
        kinds = ", ".join(
            f"{kind} ({', '.join(found)})" for kind, found in leaks.items()
        )
        raise PrivacyError(
            f"the report would show text shaped like raw identifiers: {kinds}; "
            f"expected tokens and aggregates only. Nothing was written. "
            f"{where_to_look} for phone numbers or SIM ids."
        )

    plotly_written = _write_plotly_js(page.parent / PLOTLY_JS)
    staged = page.with_name(f".{page.name}.tmp")
    staged.write_text(html, encoding="utf-8")
    os.replace(staged, page)
    return plotly_written


def _script_json(value: Any) -> str:
    """Return JSON safe to place inside a ``<script>`` element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _write_plotly_js(path: Path) -> bool:
    """Write the Plotly library at ``path`` unless an identical copy is there."""
    from plotly.offline import get_plotlyjs

    library = get_plotlyjs().encode("utf-8")
    if path.is_file() and path.read_bytes() == library:
        return False
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_bytes(library)
    os.replace(staged, path)
    logger.info("wrote %s (%s)", path, compact(len(library)) + "B")
    return True
