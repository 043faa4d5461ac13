"""The attribution report: which channel earned the conversions, model by model.

:func:`build_attribution_report` turns the summary of
:func:`telcoreach.measure.run_attribution` into one HTML page in the look of
the workspace report: key figures, conversions and value credited to each
channel by each model (charts and tables), cost per conversion when spend was
given, the Markov removal effects and, when the Shapley value was sampled
rather than computed exactly, its confidence intervals. Each section opens
with a plain sentence saying what it shows and how the models differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telcoreach.errors import ConfigError, SchemaError
from telcoreach.reports._build import render_page, write_page
from telcoreach.reports._charts import PALETTE, bar_chart, grouped_bar_chart
from telcoreach.reports._format import compact, count, decimal, exact, percent
from telcoreach.reports._layout import Banner, Card, Chart, Section, Table

__all__ = ["build_attribution_report", "model_label"]

logger = logging.getLogger(__name__)

_TEMPLATE = "attribution.html"
_RULES = ("first_touch", "last_touch", "linear", "position_based", "time_decay")
_REQUIRED_KEYS = ("models", "channels", "totals", "rows")
_LABELS = {
    "first_touch": "First touch",
    "last_touch": "Last touch",
    "linear": "Linear",
    "position_based": "Position-based",
    "time_decay": "Time decay",
    "markov_1": "Markov",
    "shapley": "Shapley",
    "ordered_shapley": "Ordered Shapley",
}
_EXPLAINED = {
    "first_touch": (
        "gives each conversion whole to the channel that reached the person first."
    ),
    "last_touch": (
        "gives each conversion whole to the channel met just before converting."
    ),
    "linear": (
        "splits each conversion equally over the touches of the journey; a "
        "channel met twice gets two shares."
    ),
    "position_based": (
        "gives the first and the last touch the big shares (40\u00a0% each by "
        "default) and spreads the rest (20\u00a0%) over the touches between."
    ),
    "time_decay": (
        "favours recent touches: a touch's share halves for every half-life "
        "(7 days by default) it came before the last touch."
    ),
    "shapley": (
        "treats the channels as a team: each gets its fair share of what every "
        "coalition of channels converts, averaged over all the orders in which "
        "the channels could join."
    ),
    "ordered_shapley": (
        "is the Shapley value split further by the position of each touch in the "
        "journey."
    ),
}


def model_label(model: str) -> str:
    """Return the readable name of an attribution model (``Markov order 2``)."""
    if model in _LABELS:
        return _LABELS[model]
    if model.startswith("markov_"):
        return f"Markov order {model.removeprefix('markov_')}"
    return model.replace("_", " ").capitalize()


def build_attribution_report(
    summary: Mapping[str, Any], out_path: str | Path
) -> dict[str, Any]:
    """Write the HTML page of an attribution summary and return what it holds.

    Parameters
    ----------
    summary : mapping
        What :func:`telcoreach.measure.run_attribution` returns (or
        ``AttributionResult.to_dict()``).
    out_path : str or Path
        The page to write (``.html``); ``plotly.min.js`` is written once
        beside it, so the page opens offline.

    Returns
    -------
    dict
        ``path`` (the page), ``sections`` (keys in page order, ``headline``
        first), ``charts`` (charts drawn), ``plotly_js_written`` (false when an
        identical copy was already there) and ``seconds``.

    Raises
    ------
    ConfigError
        If ``out_path`` does not end in ``.html`` or ``.htm``.
    SchemaError
        If ``summary`` lacks the keys of an attribution summary.
    PrivacyError
        If the page would hold text shaped like a raw MSISDN, IMSI or IMEI
        (say, as a channel name); nothing is written then.
    """
    started = time.perf_counter()
    page = Path(out_path)
    if page.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(
            f"expected the attribution report to be an .html file, got {page}: "
            "name it, for example, attribution.html"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in summary]
    if missing:
        raise SchemaError(
            f"expected an attribution summary with {', '.join(_REQUIRED_KEYS)}, "
            f"found no {', '.join(missing)}: pass what run_attribution returns"
        )

    credits = _Credits(summary)
    built = [
        _models_section(credits),
        _credit_section(credits, "conversions"),
        _credit_section(credits, "value"),
        _cost_section(credits),
        _markov_section(credits),
        _shapley_section(credits),
    ]
    sections = [section for section in built if section is not None]
    html = render_page(_TEMPLATE, _headline(credits), sections, datetime.now(UTC))
    page.parent.mkdir(parents=True, exist_ok=True)
    plotly_written = write_page(html, page, "Check the channel names")

    report = {
        "path": str(page),
        "sections": ["headline", *(section.key for section in sections)],
        "charts": sum(len(section.charts) for section in sections),
        "plotly_js_written": plotly_written,
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info(
        "attribution report written to %s: %d sections, %d charts",
        page,
        len(report["sections"]),
        report["charts"],
    )
    return report


class _Credits:
    """The summary's credits as lookups, with channels ordered by credit."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self.summary = summary
        self.models: list[str] = list(summary["models"])
        self.totals: Mapping[str, float] = summary["totals"]
        costs = summary.get("costs_yuan")
        self.costs_yuan: dict[str, float] | None = (
            None if costs is None else dict(costs)
        )
        self.cell: dict[tuple[str, str], Mapping[str, Any]] = {
            (row["model"], row["channel"]): row for row in summary["rows"]
        }
        # Largest average credit first, so every chart and table reads alike.
        average = {
            channel: sum(self.credit(model, channel) for model in self.models)
            for channel in summary["channels"]
        }
        self.channels: list[str] = sorted(
            average, key=lambda channel: (-average[channel], channel)
        )
        self.colors = [PALETTE[i % len(PALETTE)] for i in range(len(self.models))]

    def credit(self, model: str, channel: str, quantity: str = "conversions") -> float:
        row = self.cell.get((model, channel))
        return float(row[quantity]) if row is not None else 0.0

    def series(self, quantity: str) -> dict[str, list[float]]:
        return {
            model_label(model): [
                self.credit(model, channel, quantity) for channel in self.channels
            ]
            for model in self.models
        }

    def cost_per_conversion(self, model: str, channel: str) -> float | None:
        if self.costs_yuan is None or channel not in self.costs_yuan:
            return None
        credited = self.credit(model, channel)
        return self.costs_yuan[channel] / credited if credited > 0 else None

    def money(self, yuan: float | None) -> str:
        """Return yuan with cents only when the totals are small."""
        if yuan is None:
            return "–"
        digits = 0 if abs(float(self.totals.get("value", 0.0))) >= 1_000 else 2
        return f"¥{yuan:,.{digits}f}"


