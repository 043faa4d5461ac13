"""The whole job on a small simulated city, and the promise that no raw id leaks."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.engine import Engine
from telcoreach.privacy import find_raw_identifiers
from telcoreach.workspace import Workspace

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, datasets_dir):
    root = tmp_path_factory.mktemp("demo") / "ws"
    # A fixed key makes the tokens, hence the train/test split and the AUC of
    # this small city (about 90 test rows), the same on every run.
    root.mkdir()
    key = root / "key"
    key.write_text(hashlib.sha256(b"telcoreach end-to-end test").hexdigest() + "\n")
    key.chmod(0o600)
    result = runner.invoke(
        app,
        [
            "demo",
            "--workspace",
            str(root),
            "--subscribers",
            "1500",
            "--days",
            "3",
            "--seed",
            "7",
            "--json",
        ],
        env={"TELCOREACH_DATA": str(datasets_dir)},
    )
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout), result.output


def test_demo_runs_every_step_and_writes_the_report(demo):
    _, summary, _ = demo
    steps = summary["steps"]

    assert Path(summary["report"]).is_file()
    assert steps["profile"]["subscribers"] > 1000
    assert steps["profile"]["home_cells_found"] > 0.9 * steps["profile"]["subscribers"]
    assert {t["name"] for t in steps["segment"]["tiers"]} == {
        "high-potential parent",
        "student",
        "low priority",
    }
    assert steps["train"]["metrics"]["logistic_regression"]["auc"] > 0.6
    assert steps["audience"]["exported"] > 0


def test_demo_meets_accuracy_targets_against_ground_truth(demo):
    _, summary, _ = demo
    evaluation = summary["steps"]["report"]["evaluation"]

    assert evaluation["home_cell_accuracy"] >= 0.90
    assert evaluation["work_cell_accuracy"] >= 0.80
    for tier, scores in evaluation["tiers"].items():
        assert scores["precision"] >= 0.9, tier
        assert scores["recall"] >= 0.9, tier


def _workspace_text(root: Path) -> str:
    """Every stored byte of the workspace as text, outside the raw inputs."""
    parts = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "inbox" in path.relative_to(root).parts:
            continue
        if path.name == "plotly.min.js":  # the charting library, not data
            continue
        if path.suffix == ".parquet":
            parts.append(pq.read_table(path).to_pandas().to_csv())
        elif path.suffix not in {".duckdb", ".wal", ".joblib"}:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    engine = Engine(Workspace.open(root))
    for table in engine.con.list_tables():
        parts.append(engine.con.table(table).to_pandas().to_csv())
    engine.close()
    return "\n".join(parts)


def test_no_raw_identifier_anywhere_in_workspace_or_output(demo):
    root, _, output = demo

    assert find_raw_identifiers(_workspace_text(root)) == {}
    assert find_raw_identifiers(output) == {}


def test_model_file_holds_no_raw_identifier(demo):
    root, _, _ = demo
    for path in root.rglob("*.joblib"):
        text = path.read_bytes().decode("latin-1")
        assert find_raw_identifiers(text) == {}, path


def test_logs_carry_no_raw_identifier(demo, caplog, tmp_path):
    root, _, _ = demo
    inbox = root / "inbox" / "city"
    with caplog.at_level(logging.DEBUG):
        result = runner.invoke(
            app, ["ingest", "signalling", str(inbox / "signalling"), "-w", str(root)]
        )

    assert result.exit_code == 0
    assert "already ingested" in result.output
    assert find_raw_identifiers(caplog.text + result.output) == {}


def test_explain_names_the_rule_and_values(demo):
    root, _, _ = demo
    engine = Engine(Workspace.open(root))
    token = (
        engine.table("tiers")
        .filter(lambda t: t.tier == "high-potential parent")
        .limit(1)
        .to_pandas()["subscriber"][0]
    )
    engine.close()

    result = runner.invoke(app, ["segment", "--explain", token, "-w", str(root)])

    assert result.exit_code == 0, result.output
    assert "high-potential parent" in result.output
    assert "k12_app_count" in result.output


def test_aggregate_export_with_small_groups_is_refused(demo, tmp_path):
    root, _, _ = demo

    result = runner.invoke(
        app,
        [
            "audience",
            "--segment",
            "student",
            "--group-by",
            "age_band,gender,plan,device_brand",
            "--out",
            str(tmp_path / "agg.csv"),
            "-w",
            str(root),
        ],
    )

    assert result.exit_code == 1
    assert "fewer than k=10" in result.output


def test_privacy_commands_leave_no_raw_identifier(demo, tmp_path):
    root, _, _ = demo
    subscribers = (root / "inbox" / "city" / "subscribers.csv").read_text()
    numbers = [line.split(",")[0] for line in subscribers.splitlines()[1:4]]
    replies = tmp_path / "replies.csv"
    replies.write_text(
        "msisdn,text,received_at\n"
        + "".join(f"{n},退订,2026-11-05 09:00:00\n" for n in numbers)
        + f"{numbers[0]},call me on {numbers[1]},2026-11-05 09:01:00\n",
        encoding="utf-8",
    )
    commands = [
        ["optout", "--replies", str(replies)],
        ["quality"],
        ["pia"],
        ["audience", "--segment", "low priority", "--group-by", "age_band,gender"],
        ["keys", "status"],
        ["audit", "verify"],
    ]

    outputs = []
    for command in commands:
        result = runner.invoke(app, [*command, "-w", str(root), "--json"])
        assert result.exit_code == 0, (command, result.output)
        outputs.append(result.output)

    assert find_raw_identifiers("\n".join(outputs)) == {}
    assert find_raw_identifiers(_workspace_text(root)) == {}
