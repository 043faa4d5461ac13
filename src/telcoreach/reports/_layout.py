"""The building blocks of a report page: sections of cards, charts and tables.

Collectors turn workspace data into these plain objects, already formatted as
text; the Jinja2 template only places them. Keeping formatting out of the
template keeps the template short and the numbers testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Banner", "Card", "Chart", "Section", "Table"]

Status = Literal["pass", "fail"]


@dataclass
class Card:
    """A key figure: a short label, a big value and a line of detail.

    ``status`` marks a figure checked against a target (``pass`` or ``fail``).
    """

    label: str
    value: str
    detail: str = ""
    status: Status | None = None


@dataclass
class Chart:
    """A Plotly figure (``{"data": [...], "layout": {...}}``) with a title.

    ``chart_id`` is the id of the element the figure is drawn in; ``wide``
    charts take the whole width of the page.
    """

    chart_id: str
    title: str
    figure: dict[str, Any]
    caption: str = ""
    wide: bool = False


@dataclass
class Table:
    """A small table of aggregate figures, already formatted as text.

    ``numeric`` says per column whether it is right-aligned.
    """

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    caption: str = ""


@dataclass
class Banner:
    """A highlighted message at the top of a section (``info`` or ``warning``)."""

    text: str
    tone: Literal["info", "warning", "pass", "fail"] = "info"


@dataclass
class Section:
    """One section of the report: a title, a one-sentence lead and its content."""

    key: str
    title: str
    lead: str
    banners: list[Banner] = field(default_factory=list)
    cards: list[Card] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