def _headline(credits: _Credits) -> Section:
    totals = credits.totals
    journeys = float(totals.get("journeys", 0.0))
    conversions = float(totals.get("conversions", 0.0))
    value = float(totals.get("value", 0.0))
    models = credits.models
    section = Section(
        key="headline",
        title="Channel attribution",
        lead=(
            f"Which channels earned the {count(conversions)} conversions: "
            f"{len(models)} model{'s' if len(models) != 1 else ''} split each "
            "conversion, and its value, among the channels a person met on the "
            "way. Every model hands out the same total; they differ in who gets it."
        ),
    )
    section.cards = [
        Card(
            "Journeys",
            compact(journeys),
            _join(
                exact(journeys, "people"),
                f"{count(totals.get('touches'))} touches",
            ),
        ),
        Card(
            "Conversions",
            compact(conversions),
            f"{percent(conversions / journeys)} of journeys convert"
            if journeys > 0
            else "no journey",
        ),
        Card(
            "Conversion value",
            "¥" + compact(value),
            f"¥{decimal(value / conversions)} per conversion"
            if conversions > 0
            else "no conversion",
        ),
        Card("Channels", count(len(credits.channels)), _channels_detail(credits)),
        Card("Models", count(len(models)), _families(models)),
    ]
    if credits.costs_yuan is not None:
        spend = sum(credits.costs_yuan.values())
        section.cards.append(
            Card(
                "Spend",
                "¥" + compact(spend),
                f"¥{decimal(spend / conversions)} per conversion overall"
                if conversions > 0
                else "no conversion",
            )
        )
    if conversions == 0:
        section.banners.append(
            Banner(
                "No journey converted, so every model credits every channel with "
                "zero. Check that the conversions column is filled.",
                "warning",
            )
        )
    return section


