"""Sections built from the lake manifest and the warehouse tables.

Every figure is aggregated by the engine; only counts per tier, per bin or
per category come back to Python. No subscriber token, cell id or source path
reaches the page.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import ibis

from telcoreach.engine import Engine
from telcoreach.reports._charts import (
    PALETTE,
    bar_chart,
    grouped_bar_chart,
    histogram_chart,
)
from telcoreach.reports._format import compact, count, decimal, exact, percent
from telcoreach.reports._layout import Card, Chart, Section, Table

__all__ = [
    "PROFILE_MEASURES",
    "Measure",
    "audience_size",
    "data_section",
    "profiles_section",
    "tiers_section",
    "virtual_cell_counts",
]

logger = logging.getLogger(__name__)

_HISTOGRAM_BINS = 30
_INTEGER_BIN_LIMIT = 40
_TOP_REASONS = 12
_REASON_CHARS = 48


@dataclass(frozen=True)
class Measure:
    """A numeric profile column shown as a histogram."""

    column: str
    title: str
    unit: str
    meaning: str


#: Profile columns drawn as histograms, when the profile has them.
PROFILE_MEASURES = (
    Measure(
        "radius_of_gyration_km",
        "Radius of gyration",
        "km",
        "How far, typically, a phone is from the centre of its movements.",
    ),
    Measure(
        "n_stay_points",
        "Stay points",
        "places",
        "Places where a phone stayed for a while (home, work, school, shops).",
    ),
    Measure(
        "subway_trips_weekday",
        "Subway trips on weekdays",
        "trips",
        "Rides through several subway-station cells on working days.",
    ),
    Measure(
        "online_min_per_day",
        "Time online per day",
        "min",
        "Minutes of app sessions per active day.",
    ),
    Measure(
        "online_min_per_day_school_zone",
        "Time online near schools",
        "min",
        "Minutes per day of app sessions on cells close to a school.",
    ),
    Measure(
        "k12_app_count",
        "K-12 education apps",
        "apps",
        "Different school and homework apps used.",
    ),
    Measure(
        "tutoring_searches",
        "Tutoring searches",
        "searches",
        "Searches with a tutoring keyword.",
    ),
    Measure(
        "days_near_school",
        "Days near a school",
        "days",
        "Days on which a phone was seen on a cell close to a school.",
    ),
)
_CATEGORIES = (("age_band", "Age band"), ("gender", "Gender"))


def _first_row(table: ibis.Table) -> dict[str, Any]:
    rows = table.to_pyarrow().to_pylist()
    return rows[0] if rows else {}


def data_section(engine: Engine) -> Section | None:
    """Return rows received, stored and quarantined per record kind, or None."""
    batches = engine.lake_store.batches()
    if not batches:
        return None

    per_kind: dict[str, dict[str, Any]] = {}
    reasons: dict[tuple[str, str], int] = defaultdict(int)
    for batch in batches:
        totals = per_kind.setdefault(
            batch.kind,
            {"batches": 0, "sources": 0, "rows_in": 0, "stored": 0, "days": set()},
        )
        totals["batches"] += 1
        totals["sources"] += len(batch.sources)
        totals["rows_in"] += batch.rows_in
        totals["stored"] += batch.rows_stored
        totals["days"].update(batch.days)
        for reason, rows in batch.quarantined.items():
            reasons[(batch.kind, reason)] += rows

    kinds = sorted(per_kind, key=lambda kind: -per_kind[kind]["rows_in"])
    quarantined = {
        kind: sum(rows for (k, _), rows in reasons.items() if k == kind)
        for kind in kinds
    }
    rows_in = sum(per_kind[kind]["rows_in"] for kind in kinds)
    stored = sum(per_kind[kind]["stored"] for kind in kinds)
    rejected = sum(quarantined.values())

    section = Section(
        key="data",
        title="Data received",
        lead=(
            "What came into the lake: rows read from each source, rows kept, and "
            "rows set aside in quarantine because they failed a check."
        ),
    )
    section.cards = [
        Card("Rows received", compact(rows_in), exact(rows_in, "rows")),
        Card(
            "Rows stored",
            compact(stored),
            f"{percent(stored / rows_in if rows_in else None)} of rows received",
        ),
        Card(
            "Rows quarantined",
            compact(rejected),
            f"{percent(rejected / rows_in if rows_in else None, 2)} of rows received",
        ),
        Card(
            "Batches",
            count(len(batches)),
            f"{len(kinds)} record kind{'s' if len(kinds) != 1 else ''}",
        ),
    ]
    section.charts.append(
        Chart(
            "chart-data-rows",
            "Rows per record kind",
            grouped_bar_chart(
                kinds,
                {
                    "stored": [per_kind[kind]["stored"] for kind in kinds],
                    "quarantined": [quarantined[kind] for kind in kinds],
                },
                value_title="rows",
                colors=(PALETTE[2], PALETTE[3]),
            ),
        )
    )
    if reasons:
        top = sorted(reasons.items(), key=lambda item: -item[1])[:_TOP_REASONS]
        labels = [f"{kind}: {_shorten(reason)}" for (kind, reason), _ in top]
        section.charts.append(
            Chart(
                "chart-data-reasons",
                "Why rows were quarantined",
                bar_chart(
                    labels,
                    [rows for _, rows in top],
                    value_title="rows",
                    labels=[compact(rows) for _, rows in top],
                    horizontal=True,
                    colors=PALETTE[3],
                    hover_unit="rows",
                ),
                caption=(
                    f"The {len(top)} most frequent reasons"
                    if len(reasons) > len(top)
                    else ""
                ),
            )
        )
    section.tables.append(
        Table(
            columns=[
                "Record kind",
                "Batches",
                "Source files",
                "Days",
                "Rows received",
                "Stored",
                "Quarantined",
                "Quarantined share",
            ],
            rows=[
                [
                    kind,
                    count(per_kind[kind]["batches"]),
                    count(per_kind[kind]["sources"]),
                    _day_span(per_kind[kind]["days"]),
                    count(per_kind[kind]["rows_in"]),
                    count(per_kind[kind]["stored"]),
                    count(quarantined[kind]),
                    percent(
                        quarantined[kind] / per_kind[kind]["rows_in"]
                        if per_kind[kind]["rows_in"]
                        else None,
                        2,
                    ),
                ]
                for kind in kinds
            ],
            numeric=[False, True, True, False, True, True, True, True],
        )
    )
    return section


def _shorten(reason: str) -> str:
    if len(reason) <= _REASON_CHARS:
        return reason
    return reason[: _REASON_CHARS - 1].rstrip() + "…"


def _day_span(days: set[str]) -> str:
    if not days:
        return "–"
    first, last = min(days), max(days)
    if first == last:
        return first
    return f"{first} – {last} ({len(days)} days)"


def tiers_section(engine: Engine) -> Section | None:
    """Return the size and share of each tier, or None without a tiers table."""
    if not engine.has_table("tiers"):
        return None
    tiers = engine.table("tiers")
    sizes = (
        tiers.group_by("tier")
        .aggregate(subscribers=tiers.count(), rule_index=tiers.rule_index.min())
        .order_by(["rule_index", "tier"])
        .to_pyarrow()
        .to_pylist()
    )
    if not sizes:
        return None
    total = sum(row["subscribers"] for row in sizes)
    names = [str(row["tier"]) for row in sizes]
    colors = [PALETTE[index % len(PALETTE)] for index in range(len(sizes))]

    section = Section(
        key="tiers",
        title="Tiers",
        lead=(
            "How many subscribers each tier rule picked. Rules are tried in order "
            "and a subscriber joins the first tier whose rule matches."
        ),
    )
    if len(sizes) <= 8:
        section.cards = [
            Card(
                name,
                compact(row["subscribers"]),
                f"{percent(row['subscribers'] / total)}",
            )
            for name, row in zip(names, sizes, strict=True)
        ]
    section.charts.append(
        Chart(
            "chart-tiers",
            "Subscribers per tier",
            bar_chart(
                names,
                [row["subscribers"] for row in sizes],
                value_title="subscribers",
                labels=[percent(row["subscribers"] / total) for row in sizes],
                horizontal=True,
                colors=colors,
                hover_unit="subscribers",
            ),
        )
    )
    section.tables.append(
        Table(
            columns=["Order", "Tier", "Subscribers", "Share"],
            rows=[
                [
                    str(row["rule_index"] + 1)
                    if row["rule_index"] is not None
                    else "–",
                    name,
                    count(row["subscribers"]),
                    percent(row["subscribers"] / total),
                ]
                for name, row in zip(names, sizes, strict=True)
            ],
            numeric=[True, False, True, True],
            caption=f"{count(total)} subscribers in all.",
        )
    )
    return section


def profiles_section(engine: Engine) -> Section | None:
    """Return distributions of the subscriber profile, or None without profiles."""
    if not engine.has_table("profiles"):
        return None
    profiles = engine.table("profiles")
    schema = profiles.schema()
    measures = [
        m
        for m in PROFILE_MEASURES
        if m.column in schema and schema[m.column].is_numeric()
    ]

    facts = _first_row(profiles.aggregate(**_profile_metrics(profiles, measures)))
    subscribers = facts.get("subscribers") or 0
    if subscribers == 0:
        return None

    section = Section(
        key="profiles",
        title="Subscriber profiles",
        lead=(
            "What a typical subscriber looks like: how far they move, where they "
            "live and work, and how they use their phone. Each chart counts people."
        ),
    )
    section.cards.append(
        Card(
            "Subscribers profiled",
            compact(subscribers),
            exact(subscribers) or "one profile each",
        )
    )
    for column, label in (
        ("home_cell", "Home cell found"),
        ("work_cell", "Work cell found"),
        ("subway_commuter", "Subway commuters"),
    ):
        found = facts.get(f"{column}__found")
        if column in schema and found is not None:
            section.cards.append(
                Card(label, percent(found / subscribers), f"{count(found)} subscribers")
            )

    binnings = {
        m.column: _binning(
            schema[m.column].is_integer(),
            facts[f"{m.column}__min"],
            facts[f"{m.column}__p99"],
        )
        for m in measures
        if facts.get(f"{m.column}__n")
    }
    bins = _histogram_bins(profiles, binnings)
    for index, measure in enumerate(measures):
        if measure.column in binnings and bins.get(measure.column):
            section.charts.append(
                _histogram(
                    measure,
                    facts,
                    binnings[measure.column],
                    bins[measure.column],
                    index,
                )
            )
    section.charts.extend(_category_charts(profiles, schema, len(measures)))
    return section


def _profile_metrics(
    profiles: ibis.Table, measures: list[Measure]
) -> dict[str, ibis.Value]:
    schema = profiles.schema()
    metrics: dict[str, ibis.Value] = {"subscribers": profiles.count()}
    if "home_cell" in schema:
        metrics["home_cell__found"] = profiles.home_cell.count()
    if "work_cell" in schema:
        metrics["work_cell__found"] = profiles.work_cell.count()
    if "subway_commuter" in schema and schema["subway_commuter"].is_boolean():
        commuter = profiles.subway_commuter.fill_null(False)
        metrics["subway_commuter__found"] = commuter.cast("int64").sum()
    for measure in measures:
        column = profiles[measure.column]
        metrics[f"{measure.column}__n"] = column.count()
        metrics[f"{measure.column}__min"] = column.min().cast("float64")
        metrics[f"{measure.column}__p50"] = column.quantile(0.5).cast("float64")
        metrics[f"{measure.column}__p99"] = column.quantile(0.99).cast("float64")
    return metrics


@dataclass(frozen=True)
class _Binning:
    start: float
    step: float
    upper: float
    integer: bool


def _binning(integer: bool, lowest: float, p99: float) -> _Binning:
    """Return bins from the lowest value to the 99th percentile, at a round width."""
    upper = max(p99, lowest)
    if integer and upper - math.floor(lowest) <= _INTEGER_BIN_LIMIT:
        return _Binning(float(math.floor(lowest)), 1.0, upper, True)
    span = upper - lowest
    step = _nice_step(span / _HISTOGRAM_BINS) if span > 0 else max(abs(lowest), 1) / 10
    if integer:
        step = max(1.0, math.ceil(step))
    start = math.floor(lowest / step) * step
    return _Binning(start, step, upper, False)


def _nice_step(raw: float) -> float:
    """Return the smallest of 1, 2, 2.5 or 5 times a power of ten at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _histogram_bins(
    profiles: ibis.Table, binnings: dict[str, _Binning]
) -> dict[str, dict[int, int]]:
    """Return ``{column: {bin: subscribers}}`` counted in one engine query."""
    parts = []
    for name, binning in binnings.items():
        column = profiles[name]
        kept = profiles.filter(column.notnull() & (column <= binning.upper))
        value = kept[name].cast("float64")
        parts.append(
            kept.select(
                measure=ibis.literal(name),
                bin=((value - binning.start) / binning.step).floor().cast("int64"),
            )
        )
    if not parts:
        return {}
    stacked = parts[0] if len(parts) == 1 else ibis.union(*parts)
    counted = stacked.group_by(["measure", "bin"]).aggregate(
        subscribers=stacked.count()
    )
    bins: dict[str, dict[int, int]] = defaultdict(dict)
    for row in counted.to_pyarrow().to_pylist():
        bins[row["measure"]][row["bin"]] = row["subscribers"]
    return bins


