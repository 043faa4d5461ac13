"""Reports: one self-contained HTML page that shows what a run found.

:func:`build_report` writes ``index.html`` into the workspace's ``reports``
folder: the city's key figures, the data received, tier sizes, profile
distributions, the propensity model's held-out metrics and, on a simulated
city, scores against ground truth. Charts are drawn with Plotly from a copy of
``plotly.min.js`` written beside the page, so it opens offline. Every figure
is an aggregate; the page is scanned for raw identifiers before it is written.
"""

from telcoreach.reports._build import (
    PLOTLY_JS,
    REPORT_FILE,
    ReportSummary,
    build_report,
)

__all__ = ["PLOTLY_JS", "REPORT_FILE", "ReportSummary", "build_report"]