def _join(*parts: str) -> str:
    return " · ".join(part for part in parts if part)


def _channels_detail(credits: _Credits) -> str:
    if credits.costs_yuan is None:
        return "met on at least one journey"
    with_spend = sum(channel in credits.costs_yuan for channel in credits.channels)
    return f"{with_spend} with spend given"


def _families(models: Sequence[str]) -> str:
    rules = sum(model in _RULES for model in models)
    markov = sum(model.startswith("markov_") for model in models)
    shapley = sum(model in ("shapley", "ordered_shapley") for model in models)
    return _join(
        f"{rules} rule{'s' if rules != 1 else ''}" if rules else "",
        f"{markov} Markov" if markov else "",
        f"{shapley} Shapley" if shapley else "",
    )


def _explain(model: str) -> str:
    """Return one plain sentence on how a model splits a conversion."""
    if not model.startswith("markov_"):
        return f"{model_label(model)} {_EXPLAINED[model]}"
    order = int(model.removeprefix("markov_"))
    memory = "" if order == 1 else f", each step remembering the last {order}"
    return (
        f"{model_label(model)} asks what would be lost if a channel disappeared: "
        f"journeys are chains of steps from channel to channel{memory}, and each "
        "channel's credit is the share of conversions lost without it, scaled so "
        "that all credits add up to the total."
    )


def _models_section(credits: _Credits) -> Section:
    section = Section(
        key="models",
        title="The models",
        lead=(
            "A person may meet several channels before converting. Each model is "
            "a different answer to the question of which of them to thank."
        ),
    )
    section.notes = [_explain(model) for model in credits.models]
    shapley = credits.summary.get("shapley") or {}
    if "shapley" in credits.models and shapley.get("method") == "exact":
        channels = len(credits.channels)
        section.notes.append(
            f"The Shapley value was computed exactly, over all {count(2**channels)} "
            f"coalitions of the {channels} channels."
        )
    return section


def _credit_section(credits: _Credits, quantity: str) -> Section | None:
    total = float(credits.totals.get(quantity, 0.0))
    if quantity == "value" and total == 0:
        return None
    is_value = quantity == "value"
    section = Section(
        key=quantity,
        title="Value" if is_value else "Conversions",
        lead=(
            (
                "The conversion value (¥) each model credits to each channel. It "
                "follows the conversions, but a channel on journeys worth more "
                "gains share."
            )
            if is_value
            else (
                "How many conversions each model credits to each channel. "
                + _how_models_differ(credits.models)
            )
        ),
    )
    if not is_value:
        section.banners.extend(_agreement(credits))

    series = credits.series(quantity)
    section.charts.append(
        Chart(
            chart_id=f"chart-attribution-{quantity}",
            title=(
                "Value credited per channel (¥)"
                if is_value
                else "Conversions credited per channel"
            ),
            figure=grouped_bar_chart(
                credits.channels,
                series,
                value_title="value (¥)" if is_value else "conversions",
                colors=credits.colors,
                horizontal=False,
                hover_unit="¥" if is_value else "conversions",
                log_scale=False,
            ),
            caption=(
                "Channels ordered by their average credit over the models. "
                f"Each model's bars add up to {_quantity(credits, quantity, total)}."
            ),
            wide=True,
        )
    )

    def cell(amount: float) -> str:
        return credits.money(amount) if is_value else f"{amount:,.1f}"

    rows = [
        [channel, *(cell(values[index]) for values in series.values())]
        for index, channel in enumerate(credits.channels)
    ]
    rows.append(["All channels", *(cell(sum(values)) for values in series.values())])
    section.tables.append(
        Table(
            columns=["channel", *series],
            rows=rows,
            numeric=[False] + [True] * len(series),
            caption=(
                f"{'Value' if is_value else 'Conversions'} credited per channel "
                "(rows) and model (columns)."
            ),
        )
    )
    return section