def _histogram(
    measure: Measure,
    facts: dict[str, Any],
    binning: _Binning,
    bins: dict[int, int],
    index: int,
) -> Chart:
    numbers = list(range(min(bins), max(bins) + 1))
    offset = 0.0 if binning.integer else 0.5
    centres = [binning.start + (number + offset) * binning.step for number in numbers]
    counts = [bins.get(number, 0) for number in numbers]
    left_out = facts[f"{measure.column}__n"] - sum(counts)

    median = decimal(facts[f"{measure.column}__p50"], 1)
    caption = f"{measure.meaning} Median {median} {measure.unit}."
    if left_out > 0:
        caption += (
            f" The {count(left_out)} highest values (above "
            f"{decimal(binning.upper, 1)} {measure.unit}, the top 1 %) are left out "
            "so the bulk stays readable."
        )
    return Chart(
        f"chart-profile-{measure.column.replace('_', '-')}",
        measure.title,
        histogram_chart(
            centres,
            counts,
            binning.step,
            value_title=f"{measure.title.lower()} ({measure.unit})",
            color=PALETTE[index % len(PALETTE)],
        ),
        caption=caption,
    )


def _category_charts(profiles: ibis.Table, schema: Any, offset: int) -> list[Chart]:
    present = [(column, title) for column, title in _CATEGORIES if column in schema]
    if not present:
        return []
    parts = [
        profiles.select(
            measure=ibis.literal(column),
            value=profiles[column].cast("string").fill_null("unknown"),
        )
        for column, _ in present
    ]
    stacked = parts[0] if len(parts) == 1 else ibis.union(*parts)
    counted = stacked.group_by(["measure", "value"]).aggregate(
        subscribers=stacked.count()
    )
    by_column: dict[str, dict[str, int]] = defaultdict(dict)
    for row in counted.to_pyarrow().to_pylist():
        by_column[row["measure"]][row["value"]] = row["subscribers"]

    charts = []
    for index, (column, title) in enumerate(present):
        values = by_column.get(column)
        if not values:
            continue
        names = sorted(values, key=lambda name: (name == "unknown", name))
        total = sum(values.values())
        charts.append(
            Chart(
                f"chart-profile-{column.replace('_', '-')}",
                title,
                bar_chart(
                    names,
                    [values[name] for name in names],
                    value_title="subscribers",
                    labels=[percent(values[name] / total, 0) for name in names],
                    colors=PALETTE[(offset + index) % len(PALETTE)],
                    hover_unit="subscribers",
                ),
                caption=f"Subscribers by {title.lower()}, from the subscriber table.",
            )
        )
    return charts


