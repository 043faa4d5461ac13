"""Erasure: ``forget`` removes a subscriber everywhere and keeps them out."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.engine import Engine
from telcoreach.errors import ConsentError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.lake import Lake
from telcoreach.pipeline import init_workspace
from telcoreach.privacy import record_consent, verify_audit_log
from telcoreach.privacy._forget import forget_subscriber, run_forget

SIGNALLING = "msisdn,imsi,imei,event_time,lac,cell_id,event_type\n"
EVENTS = [
    "13800000001,460001234567890,,2026-11-02 08:00:00,1,c1,attach",
    "13800000001,460001234567890,,2026-11-03 08:00:00,1,c2,handover",
    "13800000001,,,2026-11-03 09:00:00,1,c2,not-an-event",  # quarantined
    "13800000002,,,2026-11-02 09:00:00,1,c1,attach",
    "13800000002,,,2026-11-03 09:30:00,1,c1,call",
]
SUBSCRIBERS = (
    "msisdn,imsi,imei,age_band,gender,plan,device_brand,device_model,"
    "tenure_months,consent_marketing,consent_profiling,opted_out\n"
    "13800000001,,,35-44,F,p,b,m,3,true,true,false\n"
    "13800000002,,,25-34,M,p,b,m,5,true,true,false\n"
)


def ingest(workspace, kind, path):
    return ingest_batch(workspace, kind, file_sources(kind, [path]))


@pytest.fixture
def workspace(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    (tmp_path / "sig.csv").write_text(SIGNALLING + "\n".join(EVENTS) + "\n")
    (tmp_path / "subs.csv").write_text(SUBSCRIBERS)
    ingest(workspace, "signalling", tmp_path / "sig.csv")
    ingest(workspace, "subscribers", tmp_path / "subs.csv")
    tokens = [token(workspace, n) for n in ("13800000001", "13800000002")]
    engine = Engine(workspace)
    engine.save(
        "profiles", pa.table({"subscriber": tokens, "events": pa.array([2, 2])})
    )
    engine.save("tiers", pa.table({"subscriber": tokens, "tier": ["a", "b"]}))
    record_consent(engine, tokens, "marketing_sms", True, source="web")
    engine.close()
    (workspace.exports_dir / "audience.csv").write_text(
        "rank,subscriber\n" + "".join(f"{i},{t}\n" for i, t in enumerate(tokens, 1))
    )
    return workspace


def token(workspace, number):
    return workspace.pseudonymiser.token("msisdn", number)


def rows_of(workspace, subscriber):
    """Count a subscriber's rows per place by reading everything back."""
    engine = Engine(workspace)
    counts = {}
    for kind in ("signalling", "subscribers"):
        frame = engine.lake(kind).to_pandas()
        counts[f"lake:{kind}"] = int((frame["subscriber"] == subscriber).sum())
    quarantine = engine.quarantine()
    counts["quarantine"] = (
        0
        if quarantine is None  # its only file held nothing else and was dropped
        else int(quarantine.to_pandas()["row"].str.contains(subscriber).sum())
    )
    for name in ("profiles", "tiers", "consent_events"):
        frame = engine.table(name).to_pandas()
        counts[f"warehouse:{name}"] = int((frame["subscriber"] == subscriber).sum())
    engine.close()
    exported = (workspace.exports_dir / "audience.csv").read_text()
    counts["exports"] = exported.count(subscriber)
    return counts


def test_forget_removes_every_row_and_proves_none_remain(workspace):
    gone = token(workspace, "13800000001")
    before = rows_of(workspace, gone)

    summary = forget_subscriber(workspace, gone).to_dict()

    removed = {t["table"]: t["removed"] for t in summary["tables"]}
    assert {place: removed[place] for place in before} == before
    assert before["lake:signalling"] == 2 and before["quarantine"] == 1
    assert summary["remaining"] == 0 and summary["complete"]
    assert set(rows_of(workspace, gone).values()) == {0}


def test_forget_leaves_other_subscribers_untouched(workspace):
    kept = token(workspace, "13800000002")
    before = rows_of(workspace, kept)

    forget_subscriber(workspace, token(workspace, "13800000001"))

    assert rows_of(workspace, kept) == before


def test_forget_keeps_the_manifest_consistent(workspace):
    forget_subscriber(workspace, token(workspace, "13800000001"))
    lake = Lake(workspace.lake)

    listed = [lake.root / f for b in lake.batches() for f in b.files]
    assert all(path.exists() for path in listed)
    assert lake.recover() == 0  # no file left behind that the manifest forgot
    erased = {b.kind: b.rows_erased for b in lake.batches()}
    assert erased == {"signalling": 2, "subscribers": 1}


def test_reingest_drops_rows_of_a_forgotten_subscriber(workspace, tmp_path):
    gone = token(workspace, "13800000001")
    forget_subscriber(workspace, gone)
    # The same old rows arrive again in a new delivery with one new row.
    again = tmp_path / "again.csv"
    new_row = "13800000002,,,2026-11-04 09:30:00,1,c1,call"
    again.write_text(SIGNALLING + "\n".join([*EVENTS, new_row]) + "\n")

    summary = ingest(workspace, "signalling", again)

    assert summary.rows_forgotten == 3  # two valid rows and one bad one
    assert summary.rows_stored == 1
    assert rows_of(workspace, gone)["lake:signalling"] == 0
    assert rows_of(workspace, gone)["quarantine"] == 0


def test_reingest_of_the_identical_old_file_adds_nothing(workspace, tmp_path):
    gone = token(workspace, "13800000001")
    forget_subscriber(workspace, gone)

    summary = ingest(workspace, "signalling", tmp_path / "sig.csv")

    assert summary.status == "already ingested"
    assert rows_of(workspace, gone)["lake:signalling"] == 0


def test_forget_is_audited_without_the_token(workspace):
    gone = token(workspace, "13800000001")

    run_forget(workspace, gone)

    text = workspace.audit_path.read_text()
    entry = json.loads(text.splitlines()[-1])
    assert entry["action"] == "forget" and entry["details"]["remaining"] == 0
    assert gone not in text
    assert verify_audit_log(workspace.audit_path).ok


def test_forget_refuses_a_phone_number(workspace):
    with pytest.raises(ConsentError, match="subscriber token"):
        forget_subscriber(workspace, "13800000001")
    assert not workspace.forget_list_path.exists()


def test_cli_forget_prints_counts_and_exits_zero(workspace):
    gone = token(workspace, "13800000001")

    result = CliRunner().invoke(
        app, ["forget", gone, "--yes", "--workspace", str(workspace.root), "--json"]
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["complete"] and summary["removed"] == 8


def test_cli_forget_without_yes_and_without_a_terminal_erases_nothing(workspace):
    gone = token(workspace, "13800000001")

    result = CliRunner().invoke(
        app, ["forget", gone, "--workspace", str(workspace.root)], input="\n"
    )

    assert result.exit_code == 1
    assert "--yes" in result.output
    assert not workspace.forget_list_path.exists()
