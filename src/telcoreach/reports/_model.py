"""The model section: how well the propensity model ranks converters.

It reads the newest ``card.json`` of the model registry
(``<models_dir>/<name>/v<N>/card.json``, written by
:func:`telcoreach.models.save_model`) as plain JSON, so a report never loads a
pickled model.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from telcoreach.errors import ModelError
from telcoreach.reports._charts import PALETTE, line_chart
from telcoreach.reports._format import count, decimal, percent
from telcoreach.reports._layout import Card, Chart, Section, Table

__all__ = ["latest_card", "model_section"]

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_MODEL_NAMES = {"logistic_regression": "Logistic regression", "lightgbm": "LightGBM"}
_PRIMARY = "logistic_regression"


def latest_card(
    models_dir: Path, preferred: str | None = None
) -> dict[str, Any] | None:
    """Return the newest model card of the registry, or None if there is none.

    Cards of model ``preferred`` (the workspace's configured model) win over
    others; among candidates the latest ``created_at``, then the highest
    version, is taken.

    Raises
    ------
    ModelError
        If the chosen card is not valid JSON.
    """
    paths = [
        path
        for path in Path(models_dir).glob("*/v*/card.json")
        if _VERSION_DIR.match(path.parent.name)
    ]
    if not paths:
        return None
    if preferred is not None and any(p.parent.parent.name == preferred for p in paths):
        paths = [p for p in paths if p.parent.parent.name == preferred]

    cards = [(_read_card(path), path) for path in paths]
    card, path = max(
        cards,
        key=lambda item: (
            str(item[0].get("created_at", "")),
            int(_VERSION_DIR.match(item[1].parent.name).group(1)),
        ),
    )
    logger.info("reporting model card %s", path)
    return card


def _read_card(path: Path) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot read the model card {path}: {error}; expected the JSON written "
            "by save_model. Save the model again or remove the broken version."
        ) from error
    if not isinstance(card, dict):
        raise ModelError(
            f"model card {path} holds a {type(card).__name__}; expected a JSON "
            "object. Save the model again or remove the broken version."
        )
    return card


def _model_label(name: str) -> str:
    return _MODEL_NAMES.get(name, name.replace("_", " ").capitalize())


def _lift_at_10(metrics: dict[str, Any]) -> float | None:
    return metrics.get("lift_at_10pct", metrics.get("lift_at_10"))


def model_section(card: dict[str, Any] | None) -> Section | None:
    """Return ROC, gain, lift and calibration charts of a model card, or None."""
    metrics = card.get("metrics") if card else None
    if not isinstance(metrics, dict) or not metrics:
        return None
    # The logistic regression first, baselines after it.
    names = sorted(metrics, key=lambda name: (name != _PRIMARY, name))
    colors = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}
    primary = metrics[names[0]]

    section = Section(
        key="model",
        title="Propensity model",
        lead=(
            "How well the model picks out people likely to say yes, measured on "
            + (f"{count(card['rows_test'])} " if card.get("rows_test") else "")
            + "held-out people it never saw while learning."
        ),
    )
    section.cards = _cards(card, names, metrics)
    section.charts = [
        c for c in _charts(names, metrics, colors, primary) if c is not None
    ]
    section.tables.append(_metrics_table(names, metrics))
    features = card.get("features") or []
    section.notes.append(
        f"Model “{card.get('name', 'model')}” version {card.get('version', '?')}, "
        f"trained {str(card.get('created_at', ''))[:16].replace('T', ' ')} UTC on "
        f"{count(card.get('rows_train'))} rows to predict “{card.get('label', '?')}” "
        f"from {len(features)} profile feature{'s' if len(features) != 1 else ''}."
    )
    return section


def _cards(
    card: dict[str, Any], names: list[str], metrics: dict[str, dict[str, Any]]
) -> list[Card]:
    primary = metrics[names[0]]
    label = _model_label(names[0])
    cards = [
        Card(
            "AUC",
            decimal(primary.get("auc"), 3),
            f"{label}; 0.5 is a coin toss, 1 is perfect",
        ),
        Card(
            "Lift in the top 10 %",
            f"{decimal(_lift_at_10(primary), 1)}×",
            "conversion of the best-scored tenth vs. everyone",
        ),
        Card("KS", decimal(primary.get("ks"), 3), "largest gap between the two groups"),
        Card(
            "Base rate",
            percent(primary.get("base_rate", card.get("base_rate"))),
            "of held-out people converted",
        ),
    ]
    for name in names[1:]:
        cards.append(
            Card(
                f"{_model_label(name)} AUC",
                decimal(metrics[name].get("auc"), 3),
                "baseline for comparison",
            )
        )
    return cards


def _charts(
    names: list[str],
    metrics: dict[str, dict[str, Any]],
    colors: dict[str, str],
    primary: dict[str, Any],
) -> list[Chart | None]:
    roc_lines = []
    gain_lines = []
    lift_lines = []
    calibration_lines = []
    for name in names:
        values = metrics[name]
        label = _model_label(name)
        roc = values.get("roc") or {}
        if roc.get("fpr") and roc.get("tpr"):
            roc_lines.append(
                {
                    "name": f"{label} (AUC {decimal(values.get('auc'), 3)})",
                    "x": roc["fpr"],
                    "y": roc["tpr"],
                    "color": colors[name],
                }
            )
        gain = values.get("gain") or {}
        if gain.get("population_share") and gain.get("gain"):
            gain_lines.append(
                {
                    "name": label,
                    "x": gain["population_share"],
                    "y": gain["gain"],
                    "color": colors[name],
                }
            )
        if gain.get("population_share") and gain.get("lift"):
            lift_lines.append(
                {
                    "name": label,
                    "x": gain["population_share"],
                    "y": gain["lift"],
                    "color": colors[name],
                }
            )
        bins = [
            row
            for row in values.get("calibration") or []
            if row.get("mean_predicted") is not None
            and row.get("observed_rate") is not None
        ]
        if bins:
            calibration_lines.append(
                {
                    "name": label,
                    "x": [row["mean_predicted"] for row in bins],
                    "y": [row["observed_rate"] for row in bins],
                    "color": colors[name],
                    "markers": True,
                }
            )

    return [
        _chart(
            "chart-model-roc",
            "ROC curve",
            roc_lines,
            "Share of converters found (true-positive rate) against share of "
            "non-converters wrongly picked. Higher and further left is better.",
            x_title="false-positive rate",
            y_title="true-positive rate",
            diagonal="random",
            unit_square=True,
        ),
        _chart(
            "chart-model-gain",
            "Cumulative gain",
            gain_lines,
            "Contact people from the best score down: the share of all converters "
            "reached after contacting a given share of people.",
            x_title="share of people contacted",
            y_title="share of converters reached",
            diagonal="random",
            unit_square=True,
            percent_axes=True,
        ),
        _chart(
            "chart-model-lift",
            "Lift",
            lift_lines,
            "How many times the conversion rate of the people contacted beats "
            f"the base rate of {percent(primary.get('base_rate'))}.",
            x_title="share of people contacted",
            y_title="lift",
            horizontal_at=1.0,
        ),
        _chart(
            "chart-model-calibration",
            "Calibration",
            calibration_lines,
            "Predicted probability against the share that actually converted, in "
            "ten bins. On the diagonal a score can be read as a probability.",
            x_title="mean predicted probability",
            y_title="observed conversion rate",
            diagonal="perfect calibration",
            unit_square=True,
        ),
    ]


def _chart(
    chart_id: str, title: str, lines: list[dict[str, Any]], caption: str, **options: Any
) -> Chart | None:
    if not lines:
        return None
    return Chart(chart_id, title, line_chart(lines, **options), caption=caption)


def _metrics_table(names: list[str], metrics: dict[str, dict[str, Any]]) -> Table:
    rows = [
        ("AUC", lambda m: decimal(m.get("auc"), 3)),
        ("KS", lambda m: decimal(m.get("ks"), 3)),
        ("Lift in the top 10 %", lambda m: f"{decimal(_lift_at_10(m), 2)}×"),
        ("Base rate", lambda m: percent(m.get("base_rate"))),
        ("Held-out rows", lambda m: count(m.get("rows"))),
        ("Converters among them", lambda m: count(m.get("positives"))),
    ]
    return Table(
        columns=["Metric", *(_model_label(name) for name in names)],
        rows=[
            [label, *(render(metrics[name]) for name in names)]
            for label, render in rows
        ],
        numeric=[False, *(True for _ in names)],
        caption="Metrics on the held-out rows, side by side.",
    )