def _quantity(credits: _Credits, quantity: str, total: float) -> str:
    if quantity == "value":
        return credits.money(total)
    return f"{decimal(total, 1)} conversions"


def _how_models_differ(models: Sequence[str]) -> str:
    present = set(models)
    clauses = []
    if present & {"first_touch", "last_touch"}:
        clauses.append("first and last touch give each conversion whole to one channel")
    if present & {"linear", "position_based", "time_decay"}:
        clauses.append("linear, position-based and time decay share it along the way")
    if any(model.startswith("markov_") for model in models) or present & {
        "shapley",
        "ordered_shapley",
    }:
        clauses.append("Markov and Shapley credit what each channel adds")
    if not clauses:
        return ""
    sentence = "; ".join(clauses)
    return f"They differ in how: {sentence}."


def _agreement(credits: _Credits) -> list[Banner]:
    """Return a banner saying whether the models agree on the top channel."""
    if float(credits.totals.get("conversions", 0.0)) == 0:
        return []
    top: dict[str, list[str]] = {}
    for model in credits.models:
        best = max(credits.channels, key=lambda channel: credits.credit(model, channel))
        top.setdefault(best, []).append(model_label(model))
    if len(top) == 1:
        channel = next(iter(top))
        every = "Both" if len(credits.models) == 2 else f"All {len(credits.models)}"
        if len(credits.models) == 1:
            return [Banner(f"{channel} earns the most conversions.", "info")]
        return [Banner(f"{every} models agree: {channel} earns the most.", "info")]
    picks = "; ".join(
        f"{channel} under {', '.join(labels)}" for channel, labels in top.items()
    )
    return [
        Banner(
            f"The models disagree on which channel earns the most: {picks}.",
            "info",
        )
    ]


def _cost_section(credits: _Credits) -> Section | None:
    if credits.costs_yuan is None:
        return None
    section = Section(
        key="cost",
        title="Cost per conversion",
        lead=(
            "What one conversion costs through each channel: its spend divided by "
            "the conversions a model credits to it. A channel looks cheap under "
            "models that credit it much and dear under those that credit it "
            "little; “–” means the model credited it nothing."
        ),
    )
    spent = [channel for channel in credits.channels if channel in credits.costs_yuan]
    series = {
        model_label(model): [
            credits.cost_per_conversion(model, channel) for channel in spent
        ]
        for model in credits.models
    }
    if spent:
        section.charts.append(
            Chart(
                chart_id="chart-attribution-cost",
                title="Cost per conversion (¥)",
                figure=grouped_bar_chart(
                    spent,
                    series,
                    value_title="yuan per conversion",
                    colors=credits.colors,
                    horizontal=False,
                    hover_unit="¥ per conversion,",
                    log_scale=False,
                ),
                caption=(
                    "Channels with spend, in the order of the charts above. A "
                    "missing bar: the model credited the channel no conversion."
                ),
                wide=True,
            )
        )
    no_spend = [channel for channel in credits.channels if channel not in spent]
    rows = [
        [
            channel,
            credits.money(credits.costs_yuan.get(channel)),
            *(
                _cents(credits.cost_per_conversion(model, channel))
                for model in credits.models
            ),
        ]
        for channel in credits.channels
    ]
    section.tables.append(
        Table(
            columns=["channel", "spend", *(model_label(m) for m in credits.models)],
            rows=rows,
            numeric=[False, True] + [True] * len(credits.models),
            caption="Spend and yuan per credited conversion, per channel and model."
            + (f" No spend was given for {', '.join(no_spend)}." if no_spend else ""),
        )
    )
    return section


def _cents(yuan: float | None) -> str:
    return "–" if yuan is None else f"¥{yuan:,.2f}"


