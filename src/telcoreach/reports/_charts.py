"""Plotly figures in one visual style, returned as JSON-ready dicts.

Figures are built with ``plotly.graph_objects`` (which checks every property
name) and stored as plain dicts; the page draws them with the ``plotly.min.js``
written beside it. Numbers are rounded to six significant digits first: the
page stays small, and no long digit run can look like a phone number or IMEI
to the identifier scan that guards the page.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

__all__ = [
    "FONT_STACK",
    "PALETTE",
    "bar_chart",
    "grouped_bar_chart",
    "histogram_chart",
    "line_chart",
]

FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, '
    '"Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif'
)
#: Series colours, in order: indigo, amber, teal, rose, sky, violet, lime, pink.
PALETTE = (
    "#4f46e5",
    "#f59e0b",
    "#0d9488",
    "#e11d48",
    "#0284c7",
    "#7c3aed",
    "#65a30d",
    "#db2777",
)
_MUTED = "#94a3b8"
_GRID = "#e2e8f0"
_AXIS = dict(
    gridcolor=_GRID,
    zerolinecolor="#cbd5e1",
    linecolor="#cbd5e1",
    automargin=True,
    title=dict(font=dict(size=12, color="#64748b")),
)
_TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT_STACK, size=13, color="#334155"),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        colorway=list(PALETTE),
        margin=dict(l=8, r=16, t=12, b=8),
        xaxis=_AXIS,
        yaxis=_AXIS,
        legend=dict(
            orientation="h",
            x=0,
            y=1.02,
            yanchor="bottom",
            bgcolor="rgba(0,0,0,0)",
        ),
        hoverlabel=dict(font=dict(family=FONT_STACK)),
        bargap=0.18,
    )
)
#: The template as plain JSON, attached after validation: validating it again
#: for every figure would cost more than the figure itself.
_TEMPLATE_JSON = _TEMPLATE.to_plotly_json()
_HEIGHT = 320


def _tidy(values: Sequence[Any]) -> list[Any]:
    """Round numbers to 6 significant digits and turn NaN or infinity into None.

    Whole numbers (counts) are kept exact.
    """
    tidy: list[Any] = []
    for value in values:
        if value is None or isinstance(value, str | bool):
            tidy.append(value)
        elif isinstance(value, numbers.Integral):
            tidy.append(int(value))
        else:
            number = float(value)
            tidy.append(float(f"{number:.6g}") if math.isfinite(number) else None)
    return tidy


def _figure(traces: list[Any], height: int, **layout: Any) -> dict[str, Any]:
    # An empty template keeps Plotly from applying (and validating) its default.
    figure = go.Figure(
        data=traces, layout=go.Layout(template={}, height=height, **layout)
    )
    plain = figure.to_plotly_json()
    plain["layout"]["template"] = _TEMPLATE_JSON
    return plain


def _log_axis_needed(values: Sequence[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) >= 200


def bar_chart(
    categories: Sequence[str],
    values: Sequence[float],
    *,
    value_title: str,
    labels: Sequence[str] | None = None,
    horizontal: bool = False,
    colors: Sequence[str] | str = PALETTE[0],
    hover_unit: str = "",
    intervals: Sequence[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """Return a one-series bar chart, with a value label on each bar.

    Horizontal charts list categories top to bottom in the order given and
    grow with the number of categories. ``intervals`` (a low and a high per
    bar) are drawn as error bars.
    """
    text = list(labels) if labels is not None else None
    hover = "%{x:,}" if horizontal else "%{y:,}"
    errors: dict[str, Any] = {}
    if intervals is not None:
        pairs = list(zip(intervals, values, strict=True))
        above = [max(high - value, 0.0) for (_, high), value in pairs]
        below = [max(value - low, 0.0) for (low, _), value in pairs]
        error = go.bar.ErrorX if horizontal else go.bar.ErrorY
        errors["error_x" if horizontal else "error_y"] = error(
            type="data",
            symmetric=False,
            array=_tidy(above),
            arrayminus=_tidy(below),
            color="#334155",
            thickness=1.5,
            width=5,
        )
    bar = go.Bar(
        x=_tidy(values) if horizontal else list(categories),
        y=list(categories) if horizontal else _tidy(values),
        orientation="h" if horizontal else "v",
        marker=dict(color=colors if isinstance(colors, str) else list(colors)),
        text=text,
        textposition="auto",
        cliponaxis=False,
        hovertemplate=(
            f"%{{{'y' if horizontal else 'x'}}}<br>{hover} {hover_unit}<extra></extra>"
        ),
        **errors,
    )
    if horizontal:
        height = max(200, 60 + 34 * len(categories))
        return _figure(
            [bar],
            height,
            xaxis=dict(title=dict(text=value_title), rangemode="tozero"),
            yaxis=dict(autorange="reversed", gridcolor="rgba(0,0,0,0)"),
        )
    return _figure(
        [bar],
        _HEIGHT,
        xaxis=dict(type="category", gridcolor="rgba(0,0,0,0)"),
        yaxis=dict(title=dict(text=value_title), rangemode="tozero"),
    )


def grouped_bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    value_title: str,
    colors: Sequence[str] = PALETTE,
    horizontal: bool = True,
    hover_unit: str = "rows",
    log_scale: bool | None = None,
) -> dict[str, Any]:
    """Return bars of several series per category, side by side.

    Horizontal charts list categories top to bottom and grow with their
    number; vertical ones keep a fixed height. The value axis turns
    logarithmic when ``log_scale`` is None and values span more than two
    orders of magnitude (a lake holds millions of events but a few thousand
    cells). Missing values (None, NaN) leave a gap.
    """
    all_values = [v for values in series.values() for v in values if v is not None]
    log = _log_axis_needed(all_values) if log_scale is None else log_scale
    value_axis, category_axis = ("x", "y") if horizontal else ("y", "x")
    bars = [
        go.Bar(
            name=name,
            **{value_axis: _tidy(values), category_axis: list(categories)},
            orientation="h" if horizontal else "v",
            marker=dict(color=colors[index % len(colors)]),
            hovertemplate=(
                f"%{{{category_axis}}}<br>%{{{value_axis}:,}} {hover_unit} {name}"
                "<extra></extra>"
            ),
        )
        for index, (name, values) in enumerate(series.items())
    ]
    title = value_title + (" (log scale)" if log else "")
    value_layout = dict(title=dict(text=title), type="log" if log else "linear")
    if horizontal:
        return _figure(
            bars,
            max(220, 90 + 30 * len(categories) * len(series)),
            barmode="group",
            xaxis=value_layout,
            yaxis=dict(autorange="reversed", gridcolor="rgba(0,0,0,0)"),
        )
    return _figure(
        bars,
        380,
        barmode="group",
        bargroupgap=0.06,
        xaxis=dict(type="category", gridcolor="rgba(0,0,0,0)"),
        yaxis=dict(**value_layout, rangemode="tozero"),
    )


def histogram_chart(
    centres: Sequence[float],
    counts: Sequence[int],
    width: float,
    *,
    value_title: str,
    color: str = PALETTE[0],
) -> dict[str, Any]:
    """Return a histogram drawn from bins counted in the engine."""
    bar = go.Bar(
        x=_tidy(centres),
        y=_tidy(counts),
        width=float(f"{width * 0.92:.6g}"),
        marker=dict(color=color),
        hovertemplate=(
            f"{value_title} ≈ %{{x}}<br>%{{y:,}} subscribers<extra></extra>"
        ),
    )
    return _figure(
        [bar],
        260,
        xaxis=dict(title=dict(text=value_title), gridcolor="rgba(0,0,0,0)"),
        yaxis=dict(title=dict(text="subscribers"), rangemode="tozero"),
    )


def line_chart(
    lines: Sequence[dict[str, Any]],
    *,
    x_title: str,
    y_title: str,
    diagonal: str | None = None,
    horizontal_at: float | None = None,
    unit_square: bool = False,
    percent_axes: bool = False,
) -> dict[str, Any]:
    """Return a line chart of several named series.

    Parameters
    ----------
    lines : sequence of dict
        Each with ``name``, ``x``, ``y`` and optionally ``color`` and
        ``markers`` (draw points as well).
    x_title, y_title : str
        Axis titles.
    diagonal : str, optional
        Name of a dashed grey reference line from (0, 0) to (1, 1).
    horizontal_at : float, optional
        Height of a dashed grey horizontal reference line.
    unit_square : bool
        Fix both axes to ``[0, 1]``.
    percent_axes : bool
        Show axis ticks as percentages.
    """
    traces: list[Any] = []
    if diagonal is not None:
        traces.append(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name=diagonal,
                line=dict(color=_MUTED, dash="dash", width=1.5),
                hoverinfo="skip",
            )
        )
    for index, line in enumerate(lines):
        traces.append(
            go.Scatter(
                x=_tidy(line["x"]),
                y=_tidy(line["y"]),
                mode="lines+markers" if line.get("markers") else "lines",
                name=line["name"],
                line=dict(
                    color=line.get("color", PALETTE[index % len(PALETTE)]), width=2.5
                ),
                marker=dict(size=7),
                connectgaps=False,
                hovertemplate=(
                    f"{line['name']}<br>{x_title} %{{x:.3f}}<br>"
                    f"{y_title} %{{y:.3f}}<extra></extra>"
                ),
            )
        )
    shapes = []
    if horizontal_at is not None:
        shapes.append(
            dict(
                type="line",
                xref="paper",
                x0=0,
                x1=1,
                y0=horizontal_at,
                y1=horizontal_at,
                line=dict(color=_MUTED, dash="dash", width=1.5),
            )
        )
    axis_range = dict(range=[0, 1]) if unit_square else {}
    tick_format = dict(tickformat=".0%") if percent_axes else {}
    return _figure(
        traces,
        _HEIGHT,
        shapes=shapes,
        xaxis=dict(title=dict(text=x_title), **axis_range, **tick_format),
        yaxis=dict(title=dict(text=y_title), **axis_range, **tick_format),
    )
