"""Read the key figures and charts back out of a rendered report page."""

from __future__ import annotations

import html as html_lib
import json
import re


def cards(text: str) -> dict[str, tuple[str, str]]:
    """Return ``{label: (value, detail)}`` of every key-figure card of a page."""
    found = re.findall(
        r'<div class="label">(.*?)</div>\s*<div class="value">(.*?)</div>\s*'
        r'(?:<div class="detail">(.*?)</div>)?',
        text,
    )
    return {
        html_lib.unescape(label): (html_lib.unescape(value), html_lib.unescape(detail))
        for label, value, detail in found
    }


def figures(text: str) -> dict[str, dict]:
    """Return the Plotly figures embedded in a page, by chart id."""
    match = re.search(
        r'<script type="application/json" id="report-figures">(.*?)</script>',
        text,
        re.S,
    )
    return json.loads(match.group(1))
