"""Sections from the run's own files: ground-truth evaluation and notes.

On a simulated city the simulator knows everyone's true home, work and tier,
so the pipeline can be scored against it; that score is saved as
``reports/evaluation.json``. ``reports/run.json`` is the summary the pipeline
saves after a run; its ``notes`` are caveats worth reading beside the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from telcoreach.errors import WorkspaceError
from telcoreach.reports._format import count, percent
from telcoreach.reports._layout import Banner, Card, Section

__all__ = [
    "HOME_CELL_TARGET",
    "TIER_TARGET",
    "WORK_CELL_TARGET",
    "evaluation_section",
    "notes_section",
    "read_json",
]

#: Share of subscribers whose home cell must match the truth.
HOME_CELL_TARGET = 0.90
#: Share of subscribers whose work cell must match the truth.
WORK_CELL_TARGET = 0.80
#: Precision and recall each tier must reach.
TIER_TARGET = 0.95


def read_json(path: Path) -> dict[str, Any] | None:
    """Return the JSON object stored at ``path``, or None if there is no file.

    Raises
    ------
    WorkspaceError
        If the file is not a JSON object.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WorkspaceError(
            f"cannot read {path}: {error}; expected a JSON object. Run the "
            "pipeline again or delete the file."
        ) from error
    if not isinstance(data, dict):
        raise WorkspaceError(
            f"{path} holds a JSON {type(data).__name__}; expected an object. Run "
            "the pipeline again or delete the file."
        )
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _checked_card(label: str, share: float, target: float | None, detail: str) -> Card:
    if target is None:
        return Card(label, percent(share), detail)
    passed = share >= target
    mark = "target met" if passed else "below target"
    text = f"target ≥ {percent(target, 0)} · {mark}"
    return Card(
        label,
        percent(share),
        f"{text} · {detail}" if detail else text,
        status="pass" if passed else "fail",
    )


def evaluation_section(evaluation: dict[str, Any] | None) -> Section | None:
    """Return the pipeline's scores against the simulator's truth, or None."""
    if not evaluation:
        return None
    cards: list[Card] = []
    evaluated = _number(evaluation.get("subscribers_evaluated"))

    work_evaluated = _number(evaluation.get("work_cell_evaluated"))
    for key, label, target, detail in (
        ("home_cell_accuracy", "Home cell right", HOME_CELL_TARGET, ""),
        (
            "work_cell_accuracy",
            "Work cell right",
            WORK_CELL_TARGET,
            f"of {count(work_evaluated)} with a workplace" if work_evaluated else "",
        ),
    ):
        share = _number(evaluation.get(key))
        if share is not None:
            cards.append(_checked_card(label, share, target, detail))

    tiers = evaluation.get("tiers")
    if isinstance(tiers, dict):
        for tier, scores in tiers.items():
            cards.extend(_class_cards(str(tier), scores, TIER_TARGET))
    commuters = evaluation.get("subway_commuter")
    if isinstance(commuters, dict):
        cards.extend(_class_cards("Subway commuter", commuters, None))

    known = {
        "home_cell_accuracy",
        "work_cell_accuracy",
        "subscribers_evaluated",
        "work_cell_evaluated",
    }
    for key, value in evaluation.items():
        share = value if isinstance(value, float) else None
        if key not in known and share is not None and 0 <= share <= 1:
            cards.append(Card(key.replace("_", " ").capitalize(), percent(share)))
    if not cards:
        return None

    checked = [card for card in cards if card.status is not None]
    met = sum(card.status == "pass" for card in checked)
    section = Section(
        key="truth",
        title="Checked against ground truth",
        lead=(
            "This city is simulated, so everyone's true home, work and tier are "
            "known: here is how often the pipeline got them right"
            + (f", over {count(evaluated)} subscribers." if evaluated else ".")
        ),
        cards=cards,
    )
    if checked:
        section.banners.append(
            Banner(
                f"All {len(checked)} targets met."
                if met == len(checked)
                else f"{met} of {len(checked)} targets met.",
                "pass" if met == len(checked) else "fail",
            )
        )
    section.notes.append(
        "Precision: of the people put in a group, the share who truly belong. "
        "Recall: of the people who truly belong, the share found."
    )
    return section


def _class_cards(name: str, scores: Any, target: float | None) -> list[Card]:
    if not isinstance(scores, dict):
        return []
    support = _number(scores.get("support"))
    detail = f"{count(support)} truly in it" if support is not None else ""
    cards = []
    for key in ("precision", "recall", "accuracy"):
        share = _number(scores.get(key))
        if share is not None:
            cards.append(_checked_card(f"{name} · {key}", share, target, detail))
    return cards


def notes_section(run: dict[str, Any] | None) -> Section | None:
    """Return the notes of the run summary, or None when it has none."""
    notes = run.get("notes") if run else None
    if not isinstance(notes, list):
        return None
    texts = [str(note).strip() for note in notes if str(note).strip()]
    if not texts:
        return None
    return Section(
        key="notes",
        title="Notes",
        lead="Things to keep in mind when reading the figures above.",
        notes=texts,
    )
