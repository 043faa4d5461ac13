"""Audit log: tamper evidence, the ``audit verify`` command, coverage of steps."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.engine import Engine
from telcoreach.pipeline import init_workspace, run_segment

# GB/T 32905-2016, appendix A.1: SM3("abc").
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@pytest.fixture
def workspace(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    for action in ("ingest", "profile", "segment", "audience", "report"):
        workspace.record_use(action, "test", tables=["profiles"], subscribers=5)
    return workspace


def verify(workspace):
    result = CliRunner().invoke(
        app, ["audit", "verify", "--workspace", str(workspace.root), "--json"]
    )
    return result.exit_code, json.loads(result.stdout)


def test_intact_log_verifies_with_exit_zero(workspace):
    code, summary = verify(workspace)

    assert code == 0
    assert summary == {"entries": 5, "ok": True, "broken_line": None, "reason": ""}


def test_edited_line_fails_and_is_named(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    lines[2] = lines[2].replace('"subscribers": 5', '"subscribers": 50')
    workspace.audit_path.write_text("\n".join(lines) + "\n")

    code, summary = verify(workspace)

    assert code == 1
    assert summary["broken_line"] == 3
    assert "edited" in summary["reason"]


def test_deleted_line_fails_and_names_the_line_after_the_gap(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    del lines[1]
    workspace.audit_path.write_text("\n".join(lines) + "\n")

    code, summary = verify(workspace)

    assert code == 1
    assert summary["broken_line"] == 2
    assert "removed" in summary["reason"]


def test_swapped_lines_fail(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    workspace.audit_path.write_text("\n".join(lines) + "\n")

    code, summary = verify(workspace)

    assert code == 1 and summary["broken_line"] == 4


def test_output_file_is_hashed_with_sm3_and_sha256(workspace):
    output = workspace.exports_dir / "abc.txt"
    output.write_bytes(b"abc")

    entry = workspace.record_use("export", "test", output=output, subscribers=0)

    assert entry["output_sm3"] == SM3_ABC
    assert entry["output_sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert entry["output"] == "exports/abc.txt"


def test_actor_comes_from_the_environment(workspace, monkeypatch):
    monkeypatch.setenv("TELCOREACH_ACTOR", "analyst-7")

    entry = workspace.record_use("profile", "test")

    assert entry["who"] == "analyst-7"
    assert json.loads(workspace.audit_path.read_text().splitlines()[-1])["who"] == (
        "analyst-7"
    )


def test_tier_size_estimate_is_audited(workspace, tmp_path):
    engine = Engine(workspace)
    engine.save(
        "profiles",
        pa.table({"subscriber": ["a" * 24, "b" * 24], "k12_app_count": [5, 0]}),
    )
    engine.close()
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "tiers:\n  - name: busy\n    when: k12_app_count > 3\ndefault: other\n"
    )

    run_segment(workspace, rules, estimate=True)

    last = json.loads(workspace.audit_path.read_text().splitlines()[-1])
    assert (last["action"], last["subscribers"]) == ("segment estimate", 2)


def test_exports_of_a_workspace_opened_by_a_relative_path_record_both_digests(
    tmp_path, monkeypatch
):
    from pathlib import Path

    from telcoreach.audience import build_audience
    from telcoreach.privacy import file_sm3, record_consent
    from telcoreach.privacy._pia import run_pia

    monkeypatch.chdir(tmp_path)
    workspace = init_workspace(Path("ws"))
    people = ["a" * 24, "b" * 24]
    engine = Engine(workspace)
    engine.save("profiles", pa.table({"subscriber": people, "propensity": [0.9, 0.1]}))
    engine.save("tiers", pa.table({"subscriber": people, "tier": ["busy", "busy"]}))
    for purpose in ("marketing_sms", "profiling"):
        record_consent(engine, people, purpose, True, source="test")
    build_audience(engine, "busy", 10, workspace.exports_dir / "audience-busy.csv")
    engine.close()
    run_pia(workspace)

    entries = [
        json.loads(line) for line in workspace.audit_path.read_text().splitlines()
    ]
    by_action = {entry["action"]: entry for entry in entries}
    for action, path in (
        ("audience", workspace.exports_dir / "audience-busy.csv"),
        ("pia", workspace.reports_dir / "pia.md"),
    ):
        entry = by_action[action]
        assert entry["output_sm3"] == file_sm3(path), action
        assert entry["output_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_lines_cut_off_the_end_are_detected_by_the_seal(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    workspace.audit_path.write_text("\n".join(lines[:3]) + "\n")

    code, summary = verify(workspace)

    assert code == 1
    assert summary["broken_line"] == 4
    assert "cut off the end" in summary["reason"]


def test_a_seal_rewritten_without_the_audit_key_is_detected(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    workspace.audit_path.write_text("\n".join(lines[:3]) + "\n")
    seal = workspace.root / "audit.seal"
    forged = json.loads(seal.read_text())
    forged.update(entries=3, last_hash=json.loads(lines[2])["hash"])
    seal.write_text(json.dumps(forged))

    code, summary = verify(workspace)

    assert code == 1
    assert "audit key" in summary["reason"]


def test_a_log_from_before_seals_still_verifies_and_is_sealed_on_append(workspace):
    (workspace.root / "audit.seal").unlink()
    assert verify(workspace)[0] == 0

    workspace.record_use("score", "test")
    lines = workspace.audit_path.read_text().splitlines()
    workspace.audit_path.write_text("\n".join(lines[:-1]) + "\n")

    assert "cut off the end" in verify(workspace)[1]["reason"]
