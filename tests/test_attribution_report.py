"""The attribution report: credits per channel and model as charts and tables."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from report_pages import cards, figures
from telcoreach.cli import app
from telcoreach.errors import ConfigError, PrivacyError, SchemaError
from telcoreach.measure import run_attribution
from telcoreach.reports import build_attribution_report

# Three converting paths ending in push, one path that never converts.
PATHS = """path;total_conversions;total_conversion_value;total_null
sms > push;3;300;2
push;2;150;5
wechat > sms > push;1;80;1
call;0;0;4
"""
COSTS = "channel,cost_yuan\nsms,120\npush,60\nwechat,30\ncall,50\n"


@pytest.fixture
def small_files(tmp_path) -> tuple[Path, Path]:
    journeys = tmp_path / "paths.csv"
    journeys.write_text(PATHS, encoding="utf-8")
    costs = tmp_path / "costs.csv"
    costs.write_text(COSTS, encoding="utf-8")
    return journeys, costs


@pytest.fixture
def small_page(small_files, tmp_path) -> tuple[dict, str]:
    journeys, costs = small_files
    summary = run_attribution(journeys, costs_path=costs)
    written = build_attribution_report(summary, tmp_path / "out" / "attribution.html")
    return written, Path(written["path"]).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def ca_file(datasets_dir) -> Path:
    return datasets_dir / "5-attribution" / "channelattribution_Data.csv"


def series(figure: dict) -> dict[str, dict[str, float]]:
    """Return ``{trace name: {category: value}}`` of a vertical bar chart."""
    return {
        trace["name"]: dict(zip(trace["x"], trace["y"], strict=True))
        for trace in figure["data"]
    }


def table_rows(text: str, section: str) -> dict[str, list[str]]:
    """Return the rows of a section's table by their first cell."""
    body = text.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [
            html_lib.unescape(cell.strip())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def test_small_run_with_costs_has_every_section_but_shapley_intervals(small_page):
    written, text = small_page

    # Four channels: the Shapley value is exact, so it has no interval to show.
    assert written["sections"] == [
        "headline",
        "models",
        "conversions",
        "value",
        "cost",
        "markov",
    ]
    assert written["charts"] == len(figures(text)) == 4
    assert "The Shapley value was computed exactly, over all 16 coalitions" in text


def test_headline_cards_count_journeys_conversions_value_and_spend(small_page):
    _, text = small_page

    headline = cards(text)
    # People: 3 + 2 + 2 + 5 + 1 + 1 + 0 + 4 = 18; spend 120 + 60 + 30 + 50 = 260.
    assert headline["Journeys"][0] == "18"
    assert headline["Conversions"] == ("6", "33.3 % of journeys convert")
    assert headline["Conversion value"][0] == "¥530"
    assert headline["Channels"] == ("4", "4 with spend given")
    assert headline["Models"][0] == "6"
    assert headline["Spend"] == ("¥260", "¥43.33 per conversion overall")


def test_last_touch_bars_give_every_conversion_to_the_last_channel(small_page):
    _, text = small_page

    conversions = series(figures(text)["chart-attribution-conversions"])
    assert conversions["Last touch"] == {"push": 6, "sms": 0, "wechat": 0, "call": 0}
    assert conversions["First touch"] == {"push": 2, "sms": 3, "wechat": 1, "call": 0}
    # Linear: sms 3/2 + 1/3, push 3/2 + 2 + 1/3, wechat 1/3.
    assert conversions["Linear"]["sms"] == pytest.approx(1.5 + 1 / 3, abs=1e-5)
    assert conversions["Linear"]["push"] == pytest.approx(3.5 + 1 / 3, abs=1e-5)


def test_tables_show_each_channel_under_each_model_and_the_totals(small_page):
    _, text = small_page

    header = re.search(r'<section id="conversions">.*?<thead>(.*?)</thead>', text, re.S)
    columns = re.findall(r"<th[^>]*>(.*?)</th>", header.group(1))
    rows = table_rows(text, "conversions")
    assert columns == [
        "channel",
        "First touch",
        "Last touch",
        "Linear",
        "Position-based",
        "Markov",
        "Shapley",
    ]
    assert rows["push"][:2] == ["2.0", "6.0"]
    assert rows["All channels"] == ["6.0"] * 6
    assert table_rows(text, "value")["All channels"] == ["¥530.00"] * 6


def test_cost_per_conversion_is_spend_over_credited_conversions(small_page):
    _, text = small_page

    rows = table_rows(text, "cost")
    # Columns: spend, then first touch, last touch, linear, ...
    assert rows["push"][:3] == ["¥60.00", "¥30.00", "¥10.00"]
    assert rows["sms"][:3] == ["¥120.00", "¥40.00", "–"]
    assert rows["call"][1:] == ["–"] * 6
    cost = series(figures(text)["chart-attribution-cost"])
    assert cost["Last touch"]["push"] == pytest.approx(60 / 6)
    assert cost["Last touch"]["sms"] is None


def test_removal_effects_chart_lists_channels_by_effect(small_page):
    _, text = small_page

    removal = figures(text)["chart-attribution-removal-markov_1"]["data"][0]
    # Every converting journey ends in push: without it nothing converts.
    assert removal["y"][0] == "push"
    assert removal["x"][0] == pytest.approx(100.0)
    assert removal["text"][0] == "100.0 %"
    assert removal["y"][-1] == "call"
    assert removal["x"][-1] == 0


def test_page_opens_offline_with_plotly_beside_it(small_page):
    written, text = small_page

    folder = Path(written["path"]).parent
    assert written["plotly_js_written"]
    assert (folder / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
    assert '<script src="plotly.min.js"></script>' in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_every_embedded_figure_passes_plotly_validation(small_page):
    _, text = small_page

    for figure in figures(text).values():
        go.Figure(figure)


def test_run_without_costs_has_no_cost_section(small_files, tmp_path):
    journeys, _ = small_files

    summary = run_attribution(journeys, ["last_touch", "linear"])
    written = build_attribution_report(summary, tmp_path / "a.html")

    text = Path(written["path"]).read_text(encoding="utf-8")
    assert written["sections"] == ["headline", "models", "conversions", "value"]
    assert "Spend" not in cards(text)
    assert "Both models agree: push earns the most." in text


def test_channel_shaped_like_a_phone_number_stops_the_report(tmp_path):
    journeys = tmp_path / "paths.csv"
    journeys.write_text(
        "path;total_conversions;total_conversion_value;total_null\n"
        "13812345678 > sms;1;5;0\n",
        encoding="utf-8",
    )
    summary = run_attribution(journeys, ["linear"])

    with pytest.raises(PrivacyError, match="msisdn"):
        build_attribution_report(summary, tmp_path / "a.html")

    assert not (tmp_path / "a.html").exists()


def test_report_path_must_be_html(small_files, tmp_path):
    summary = run_attribution(small_files[0], ["linear"])

    with pytest.raises(ConfigError, match=r"\.html"):
        build_attribution_report(summary, tmp_path / "a.json")


def test_summary_without_rows_is_refused():
    with pytest.raises(SchemaError, match="rows"):
        build_attribution_report({"models": [], "channels": [], "totals": {}}, "a.html")


def test_attribute_command_writes_the_report(small_files, tmp_path):
    journeys, costs = small_files
    page = tmp_path / "cli" / "attribution.html"

    result = CliRunner().invoke(
        app,
        ["attribute", str(journeys), "--costs", str(costs), "--report", str(page)],
    )

    assert result.exit_code == 0, result.output
    assert "Cost per conversion" in page.read_text(encoding="utf-8")
    assert (page.parent / "plotly.min.js").is_file()


@pytest.mark.realdata
def test_real_journeys_last_touch_total_equals_the_conversions(ca_file, tmp_path):
    paths = pd.read_csv(ca_file, sep=";")
    last_channel = paths["path"].str.split(">").str[-1].str.strip()
    by_hand = paths.groupby(last_channel)["total_conversions"].sum()

    summary = run_attribution(ca_file, ["first_touch", "last_touch", "markov_1"])
    written = build_attribution_report(summary, tmp_path / "attribution.html")

    text = Path(written["path"]).read_text(encoding="utf-8")
    last_touch = series(figures(text)["chart-attribution-conversions"])["Last touch"]
    assert sum(last_touch.values()) == by_hand.sum() == 19_785
    assert last_touch == by_hand.to_dict()
    assert cards(text)["Conversions"][0] == "19,785"
    assert cards(text)["Channels"][0] == "12"


@pytest.mark.realdata
def test_sampled_shapley_shows_intervals_around_each_estimate(ca_file, tmp_path):
    summary = run_attribution(
        ca_file,
        ["shapley"],
        shapley_max_exact_channels=5,
        shapley_permutations=200,
    )
    written = build_attribution_report(summary, tmp_path / "attribution.html")

    text = Path(written["path"]).read_text(encoding="utf-8")
    assert "shapley" in written["sections"]
    bars = figures(text)["chart-attribution-shapley-interval"]["data"][0]
    estimate = dict(zip(bars["x"], bars["y"], strict=True))
    for interval in summary["shapley"]["intervals"]:
        index = bars["x"].index(interval["channel"])
        high = estimate[interval["channel"]] + bars["error_y"]["array"][index]
        low = estimate[interval["channel"]] - bars["error_y"]["arrayminus"][index]
        assert high == pytest.approx(interval["conversions_high"], rel=1e-5)
        assert low == pytest.approx(interval["conversions_low"], rel=1e-5, abs=1e-4)
    assert "95 % interval" in text