def _markov_section(credits: _Credits) -> Section | None:
    removal = credits.summary.get("removal_effects") or {}
    markov_models = [model for model in credits.models if model in removal]
    if not markov_models:
        return None
    section = Section(
        key="markov",
        title="Removal effects",
        lead=(
            "The Markov model follows people from channel to channel. A channel's "
            "removal effect is the share of conversions that would be lost if it "
            "disappeared and every journey through it stopped there. Effects add "
            "up to more than 100 % because a journey can pass several channels; "
            "the Markov credits above are these effects scaled to the total."
        ),
    )
    fits = credits.summary.get("markov") or {}
    for model in markov_models:
        effects = {row["channel"]: float(row["conversions"]) for row in removal[model]}
        ordered = sorted(effects, key=lambda channel: (-effects[channel], channel))
        fit = fits.get(model) or {}
        caption = ""
        if fit.get("states") is not None:
            caption = (
                f"A chain of {count(fit['states'])} states, in which a journey "
                f"converts with probability {percent(fit['conversion_probability'])}."
            )
        section.charts.append(
            Chart(
                chart_id=f"chart-attribution-removal-{model}",
                title=f"Removal effect, {model_label(model)}",
                figure=bar_chart(
                    ordered,
                    [effects[channel] * 100 for channel in ordered],
                    value_title="conversions lost without the channel (%)",
                    labels=[percent(effects[channel]) for channel in ordered],
                    horizontal=True,
                    colors=credits.colors[credits.models.index(model)],
                    hover_unit="% of conversions lost",
                ),
                caption=caption,
                wide=len(markov_models) == 1,
            )
        )
    return section


def _shapley_section(credits: _Credits) -> Section | None:
    shapley = credits.summary.get("shapley") or {}
    intervals = shapley.get("intervals")
    if "shapley" not in credits.models or not intervals:
        return None
    by_channel = {row["channel"]: row for row in intervals}
    channels = [channel for channel in credits.channels if channel in by_channel]
    confidence = shapley.get("confidence")
    coverage = f"{percent(confidence, 0)} " if confidence is not None else ""
    section = Section(
        key="shapley",
        title="Shapley intervals",
        lead=(
            f"With {len(credits.channels)} channels the exact Shapley value needs "
            f"all {count(2 ** len(credits.channels))} coalitions, so it was "
            f"estimated from {count(shapley.get('permutations'))} random orders "
            f"of the channels. Bars show the estimate and whiskers its {coverage}"
            "confidence interval: channels whose intervals overlap could trade "
            "places on another sample."
        ),
    )
    estimate = [credits.credit("shapley", channel) for channel in channels]
    section.charts.append(
        Chart(
            chart_id="chart-attribution-shapley-interval",
            title=f"Shapley conversions with {coverage}intervals",
            figure=bar_chart(
                channels,
                estimate,
                value_title="conversions",
                colors=credits.colors[credits.models.index("shapley")],
                hover_unit="conversions",
                intervals=[
                    (
                        by_channel[channel]["conversions_low"],
                        by_channel[channel]["conversions_high"],
                    )
                    for channel in channels
                ],
            ),
            wide=True,
        )
    )
    section.tables.append(
        Table(
            columns=[
                "channel",
                "conversions",
                f"{coverage}interval",
                "value (¥)",
                f"{coverage}interval",
            ],
            rows=[
                [
                    channel,
                    f"{credits.credit('shapley', channel):,.1f}",
                    f"{by_channel[channel]['conversions_low']:,.1f} – "
                    f"{by_channel[channel]['conversions_high']:,.1f}",
                    credits.money(credits.credit("shapley", channel, "value")),
                    f"{credits.money(by_channel[channel]['value_low'])} – "
                    f"{credits.money(by_channel[channel]['value_high'])}",
                ]
                for channel in channels
            ],
            numeric=[False, True, True, True, True],
            caption=f"Shapley estimates with their {coverage}confidence intervals.",
        )
    )
    return section