def virtual_cell_counts(engine: Engine) -> tuple[int, int] | None:
    """Return ``(virtual cells, all cells)`` of the lake, or None without cells."""
    if not engine.has_lake("cells"):
        return None
    cells = engine.lake("cells")
    if "cell_type" not in cells.columns:
        return None
    facts = _first_row(
        cells.aggregate(
            cells=cells.count(),
            virtual=(cells.cell_type == "virtual").fill_null(False).cast("int64").sum(),
        )
    )
    return int(facts.get("virtual") or 0), int(facts.get("cells") or 0)


def audience_size(engine: Engine, segment: str) -> tuple[int, int | None] | None:
    """Return ``(members of segment, of whom may be contacted)``, or None.

    The second figure is None when the profile has no consent columns.
    """
    if not (engine.has_table("tiers") and engine.has_table("profiles")):
        return None
    from telcoreach.audience import eligible_subscribers

    tiers = engine.table("tiers")
    profiles = engine.table("profiles")
    members = profiles.semi_join(tiers.filter(tiers.tier == segment), "subscriber")
    in_segment = members.count().to_pyarrow().as_py()
    if not {"consent_marketing", "opted_out"} <= set(profiles.columns):
        return in_segment, None
    eligible = eligible_subscribers(engine, members)
    return in_segment, eligible.count().to_pyarrow().as_py()
