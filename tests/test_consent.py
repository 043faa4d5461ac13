"""Consent registry: grants, revocations, opt-out replies, read-time checks."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from telcoreach.audience import build_audience
from telcoreach.cli import app
from telcoreach.engine import Engine
from telcoreach.errors import ConsentError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.pipeline import init_workspace
from telcoreach.privacy import (
    consent_status,
    consented,
    find_raw_identifiers,
    is_unsubscribe,
    optout_from_replies,
    record_consent,
)

HEADER = (
    "msisdn,imsi,imei,age_band,gender,plan,device_brand,device_model,"
    "tenure_months,consent_marketing,consent_profiling,opted_out\n"
)
# Numbers, and the consent flags in each person's subscriber record.
PEOPLE = {
    "13800000001": ("true", "true", "false"),  # may be contacted
    "13800000002": ("true", "true", "true"),  # opted out in the record
    "13800000003": ("false", "true", "false"),  # never agreed to marketing
    "13800000004": ("true", "false", "false"),  # no profiling consent
}


@pytest.fixture
def workspace(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    lines = [
        f"{number},,,35-44,F,basic,brand,model,12,{m},{p},{o}"
        for number, (m, p, o) in PEOPLE.items()
    ]
    path = tmp_path / "subscribers.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    ingest_batch(workspace, "subscribers", file_sources("subscribers", [path]))
    return workspace


def token(workspace, number):
    return workspace.pseudonymiser.token("msisdn", number)


def allowed(engine, tokens, purpose):
    table = consented(engine, tokens, purpose).to_pyarrow()
    return set(table.column("subscriber").to_pylist())


def test_subscriber_record_flags_decide_without_registry_events(workspace):
    tokens = [token(workspace, n) for n in PEOPLE]
    engine = Engine(workspace)

    assert allowed(engine, tokens, "marketing_sms") == {tokens[0], tokens[3]}
    assert allowed(engine, tokens, "profiling") == set(tokens[:3])
    assert allowed(engine, tokens, "sharing:Acme Bank") == set()


def test_revocation_takes_effect_on_the_next_read(workspace):
    first = token(workspace, "13800000001")
    engine = Engine(workspace)
    assert allowed(engine, [first], "marketing_sms") == {first}

    record_consent(engine, [first], "marketing_sms", False, source="call centre")

    assert allowed(engine, [first], "marketing_sms") == set()
    assert allowed(engine, [first], "marketing_call") == {first}


def test_latest_decision_in_time_wins_not_latest_recorded(workspace):
    never = token(workspace, "13800000003")
    engine = Engine(workspace)
    record_consent(
        engine, [never], "marketing_sms", True, source="web", at=datetime(2026, 3, 1)
    )
    # Recorded later but decided earlier: an old paper form must not win.
    record_consent(
        engine, [never], "marketing_sms", False, source="form", at=datetime(2026, 1, 1)
    )

    status = consent_status(engine, [never], "marketing_sms").to_pyarrow()
    assert status.column("consented").to_pylist() == [True]
    assert status.column("basis").to_pylist() == ["granted by web"]


def test_grant_after_revocation_restores_consent(workspace):
    first = token(workspace, "13800000001")
    engine = Engine(workspace)
    record_consent(engine, [first], "marketing_sms", False, source="a")
    record_consent(engine, [first], "marketing_sms", True, source="b")

    assert allowed(engine, [first], "marketing_sms") == {first}


def test_sharing_needs_a_grant_naming_the_partner(workspace):
    first = token(workspace, "13800000001")
    engine = Engine(workspace)
    record_consent(engine, [first], "sharing:Acme Bank", True, source="app")

    assert allowed(engine, [first], "sharing:Acme Bank") == {first}
    assert allowed(engine, [first], "sharing:Other Bank") == set()


def test_history_is_append_only(workspace):
    first = token(workspace, "13800000001")
    engine = Engine(workspace)
    record_consent(engine, [first], "profiling", False, source="a")
    record_consent(engine, [first], "profiling", True, source="b")

    events = engine.table("consent_events").to_pyarrow()
    assert events.num_rows == 2
    assert events.column("granted").to_pylist() == [False, True]


def test_unknown_purpose_and_raw_number_are_refused(workspace):
    engine = Engine(workspace)
    with pytest.raises(ConsentError, match="unknown consent purpose"):
        consented(engine, [token(workspace, "13800000001")], "marketing")
    with pytest.raises(ConsentError, match="not subscriber tokens"):
        record_consent(engine, ["13800000001"], "profiling", True, source="x")


def test_unsubscribe_keywords_are_recognised_with_noise():
    replies = [
        "TD",
        " td ",
        "T",
        "退订",
        "退 订。",
        "取消！",
        "Unsubscribe.",
        "STOP!!",
        "ＴＤ",  # full-width letters, as typed on some phones
        "stop",
    ]
    not_replies = ["hello", "TDD", "please call me", "不要停", "", "T D please"]

    flags = is_unsubscribe(pa.array(replies + not_replies)).to_pylist()

    assert flags == [True] * len(replies) + [False] * len(not_replies)


def write_replies(path, rows):
    lines = ["msisdn,text,received_at"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_optout_replies_are_tokenised_and_counted(workspace, tmp_path):
    replies = write_replies(
        tmp_path / "replies.csv",
        [
            ("13800000001", "TD", "2026-11-02 08:00:00"),
            ("+86 138 0000 0004", "退订", "2026-11-02 09:00:00"),
            ("13800000003", "what offer?", "2026-11-02 10:00:00"),
            ("12345", "TD", "2026-11-02 11:00:00"),
        ],
    )
    engine = Engine(workspace)

    summary = optout_from_replies(engine, workspace.pseudonymiser, replies)

    assert summary.replies == 4
    assert summary.unsubscribes == 2
    assert summary.ignored_not_unsubscribe == 1
    assert summary.invalid == 1
    first, fourth = token(workspace, "13800000001"), token(workspace, "13800000004")
    assert allowed(engine, [first, fourth], "marketing_sms") == set()
    assert allowed(engine, [first, fourth], "marketing_call") == set()
    stored = engine.table("consent_events").to_pandas().to_csv()
    assert find_raw_identifiers(stored) == {}
    assert set(engine.table("consent_events").to_pandas()["subscriber"]) == {
        first,
        fourth,
    }


def test_reading_the_same_reply_file_twice_records_nothing_new(workspace, tmp_path):
    replies = write_replies(
        tmp_path / "r.csv", [("13800000001", "STOP", "2026-11-02 08:00:00")]
    )
    engine = Engine(workspace)
    optout_from_replies(engine, workspace.pseudonymiser, replies)

    again = optout_from_replies(engine, workspace.pseudonymiser, replies)

    assert again.events_recorded == 0
    assert engine.table("consent_events").count().to_pyarrow().as_py() == 2


def _audience_tables(workspace):
    tokens = [token(workspace, n) for n in PEOPLE]
    engine = Engine(workspace)
    engine.save(
        "profiles",
        pa.table(
            {
                "subscriber": tokens,
                "age_band": ["35-44"] * 4,
                "consent_marketing": [True, True, False, True],
                "opted_out": [False, True, False, False],
            }
        ),
    )
    engine.save("tiers", pa.table({"subscriber": tokens, "tier": ["parents"] * 4}))
    return engine, tokens


def test_audience_drops_a_revoked_subscriber_without_rebuilding(workspace, tmp_path):
    engine, tokens = _audience_tables(workspace)
    before = build_audience(engine, "parents", 10, tmp_path / "a.csv")
    assert before.exported == 1  # only the first may be contacted and profiled

    record_consent(engine, [tokens[0]], "marketing_sms", False, source="app")
    with pytest.raises(ConsentError, match="none of the 4"):
        build_audience(engine, "parents", 10, tmp_path / "b.csv")


def test_audience_counts_exclusions_by_reason(workspace, tmp_path):
    engine, _ = _audience_tables(workspace)

    summary = build_audience(engine, "parents", 10, tmp_path / "a.csv")

    # second opted out; third never agreed; fourth no profiling consent.
    assert (summary.exported, summary.excluded_opted_out) == (1, 1)
    assert summary.excluded_no_consent == 2


def test_cli_grant_show_and_optout(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("TELCOREACH_ACTOR", "dpo@example")
    runner = CliRunner()
    third = token(workspace, "13800000003")
    ws = ["--workspace", str(workspace.root), "--json"]

    granted = runner.invoke(
        app, ["consent", "grant", third, "-p", "marketing_sms", *ws]
    )
    assert granted.exit_code == 0, granted.output
    assert json.loads(granted.stdout)["consented_now"] == 1

    opted = runner.invoke(app, ["optout", third, *ws])
    assert opted.exit_code == 0, opted.output

    shown = json.loads(runner.invoke(app, ["consent", "show", third, *ws]).stdout)
    assert shown["now"]["marketing_sms"]["consented"] is False
    assert [e["granted"] for e in shown["history"]][:1] == [True]
    last = json.loads(workspace.audit_path.read_text().splitlines()[-1])
    assert (last["action"], last["who"]) == ("consent show", "dpo@example")


def test_cli_refuses_unknown_purpose_in_one_line(workspace):
    result = CliRunner().invoke(
        app,
        [
            "consent",
            "grant",
            token(workspace, "13800000001"),
            "-p",
            "spam",
            "--workspace",
            str(workspace.root),
        ],
    )
    assert result.exit_code == 1
    assert "unknown consent purpose" in result.output


def test_optout_skips_and_counts_malformed_rows_and_processes_the_rest(
    workspace, tmp_path
):
    replies = tmp_path / "replies.csv"
    replies.write_text(
        "msisdn,text,received_at\n"
        "13800000001,TD,2026-11-02 08:00:00\n"
        "13912345678\n"  # one column
        "13800000003,TD,2026-11-02 08:00:00,extra\n"  # four columns
        "13800000004,STOP,2026-11-02 09:00:00\n",
        encoding="utf-8",
    )
    engine = Engine(workspace)

    summary = optout_from_replies(engine, workspace.pseudonymiser, replies)

    assert (summary.replies, summary.unsubscribes, summary.invalid) == (4, 2, 2)
    assert summary.invalid_by_reason["wrong_column_count"] == 2
    first, fourth = token(workspace, "13800000001"), token(workspace, "13800000004")
    assert allowed(engine, [first, fourth], "marketing_sms") == set()


def test_optout_counts_an_unclosed_quote_as_invalid(workspace, tmp_path):
    replies = tmp_path / "replies.csv"
    replies.write_text(
        "msisdn,text,received_at\n"
        "13800000001,TD,2026-11-02 08:00:00\n"
        '"13912345678,TD,2026-11-02 08:00:00\n',
        encoding="utf-8",
    )

    summary = optout_from_replies(Engine(workspace), workspace.pseudonymiser, replies)

    assert (summary.unsubscribes, summary.invalid) == (1, 1)


def test_optout_counts_rows_that_are_not_utf8_and_names_the_fix(workspace, tmp_path):
    replies = tmp_path / "replies.csv"
    replies.write_bytes(
        b"msisdn,text,received_at\n"
        b"13800000001,TD,2026-11-02 08:00:00\n"
        + "13800000004,退订,2026-11-02 09:00:00\n".encode("gbk")
    )

    summary = optout_from_replies(Engine(workspace), workspace.pseudonymiser, replies)

    assert (summary.unsubscribes, summary.invalid) == (1, 1)
    assert summary.invalid_by_reason["not_utf8"] == 1
    assert "iconv -f gbk -t utf-8" in summary.hint


def test_optout_error_on_a_headerless_file_does_not_echo_the_number(
    workspace, tmp_path
):
    replies = tmp_path / "replies.csv"
    replies.write_text("13912345678,TD,2026-11-02 08:00:00\n", encoding="utf-8")

    result = CliRunner().invoke(
        app, ["optout", "--replies", str(replies), "--workspace", str(workspace.root)]
    )

    assert result.exit_code == 1
    assert "expected header msisdn,text,received_at" in result.output
    assert find_raw_identifiers(result.output) == {}


def test_grant_refuses_a_token_that_no_subscriber_has(workspace):
    unknown = "a" * 24
    ws = ["--workspace", str(workspace.root)]
    runner = CliRunner()

    refused = runner.invoke(
        app, ["consent", "grant", unknown, "-p", "marketing_sms", *ws]
    )
    assert refused.exit_code == 1
    assert "--allow-unknown" in refused.output
    assert not Engine(workspace).has_table("consent_events")

    forced = runner.invoke(
        app,
        ["consent", "grant", unknown, "-p", "marketing_sms", "--allow-unknown", *ws],
    )
    assert forced.exit_code == 0, forced.output


def test_cli_at_accepts_a_time_without_seconds(workspace):
    first = token(workspace, "13800000001")
    result = CliRunner().invoke(
        app,
        [
            "consent",
            "revoke",
            first,
            "-p",
            "marketing_sms",
            "--at",
            "2026-11-02 08:00",
            "--workspace",
            str(workspace.root),
        ],
    )

    assert result.exit_code == 0, result.output
    events = Engine(workspace).table("consent_events").to_pyarrow()
    assert events.column("at").to_pylist() == [datetime(2026, 11, 2, 8, 0)]


def test_unclosed_quote_does_not_swallow_the_replies_after_it(workspace, tmp_path):
    replies = tmp_path / "replies.csv"
    replies.write_text(
        "msisdn,text,received_at\n"
        '13800000001,"TD,2026-11-02 08:00:00\n'
        "13800000002,TD,2026-11-02 08:01:00\n"
        "13800000003,退订,2026-11-02 08:02:00\n",
        encoding="utf-8",
    )

    summary = optout_from_replies(Engine(workspace), workspace.pseudonymiser, replies)

    assert (summary.replies, summary.unsubscribes, summary.invalid) == (3, 2, 1)
    assert summary.invalid_by_reason["unbalanced_quote"] == 1


def test_slash_dates_in_replies_are_bad_times_not_guesses(workspace, tmp_path):
    replies = tmp_path / "replies.csv"
    replies.write_text(
        "msisdn,text,received_at\n"
        "13800000001,TD,03/11/2026 10:00\n"
        "13800000002,TD,2026-11-03T10:00+08:00\n",
        encoding="utf-8",
    )

    summary = optout_from_replies(Engine(workspace), workspace.pseudonymiser, replies)

    assert summary.unsubscribes == 1
    assert summary.invalid_by_reason["bad_time"] == 1
