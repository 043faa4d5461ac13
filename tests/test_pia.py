"""Impact assessment: facts from the workspace, PIPL sections, no identifiers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.config import Config
from telcoreach.engine import Engine
from telcoreach.errors import PrivacyError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.pipeline import init_workspace
from telcoreach.privacy import file_sm3, find_raw_identifiers, record_consent
from telcoreach.privacy._pia import build_pia, run_pia

SUBSCRIBERS = (
    "msisdn,imsi,imei,age_band,gender,plan,device_brand,device_model,"
    "tenure_months,consent_marketing,consent_profiling,opted_out\n"
    "13800000001,460001234567890,356938035643809,35-44,F,p,b,m,3,true,true,false\n"
    "13800000002,,,25-34,M,p,b,m,5,true,true,true\n"
    "13800000003,,,25-34,M,p,b,m,5,false,false,false\n"
)
SIGNALLING = (
    "msisdn,imsi,imei,event_time,lac,cell_id,event_type\n"
    "13800000001,,,2026-11-02 08:00:00,1,c1,attach\n"
    "13800000003,,,2026-11-05 08:00:00,1,c1,attach\n"
)


@pytest.fixture
def workspace(tmp_path):
    workspace = init_workspace(tmp_path / "ws", Config(city="test city"))
    for kind, text in (("subscribers", SUBSCRIBERS), ("signalling", SIGNALLING)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(text)
        ingest_batch(workspace, kind, file_sources(kind, [path]))
    engine = Engine(workspace)
    first = workspace.pseudonymiser.token("msisdn", "13800000001")
    record_consent(engine, [first], "sharing:Acme Bank", True, source="app")
    engine.close()
    export = workspace.exports_dir / "audience.csv"
    export.write_text("rank,subscriber\n1," + first + "\n")
    workspace.record_use("audience", "marketing", subscribers=1, output=export)
    return workspace


def pia_text(workspace):
    engine = Engine(workspace)
    try:
        return build_pia(engine)
    finally:
        engine.close()


def test_pia_has_the_sections_pipl_art_56_asks_for(workspace):
    text = pia_text(workspace)

    for heading in (
        "## 2. Purpose, lawfulness and necessity (Art. 55(1), 56(1))",
        "## 3. Impact on individuals' rights and risks (Art. 56(2))",
        "## 4. Safeguards (Art. 56(3))",
    ):
        assert heading in text


def test_pia_marks_location_and_browsing_as_sensitive(workspace):
    lines = pia_text(workspace).splitlines()

    row = {}
    for line in lines:  # the data-category table comes first
        if line.startswith("| `"):
            row.setdefault(line.split("|")[1].strip(), line)
    assert "**yes**" in row["`signalling`"] and "**yes**" in row["`dpi`"]
    assert "**yes**" not in row["`subscribers`"]
    # Two people's events are held; the table says so.
    assert row["`signalling`"].split("|")[5:7] == [" 2 ", " 2 "]


def test_pia_counts_consent_per_purpose(workspace):
    text = pia_text(workspace)

    # From the records above: one may get SMS (one opted out, one never agreed),
    # two agreed to profiling, one to sharing with Acme Bank.
    assert "| `marketing_sms` | 3 | 1 | 1 |" in text
    assert "| `profiling` | 3 | 2 | 0 |" in text
    assert "| `sharing:Acme Bank` | 3 | 1 | 0 |" in text
    assert "`Acme Bank`" in text


def test_pia_states_safeguards_from_the_workspace(workspace):
    text = pia_text(workspace)

    assert f"key fingerprint `{workspace.pseudonymiser.fingerprint}`" in text
    assert "k = 10" in text
    assert "chain **intact**" in text
    assert (
        "| audience | subscriber-level (tokens) | export file (marketing) "
        "| 1 | 1 | marketing |" in text
    )


def test_pia_reports_a_broken_audit_chain(workspace):
    lines = workspace.audit_path.read_text().splitlines()
    workspace.audit_path.write_text("\n".join(lines[1:]) + "\n")

    assert "**broken at line 1**" in pia_text(workspace)


def test_pia_holds_no_raw_identifier_and_no_token(workspace):
    text = pia_text(workspace)

    assert find_raw_identifiers(text) == {}
    for number in ("13800000001", "13800000002", "13800000003"):
        assert workspace.pseudonymiser.token("msisdn", number) not in text


def test_pia_refuses_to_write_a_raw_number(tmp_path):
    workspace = init_workspace(
        tmp_path / "ws", Config(description="pilot for 13912345678 only")
    )

    with pytest.raises(PrivacyError, match="raw identifiers"):
        run_pia(workspace)
    assert not (workspace.reports_dir / "pia.md").exists()


def test_cli_pia_writes_markdown_and_audits_its_hash(workspace):
    result = CliRunner().invoke(
        app, ["pia", "--workspace", str(workspace.root), "--json"]
    )

    assert result.exit_code == 0, result.output
    path = workspace.reports_dir / "pia.md"
    assert json.loads(result.stdout)["path"] == str(path)
    last = json.loads(workspace.audit_path.read_text().splitlines()[-1])
    assert last["action"] == "pia" and last["output_sm3"] == file_sm3(path)


def test_pia_recipients_list_partner_sharing_even_without_an_output_file(workspace):
    details = {"mode": "cardinality", "consent_purpose": "sharing:Acme Bank"}
    workspace.record_use(
        "psi serve", "customer matching", subscribers=7, details=details
    )
    workspace.record_use("fl train", "joint modelling", subscribers=50)

    text = pia_text(workspace)

    assert "| psi serve | count only | Acme Bank | 1 | 7 | customer matching |" in text
    assert "| fl train | model updates | federation parties | 1 | 50 |" in text


def test_pia_marks_measurement_reports_as_location_data(workspace):
    rows = [
        line
        for line in pia_text(workspace).splitlines()
        if line.startswith("| `measurement_reports`")
    ]

    assert len(rows) == 1
    assert "location" in rows[0].split("|")[2]
    assert "**yes**: whereabouts" in rows[0]


def test_cli_pia_json_states_the_facts_of_the_assessment(workspace):
    result = CliRunner().invoke(
        app, ["pia", "--workspace", str(workspace.root), "--json"]
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    path = workspace.reports_dir / "pia.md"
    assert summary["output_sm3"] == file_sm3(path)
    assert len(summary["output_sha256"]) == 64
    assert "4. Safeguards (Art. 56(3))" in summary["sections"]
    categories = {c["kind"]: c for c in summary["categories"]}
    assert categories["signalling"]["rows"] == 2
    assert categories["signalling"]["sensitive"]
    assert summary["consent"]["marketing_sms"] == {
        "known": 3,
        "consenting": 1,
        "revoked": 1,
    }
    assert [r["action"] for r in summary["recipients"]] == ["audience"]
    assert find_raw_identifiers(result.stdout) == {}
