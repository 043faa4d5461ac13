"""Reports: one self-contained HTML page that shows what a run found.

:func:`build_report` writes ``index.html`` into the workspace's ``reports``
folder: the city's key figures, the data received, tier sizes, profile
distributions, the propensity model's held-out metrics and, on a simulated
city, scores against ground truth. Charts are drawn with Plotly from a copy of
``plotly.min.js`` written beside the page, so it opens offline. Every figure
is an aggregate; the page is scanned for raw identifiers before it is written.
:func:`build_attribution_report` draws the same kind of page for the results of
multi-touch attribution.
"""

from telcoreach.reports._attribution import build_attribution_report
from telcoreach.reports._build import (
    PLOTLY_JS,
    REPORT_FILE,
    ReportSummary,
    build_report,
)

__all__ = [
    "PLOTLY_JS",
    "REPORT_FILE",
    "ReportSummary",
    "build_attribution_report",
    "build_report",
]
