"""Key rotation: re-tokenised lake and warehouse, encrypted map of old tokens."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.config import Config, PrivacyConfig
from telcoreach.engine import Engine
from telcoreach.errors import PrivacyError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.pipeline import init_workspace
from telcoreach.privacy import (
    KEY_ENV,
    Pseudonymiser,
    _keys,
    find_raw_identifiers,
    key_status,
    resolve_tokens,
    rotate_key,
    verify_audit_log,
)
from telcoreach.workspace import Workspace

SIGNALLING = (
    "msisdn,imsi,imei,event_time,lac,cell_id,event_type\n"
    "13812345678,460001234567890,356938035643809,2026-11-02 08:00:00,4101,c1,attach\n"
    "13812345678,460001234567890,356938035643809,2026-11-02 08:30:00,4101,c2,handover\n"
    "13912345678,,,2026-11-03 09:00:00,,c3,call\n"
)
SUBSCRIBERS = (
    "msisdn,imsi,imei,age_band,gender,consent_marketing,consent_profiling\n"
    "13812345678,460001234567890,356938035643809,35-44,F,true,true\n"
    "13912345678,,,25-34,M,true,false\n"
)
LATER = (
    "msisdn,imsi,imei,event_time,lac,cell_id,event_type\n"
    "+86 138 1234 5678,,,2026-11-04 10:00:00,4101,c1,call\n"
)


def reference_token(key: bytes, kind: str, value: str) -> str:
    mac = hmac.HMAC(key, hashes.SM3())
    mac.update(f"{kind}:{value}".encode())
    return base64.b32encode(mac.finalize()[:15]).decode().lower()


def key_of(workspace: Workspace) -> bytes:
    return bytes.fromhex(workspace.key_path.read_text().strip())


def ingest(workspace: Workspace, kind: str, path: Path) -> None:
    ingest_batch(workspace, kind, file_sources(kind, [path]))


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "inputs"
    folder.mkdir()
    paths = {
        "signalling": folder / "signalling.csv",
        "subscribers": folder / "subs.csv",
    }
    paths["signalling"].write_text(SIGNALLING, encoding="utf-8")
    paths["subscribers"].write_text(SUBSCRIBERS, encoding="utf-8")
    return paths


@pytest.fixture
def workspace(tmp_path, inputs, monkeypatch) -> Workspace:
    monkeypatch.delenv(KEY_ENV, raising=False)
    workspace = init_workspace(tmp_path / "ws")
    for kind, path in inputs.items():
        ingest(workspace, kind, path)
    engine = Engine(workspace)
    events = engine.lake("signalling")
    engine.save("profiles", events.group_by("subscriber").agg(events=events.count()))
    engine.close()
    return workspace


def lake_column(workspace: Workspace, kind: str, column: str) -> list[str]:
    engine = Engine(workspace)
    try:
        return engine.lake(kind).to_pyarrow().column(column).to_pylist()
    finally:
        engine.close()


def test_old_token_resolves_to_the_new_token_after_rotation(workspace, inputs):
    old = workspace.pseudonymiser.token("msisdn", "13812345678")

    rotate_key(workspace, [inputs["signalling"].parent])

    new = reference_token(key_of(workspace), "msisdn", "13812345678")
    assert old != new
    assert resolve_tokens(workspace, [old, new]).to_pylist() == [new, None]


def test_lake_is_retokenised_and_later_batches_join_the_same_subscriber(
    workspace, inputs, tmp_path
):
    rotate_key(workspace, [inputs["signalling"], inputs["subscribers"]])
    later = tmp_path / "later.csv"
    later.write_text(LATER, encoding="utf-8")
    ingest(Workspace.open(workspace.root), "signalling", later)

    key = key_of(workspace)
    expected = {
        reference_token(key, "msisdn", m) for m in ("13812345678", "13912345678")
    }
    assert set(lake_column(workspace, "signalling", "subscriber")) == expected
    assert set(lake_column(workspace, "subscribers", "subscriber")) == expected
    assert set(lake_column(workspace, "signalling", "imsi_token")) == {
        reference_token(key, "imsi", "460001234567890"),
        None,
    }


def test_warehouse_profiles_still_join_the_lake_after_rotation(workspace, inputs):
    rotate_key(workspace, [inputs["signalling"].parent])

    engine = Engine(workspace)
    profiles = engine.table("profiles")
    subscribers = engine.lake("subscribers")
    joined = profiles.join(subscribers, "subscriber").to_pyarrow()
    engine.close()
    assert joined.num_rows == 2
    assert sorted(joined.column("events").to_pylist()) == [1, 2]


def test_token_map_holds_no_raw_id_or_clear_token_and_needs_the_key(workspace, inputs):
    old = workspace.pseudonymiser.token("msisdn", "13812345678")
    rotate_key(workspace, [inputs["signalling"].parent])
    (path,) = workspace.keys_dir.glob("map-*.sm4gcm")
    data = path.read_bytes()

    new = reference_token(key_of(workspace), "msisdn", "13812345678")
    assert b"13812345678" not in data and b"460001234567890" not in data
    assert old.encode() not in data and new.encode() not in data
    assert find_raw_identifiers(data.decode("latin-1")) == {}
    with pytest.raises(PrivacyError, match="cannot be opened"):
        _keys._read_map(_keys._read_header(path), Pseudonymiser(bytes(32)))


def test_key_file_and_token_map_are_owner_only(workspace, inputs):
    rotate_key(workspace, [inputs["signalling"].parent])

    (path,) = workspace.keys_dir.glob("map-*.sm4gcm")
    assert workspace.key_path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_mode & 0o777 == 0o600
    assert not (workspace.root / "key.new").exists()


def test_rotation_refuses_when_the_ids_miss_a_stored_subscriber(
    workspace, inputs, tmp_path
):
    partial = tmp_path / "partial.csv"
    partial.write_text("msisdn\n13812345678\n", encoding="utf-8")
    before = workspace.pseudonymiser.fingerprint

    with pytest.raises(PrivacyError, match="no raw identifier"):
        rotate_key(workspace, [partial])

    assert Workspace.open(workspace.root).pseudonymiser.fingerprint == before
    assert not (workspace.keys_dir / _keys.PENDING_FILE).exists()


def test_drop_unmatched_deletes_rows_of_subscribers_without_raw_id(workspace, tmp_path):
    partial = tmp_path / "partial.csv"
    partial.write_text("msisdn\n13812345678\n", encoding="utf-8")

    summary = rotate_key(workspace, [partial], drop_unmatched=True)

    kept = reference_token(key_of(workspace), "msisdn", "13812345678")
    # One event, one subscriber record and one profile.
    assert summary["rows_dropped"] == 3
    assert set(lake_column(workspace, "signalling", "subscriber")) == {kept}
    assert set(lake_column(workspace, "signalling", "imsi_token")) == {None}


def test_drop_unmatched_counts_dropped_rows_of_every_table(workspace, tmp_path):
    from telcoreach.privacy import record_consent

    dropped_token = reference_token(key_of(workspace), "msisdn", "13912345678")
    engine = Engine(workspace)
    record_consent(engine, [dropped_token], "marketing_sms", True, source="form")
    engine.close()
    partial = tmp_path / "partial.csv"
    partial.write_text("msisdn\n13812345678\n", encoding="utf-8")

    summary = rotate_key(workspace, [partial], drop_unmatched=True)

    assert summary["rows_dropped_by_table"] == {
        "lake:signalling": 1,
        "lake:subscribers": 1,
        "warehouse:profiles": 1,
        "warehouse:consent_events": 1,
    }
    assert summary["rows_dropped"] == 4


def test_resolve_refuses_a_raw_number_without_echoing_it(workspace):
    result = CliRunner().invoke(
        app,
        ["keys", "resolve", "13912345678", "--workspace", str(workspace.root)],
    )

    assert result.exit_code == 1
    assert "not a subscriber token" in result.output
    assert find_raw_identifiers(result.output) == {}


def test_interrupted_rotation_blocks_tokenising_and_a_rerun_finishes_it(
    workspace, inputs, monkeypatch
):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_keys, "_rewrite_warehouse", crash)
    with pytest.raises(OSError, match="disk full"):
        rotate_key(workspace, [inputs["signalling"].parent])
    monkeypatch.undo()
    monkeypatch.delenv(KEY_ENV, raising=False)

    with pytest.raises(PrivacyError, match="interrupted"):
        _ = Workspace.open(workspace.root).pseudonymiser
    summary = rotate_key(Workspace.open(workspace.root), [])

    key = key_of(workspace)
    assert summary["resumed"]
    assert set(lake_column(workspace, "signalling", "subscriber")) == {
        reference_token(key, "msisdn", m) for m in ("13812345678", "13912345678")
    }
    assert Workspace.open(workspace.root).pseudonymiser.fingerprint == (
        Pseudonymiser(key).fingerprint
    )


def test_second_rotation_keeps_the_first_tokens_resolvable(workspace, inputs):
    first = workspace.pseudonymiser.token("msisdn", "13912345678")

    rotate_key(workspace, [inputs["signalling"].parent])
    rotate_key(Workspace.open(workspace.root), [inputs["signalling"].parent])

    latest = reference_token(key_of(workspace), "msisdn", "13912345678")
    assert resolve_tokens(Workspace.open(workspace.root), [first]).to_pylist() == [
        latest
    ]
    assert len(key_status(Workspace.open(workspace.root))["retired"]) == 2


def test_zero_retention_keeps_no_token_map(tmp_path, inputs, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = Config(privacy=PrivacyConfig(key_retention_days=0))
    workspace = Workspace.create(tmp_path / "ws0", config)
    ingest(workspace, "signalling", inputs["signalling"])
    old = workspace.pseudonymiser.token("msisdn", "13812345678")

    rotate_key(workspace, [inputs["signalling"]])

    assert list(workspace.keys_dir.glob("map-*")) == []
    assert resolve_tokens(workspace, [old]).to_pylist() == [None]


def test_forget_list_is_retokenised_so_erased_subscribers_stay_erased(
    workspace, inputs
):
    old = workspace.pseudonymiser.token("msisdn", "13912345678")
    workspace.forget_list_path.write_text(old + "\n", encoding="utf-8")

    rotate_key(workspace, [inputs["signalling"].parent])

    new = reference_token(key_of(workspace), "msisdn", "13912345678")
    assert workspace.forgotten_tokens() == frozenset({new})


def test_rotation_refuses_a_key_from_the_environment(workspace, inputs, monkeypatch):
    monkeypatch.setenv(KEY_ENV, workspace.key_path.read_text().strip())

    with pytest.raises(PrivacyError, match="cannot replace"):
        rotate_key(Workspace.open(workspace.root), [inputs["signalling"]])


def test_rotation_is_audited_without_raw_identifiers(workspace, inputs):
    rotate_key(workspace, [inputs["signalling"].parent])

    text = workspace.audit_path.read_text(encoding="utf-8")
    last = json.loads(text.splitlines()[-1])
    assert last["action"] == "keys rotate"
    assert (
        last["details"]["new_fingerprint"]
        == Pseudonymiser(key_of(workspace)).fingerprint
    )
    assert verify_audit_log(workspace.audit_path).ok
    assert find_raw_identifiers(text) == {}


def test_keys_commands_rotate_and_show_status_as_json(workspace, inputs):
    runner = CliRunner()
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    where = ["--workspace", str(workspace.root), "--json"]

    rotated = runner.invoke(
        app,
        ["keys", "rotate", "--ids", str(inputs["signalling"].parent), *where],
        env=env,
    )
    status = runner.invoke(app, ["keys", "status", *where], env=env)

    assert rotated.exit_code == 0, rotated.output
    summary = json.loads(rotated.stdout)
    shown = json.loads(status.stdout)
    assert shown["fingerprint"] == summary["new_fingerprint"]
    assert shown["key_file_mode"] == "600"
    assert [r["fingerprint"] for r in shown["retired"]] == [summary["old_fingerprint"]]
    assert shown["retired"][0]["resolvable"]
