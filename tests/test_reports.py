"""Reports: the HTML page shows each section's figures, only when data exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pytest
from plotly.offline import get_plotlyjs

from report_pages import cards, figures
from telcoreach.engine import Engine
from telcoreach.errors import PrivacyError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.lake import BatchRecord, Lake
from telcoreach.privacy import find_raw_identifiers
from telcoreach.reports import build_report
from telcoreach.workspace import Workspace

ALL_SECTIONS = [
    "quality",
    "data",
    "tiers",
    "profiles",
    "model",
    "audience",
    "truth",
    "notes",
]
TOKENS = [f"{letter * 20}{index:04d}" for index, letter in enumerate("abcdefghij")]


@pytest.fixture
def engine(tmp_path):
    workspace = Workspace.create(tmp_path / "ws")
    engine = Engine(workspace)
    yield engine
    engine.close()


def page(engine: Engine) -> str:
    return (engine.workspace.reports_dir / "index.html").read_text(encoding="utf-8")


def save_profiles(engine: Engine, **columns) -> None:
    base = {
        "subscriber": TOKENS,
        "radius_of_gyration_km": [0.5, 1.2, 2.0, 2.4, 3.1, 3.3, 4.8, 6.0, 7.5, 40.0],
        "k12_app_count": pa.array([0, 0, 1, 1, 1, 2, 4, 5, 5, 6], pa.int64()),
        "home_cell": ["h1", "h1", "h2", None, "h3", "h4", "h4", "h5", None, "h6"],
        "work_cell": ["w1", None, None, "w2", None, "w3", None, None, None, "w4"],
        "subway_commuter": [
            True,
            False,
            True,
            False,
            False,
            True,
            False,
            True,
            False,
            False,
        ],
    }
    base.update(columns)
    engine.save("profiles", pa.table(base))


def save_tiers(engine: Engine) -> None:
    tiers = ["parent"] * 3 + ["student"] * 2 + ["other"] * 5
    order = {"parent": 0, "student": 1, "other": 2}
    engine.save(
        "tiers",
        pa.table(
            {
                "subscriber": TOKENS,
                "tier": tiers,
                "rule_index": pa.array([order[t] for t in tiers], pa.int32()),
            }
        ),
    )


def ingest_cells(workspace: Workspace, tmp_path: Path, cell_type: str) -> None:
    rows = [
        f"c{index},4101,39.9{index},116.3{index},500,{cell_type}" for index in range(4)
    ]
    rows.append("c9,4101,not-a-number,116.4,500,macro")
    path = tmp_path / "cells.csv"
    path.write_text(
        "cell_id,lac,lat,lon,radius_m,cell_type\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )
    ingest_batch(workspace, "cells", file_sources("cells", [path]))


def metrics(auc: float, lift: float) -> dict:
    return {
        "auc": auc,
        "ks": 0.41,
        "lift_at_10pct": lift,
        "base_rate": 0.12,
        "rows": 500,
        "positives": 60,
        "calibration": [
            {
                "bin_lower": 0.0,
                "bin_upper": 0.1,
                "count": 300,
                "mean_predicted": 0.05,
                "observed_rate": 0.06,
            },
            {
                "bin_lower": 0.1,
                "bin_upper": 0.2,
                "count": 0,
                "mean_predicted": None,
                "observed_rate": None,
            },
            {
                "bin_lower": 0.2,
                "bin_upper": 0.3,
                "count": 200,
                "mean_predicted": 0.24,
                "observed_rate": 0.21,
            },
        ],
        "roc": {
            "fpr": [0.0, 0.1, 0.4, 1.0],
            "tpr": [0.0, 0.5, 0.8, 1.0],
            "threshold": [None, 0.6, 0.3, 0.0],
        },
        "gain": {
            "population_share": [0.0, 0.1, 0.5, 1.0],
            "gain": [0.0, 0.35, 0.8, 1.0],
            "lift": [None, 3.5, 1.6, 1.0],
        },
    }


def write_card(workspace: Workspace, version: int, created_at: str, auc: float) -> None:
    folder = workspace.models_dir / "propensity" / f"v{version}"
    folder.mkdir(parents=True)
    card = {
        "name": "propensity",
        "version": version,
        "created_at": created_at,
        "label": "converted",
        "features": ["age", "balance"],
        "rows_train": 1500,
        "rows_test": 500,
        "base_rate": 0.12,
        "metrics": {
            "logistic_regression": metrics(auc, 2.9),
            "lightgbm": metrics(0.765, 2.6),
        },
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")


def test_empty_workspace_gets_a_headline_and_skips_every_other_section(engine):
    summary = build_report(engine)

    text = page(engine)
    assert summary.sections == ["headline"]
    assert summary.skipped == ALL_SECTIONS
    assert "<h1>Beijing</h1>" in text
    assert "Data received" not in text
    assert "Propensity model" not in text


def test_data_section_counts_rows_per_kind_and_names_quarantine_reasons(
    engine, tmp_path
):
    ingest_cells(engine.workspace, tmp_path, "macro")
    Lake(engine.workspace.lake).commit(
        BatchRecord(
            batch_id="b-signalling",
            kind="signalling",
            seq=2,
            sources=[{"name": "events.csv", "sha256": "0" * 64, "size": 10}],
            files=[],
            quarantine_files=[],
            rows_in=1_200_000,
            rows_stored=1_199_950,
            quarantined={"event_time: expected a timestamp": 50},
            days=["2026-11-02", "2026-11-03"],
        ),
        [],
    )

    summary = build_report(engine)

    text = page(engine)
    figures_by_id = cards(text)
    assert "data" in summary.sections
    assert "Data received" in text
    # 1,200,000 signalling rows plus 5 cell rows; 50 + 1 quarantined.
    assert figures_by_id["Rows received"] == ("1.2 M", "1,200,005 rows")
    assert figures_by_id["Rows quarantined"][0] == "51"
    assert "1,199,950" in text
    assert (
        "event_time: expected a timestamp"
        in figures(text)["chart-data-reasons"]["data"][0]["y"][0]
    )
    assert "2026-11-02 – 2026-11-03 (2 days)" in text


def test_tiers_section_shows_size_and_share_of_each_tier_in_rule_order(engine):
    save_tiers(engine)

    build_report(engine)

    text = page(engine)
    tier_cards = cards(text)
    assert "Tiers" in text
    assert tier_cards["parent"] == ("3", "30.0 %")
    assert tier_cards["student"] == ("2", "20.0 %")
    assert tier_cards["other"] == ("5", "50.0 %")
    chart = figures(text)["chart-tiers"]["data"][0]
    assert chart["y"] == ["parent", "student", "other"]
    assert chart["x"] == [3, 2, 5]


def test_profiles_section_shows_shares_found_and_commuters(engine):
    save_profiles(engine)

    build_report(engine)

    profile_cards = cards(page(engine))
    assert profile_cards["Subscribers profiled"][0] == "10"
    assert profile_cards["Home cell found"] == ("80.0 %", "8 subscribers")
    assert profile_cards["Work cell found"] == ("40.0 %", "4 subscribers")
    assert profile_cards["Subway commuters"] == ("40.0 %", "4 subscribers")


def test_profile_histograms_count_values_up_to_the_99th_percentile(engine):
    radius_km = np.array([0.5, 1.2, 2.0, 2.4, 3.1, 3.3, 4.8, 6.0, 7.5, 40.0])
    save_profiles(engine)

    build_report(engine)

    charts = figures(page(engine))
    radius = charts["chart-profile-radius-of-gyration-km"]["data"][0]
    apps = charts["chart-profile-k12-app-count"]["data"][0]
    # numpy's default quantile interpolates linearly, like the engine's.
    assert sum(radius["y"]) == int((radius_km <= np.quantile(radius_km, 0.99)).sum())
    counts_per_app = np.bincount([0, 0, 1, 1, 1, 2, 4, 5, 5])
    assert apps["x"] == list(range(len(counts_per_app)))
    assert apps["y"] == counts_per_app.tolist()


def test_profiles_without_dpi_columns_show_only_the_columns_they_have(engine):
    engine.save(
        "profiles",
        pa.table(
            {
                "subscriber": TOKENS[:3],
                "radius_of_gyration_km": [1.0, 2.0, 3.0],
                "home_cell": ["h1", None, "h2"],
            }
        ),
    )

    summary = build_report(engine)

    text = page(engine)
    assert "profiles" in summary.sections
    assert "chart-profile-radius-of-gyration-km" in text
    assert "chart-profile-online-min-per-day" not in text
    assert "Work cell found" not in text
    assert cards(text)["Home cell found"][0] == "66.7 %"


def test_model_section_compares_logistic_regression_with_lightgbm(engine):
    write_card(engine.workspace, 1, "2026-11-20T10:00:00+00:00", auc=0.812)

    build_report(engine)

    text = page(engine)
    charts = figures(text)
    assert "Propensity model" in text
    assert cards(text)["AUC"][0] == "0.812"
    assert cards(text)["LightGBM AUC"][0] == "0.765"
    assert cards(text)["Model AUC"][0] == "0.812"
    assert {"chart-model-roc", "chart-model-gain", "chart-model-calibration"} <= set(
        charts
    )
    names = [trace["name"] for trace in charts["chart-model-roc"]["data"]]
    assert names == [
        "random",
        "Logistic regression (AUC 0.812)",
        "LightGBM (AUC 0.765)",
    ]
    # The empty calibration bin is left out, not drawn at zero.
    assert charts["chart-model-calibration"]["data"][1]["x"] == [0.05, 0.24]


def test_model_section_reads_the_newest_card(engine):
    write_card(engine.workspace, 1, "2026-11-20T10:00:00+00:00", auc=0.701)
    write_card(engine.workspace, 2, "2026-11-21T10:00:00+00:00", auc=0.842)

    build_report(engine)

    assert cards(page(engine))["AUC"][0] == "0.842"


def test_ground_truth_cards_mark_each_target_met_or_missed(engine):
    evaluation = {
        "home_cell_accuracy": 0.93,
        "work_cell_accuracy": 0.78,
        "work_cell_evaluated": 1800,
        "subscribers_evaluated": 2000,
        "tiers": {"parent": {"precision": 0.97, "recall": 0.94, "support": 300}},
    }
    (engine.workspace.reports_dir / "evaluation.json").write_text(
        json.dumps(evaluation), encoding="utf-8"
    )

    build_report(engine)

    text = page(engine)
    truth = cards(text)
    assert truth["Home cell right"][0] == "93.0 %"
    assert "target ≥ 90 %" in truth["Home cell right"][1]
    assert "target ≥ 80 %" in truth["Work cell right"][1]
    assert text.count("✓ pass") == 2
    assert text.count("✗ fail") == 2
    assert "2 of 4 targets met." in text


def test_notes_of_the_run_are_listed(engine):
    note = "Mobility comes from GeoLife volunteers, not carrier subscribers."
    (engine.workspace.reports_dir / "run.json").write_text(
        json.dumps({"notes": [note], "seconds": 754.2}), encoding="utf-8"
    )

    summary = build_report(engine)

    text = page(engine)
    assert "notes" in summary.sections
    assert f"<li>{note}</li>" in text
    assert cards(text)["Run time"][0] == "12 min 34 s"


def test_virtual_cells_raise_the_h3_grid_banner(engine, tmp_path):
    ingest_cells(engine.workspace, tmp_path, "virtual")

    build_report(engine)

    assert "Positions run on a virtual H3 grid" in page(engine)


def test_real_cells_raise_no_grid_banner(engine, tmp_path):
    ingest_cells(engine.workspace, tmp_path, "macro")

    build_report(engine)

    assert "virtual H3 grid" not in page(engine)


def test_plotly_library_is_written_once_beside_the_page(engine):
    save_tiers(engine)

    first = build_report(engine)
    second = build_report(engine)

    reports = engine.workspace.reports_dir
    assert first.plotly_js_written
    assert not second.plotly_js_written
    assert (reports / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
    assert '<script src="plotly.min.js"></script>' in page(engine)
    assert "cdn.plot.ly" not in page(engine)


def test_out_dir_receives_the_page_and_its_library(engine, tmp_path):
    summary = build_report(engine, out_dir=tmp_path / "elsewhere")

    assert Path(summary.path) == tmp_path / "elsewhere" / "index.html"
    assert (tmp_path / "elsewhere" / "plotly.min.js").is_file()
    assert json.loads(json.dumps(summary.to_dict()))["path"] == summary.path


def test_every_embedded_figure_passes_plotly_validation(engine, tmp_path):
    save_profiles(engine)
    save_tiers(engine)
    write_card(engine.workspace, 1, "2026-11-20T10:00:00+00:00", auc=0.812)
    ingest_cells(engine.workspace, tmp_path, "virtual")

    summary = build_report(engine)

    embedded = figures(page(engine))
    assert len(embedded) == summary.charts
    for figure in embedded.values():
        go.Figure(figure)


def test_full_report_shows_no_raw_identifier_and_no_token(engine, tmp_path):
    save_profiles(engine)
    save_tiers(engine)
    write_card(engine.workspace, 1, "2026-11-20T10:00:00+00:00", auc=0.812)
    ingest_cells(engine.workspace, tmp_path, "virtual")

    build_report(engine)

    text = page(engine)
    assert find_raw_identifiers(text) == {}
    assert not [token for token in TOKENS if token in text]


def test_identifier_shaped_note_stops_the_report_before_writing(engine):
    (engine.workspace.reports_dir / "run.json").write_text(
        json.dumps({"notes": ["call 13812345678 for access"]}), encoding="utf-8"
    )

    with pytest.raises(PrivacyError, match="msisdn"):
        build_report(engine)

    assert not (engine.workspace.reports_dir / "index.html").exists()


def test_audience_section_shows_who_was_left_out_and_why(tmp_path):
    workspace = Workspace.create(tmp_path / "ws")
    run = {
        "steps": {
            "audience": {
                "segment": "student",
                "in_segment": 120,
                "excluded_no_consent": 30,
                "excluded_opted_out": 5,
                "exported": 85,
            }
        }
    }
    (workspace.reports_dir / "run.json").write_text(json.dumps(run))

    build_report(Engine(workspace))

    found = cards(page(Engine(workspace)))
    assert found["No consent"][0] == "30"
    assert found["Opted out"][0] == "5"
    assert found["Exported"][0] == "85"
