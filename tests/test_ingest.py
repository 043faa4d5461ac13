"""Ingest: validation, quarantine, pseudonymisation, idempotence, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from telcoreach.engine import Engine
from telcoreach.errors import DataSourceError
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.lake import Lake
from telcoreach.pipeline import init_workspace

HEADER = "msisdn,imsi,imei,event_time,lac,cell_id,event_type\n"
GOOD = [
    "13812345678,460001234567890,356938035643809,2026-11-02 08:00:00,4101,c1,attach",
    "13812345678,460001234567890,356938035643809,2026-11-02 08:30:00,4101,c2,handover",
    "13912345678,,,2026-11-03 09:00:00,,c3,call",
]


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path):
    return init_workspace(tmp_path / "ws")


def ingest(workspace, kind, *paths):
    return ingest_batch(workspace, kind, file_sources(kind, list(paths)))


def test_good_rows_are_stored_with_tokens_instead_of_ids(workspace, tmp_path):
    summary = ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD))

    stored = Engine(workspace).lake("signalling").to_pandas()
    assert summary.rows_stored == 3
    assert summary.rows_quarantined == 0
    assert {"subscriber", "imsi_token", "imei_token", "tac"} <= set(stored.columns)
    assert not {"msisdn", "imsi", "imei"} & set(stored.columns)
    assert stored["subscriber"].str.fullmatch(r"[a-z2-7]{24}").all()
    assert stored["tac"].dropna().unique().tolist() == ["35693803"]


def test_same_key_and_id_give_same_token_across_batches(workspace, tmp_path):
    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD[:1]))
    ingest(workspace, "signalling", write(tmp_path / "b.csv", GOOD[1:2]))

    stored = Engine(workspace).lake("signalling").to_pandas()
    assert stored["subscriber"].nunique() == 1


def test_rerun_of_same_batch_adds_no_rows(workspace, tmp_path):
    path = write(tmp_path / "a.csv", GOOD)
    ingest(workspace, "signalling", path)

    again = ingest(workspace, "signalling", path)

    assert again.status == "already ingested"
    assert again.rows_stored == 0
    assert Engine(workspace).lake("signalling").count().execute() == 3


def test_row_already_in_lake_is_quarantined_not_double_counted(workspace, tmp_path):
    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD))

    late = ingest(workspace, "signalling", write(tmp_path / "late.csv", GOOD[:1]))

    assert late.rows_stored == 0
    assert late.quarantined == {"duplicate: same key as a row already in the lake": 1}
    assert Engine(workspace).lake("signalling").count().execute() == 3


def test_bad_rows_are_quarantined_with_file_line_and_reason(workspace, tmp_path):
    lines = [
        GOOD[0],
        GOOD[0],  # duplicate
        "1381234567,,,2026-11-02 08:05:00,,c2,handover",  # short msisdn
        "13912345678,,,not a time,,c3,call",
        "13912345678,,,2026-11-03 09:10:00,,c3,teleport",
        "13912345678,,,2026-11-03 09:20:00,c3,call",  # a column short
        ",,,2026-11-03 09:30:00,,c3,call",  # msisdn missing
    ]
    summary = ingest(workspace, "signalling", write(tmp_path / "a.csv", lines))

    quarantine = Engine(workspace).quarantine("signalling").to_pandas()
    by_line = dict(zip(quarantine["line"], quarantine["reason"], strict=True))
    assert summary.rows_in == 7
    assert summary.rows_stored == 1
    assert by_line[3].startswith("duplicate")
    assert by_line[4].startswith("msisdn: malformed identifier")
    assert by_line[5].startswith("event_time: expected a time")
    assert by_line[6].startswith("event_type: expected one of")
    assert by_line[7] == "row has the wrong number of columns"
    assert by_line[8] == "msisdn: required value missing"
    assert set(quarantine["source_file"]) == {"a.csv"}


def test_quarantine_never_holds_a_raw_identifier(workspace, tmp_path):
    lines = [
        "1381234567,460001234567890,356938035643809,bad,,c2,handover",
        "13912345678,,,2026-11-03 09:20:00,c3,call",
    ]
    ingest(workspace, "signalling", write(tmp_path / "a.csv", lines))

    text = Engine(workspace).quarantine().to_pandas().to_csv()
    for raw in ("1381234567", "460001234567890", "356938035643809", "13912345678"):
        assert raw not in text


def test_garbage_file_is_quarantined_and_nothing_stored(workspace, tmp_path):
    garbage = tmp_path / "junk.csv"
    garbage.write_bytes(b"\x00\x01\xff not a csv\nsecond line\n")

    summary = ingest(workspace, "signalling", garbage)

    assert summary.status == "nothing stored"
    assert summary.rows_quarantined == 2
    assert "file header does not match kind signalling" in next(
        iter(summary.quarantined)
    )


def test_missing_input_names_the_path(tmp_path):
    with pytest.raises(DataSourceError, match=r"does-not-exist\.csv does not exist"):
        file_sources("signalling", [tmp_path / "does-not-exist.csv"])


def test_failure_during_commit_leaves_lake_unchanged(workspace, tmp_path, monkeypatch):
    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD[:1]))
    before = Lake(workspace.lake).manifest_path.read_bytes()
    moves_done = []
    real_replace = os.replace

    def crash_after_first_move(source, target):
        if str(target).endswith(".parquet") and moves_done:
            raise KeyboardInterrupt("killed mid-commit")
        moves_done.append(target)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_after_first_move)
    with pytest.raises(KeyboardInterrupt):
        ingest(workspace, "signalling", write(tmp_path / "b.csv", GOOD[1:]))
    monkeypatch.undo()

    assert Lake(workspace.lake).manifest_path.read_bytes() == before
    assert Engine(workspace).lake("signalling").count().execute() == 1
    retry = ingest(workspace, "signalling", tmp_path / "b.csv")
    assert retry.rows_stored == 2
    assert Engine(workspace).lake("signalling").count().execute() == 3


def test_killed_ingest_process_leaves_lake_readable_and_unchanged(workspace, tmp_path):
    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD))
    manifest = Lake(workspace.lake).manifest_path
    before = manifest.read_bytes()
    big = tmp_path / "big.csv"
    rows = [
        f"13{i % 10}{i:08d},,,2026-11-04 {i % 24:02d}:{i % 60:02d}:00,,c{i % 50},data"
        for i in range(400_000)
    ]
    write(big, rows)

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telcoreach.cli",
            "ingest",
            "signalling",
            str(big),
            "--workspace",
            str(workspace.root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert manifest.read_bytes() == before
    assert Engine(workspace).lake("signalling").count().execute() == 3
    for path in Lake(workspace.lake).files("signalling"):
        pq.read_metadata(path)


def test_reference_kind_keeps_newest_version_of_each_key(workspace, tmp_path):
    header = "cell_id,lac,lat,lon,radius_m,cell_type\n"
    ingest(
        workspace,
        "cells",
        write(tmp_path / "c1.csv", ["c1,1,39.9,116.4,500,macro"], header),
    )
    ingest(
        workspace,
        "cells",
        write(tmp_path / "c2.csv", ["c1,1,39.95,116.4,300,indoor"], header),
    )

    cells = Engine(workspace).lake("cells").to_pandas()

    assert len(cells) == 1
    assert cells.loc[0, "cell_type"] == "indoor"


def test_personal_data_in_search_text_and_host_is_masked(workspace, tmp_path):
    header = (
        "msisdn,start_time,end_time,app_name,app_category,search_keywords,"
        "bytes_up,bytes_down,host,cell_id\n"
    )
    row = (
        "13812345678,2026-11-02 08:00:00,2026-11-02 08:05:00,baidu,search,"
        "call me 13987654321 or 460001234567890,1,1,h13911112222.example.com,c1"
    )
    summary = ingest(workspace, "dpi", write(tmp_path / "dpi.csv", [row], header))

    stored = Engine(workspace).lake("dpi").to_pandas()

    assert stored.loc[0, "search_keywords"] == "call me <mobile> or <imsi>"
    assert summary.pii_masked["mobile"] >= 1 and summary.pii_masked["imsi"] == 1
    assert "13911112222" not in stored.loc[0, "host"]


def test_lost_key_is_refused_instead_of_splitting_subscribers(workspace, tmp_path):
    from telcoreach.errors import PrivacyError
    from telcoreach.workspace import Workspace

    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD[:1]))
    workspace.key_path.unlink()

    with pytest.raises(PrivacyError, match=r"key of workspace .* is missing"):
        _ = Workspace.open(workspace.root).pseudonymiser
    assert not workspace.key_path.exists()


def test_different_key_is_refused(workspace, tmp_path, monkeypatch):
    from telcoreach.errors import PrivacyError
    from telcoreach.workspace import Workspace

    ingest(workspace, "signalling", write(tmp_path / "a.csv", GOOD[:1]))
    monkeypatch.setenv("TELCOREACH_KEY", "cd" * 32)

    with pytest.raises(PrivacyError, match="is not the one workspace"):
        _ = Workspace.open(workspace.root).pseudonymiser


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(DataSourceError, match="no data files"):
        file_sources("signalling", [tmp_path / "empty"])


DPI_HEADER = (
    "msisdn,start_time,end_time,app_name,app_category,search_keywords,"
    "bytes_up,bytes_down,host,cell_id\n"
)
DPI_ROW = "13812345678,2026-11-02 08:00:00,2026-11-02 08:05:00,{app},social,,1,2,h,c1"


def test_gbk_file_is_one_clear_error_and_leaves_no_staging(workspace, tmp_path):
    good = write(tmp_path / "2026-11-01.csv", [DPI_ROW.format(app="wx")], DPI_HEADER)
    rows = [DPI_ROW.format(app="app"), DPI_ROW.format(app="微信")]
    data = (DPI_HEADER + "\n".join(rows) + "\n").encode("gbk")
    gbk = tmp_path / "2026-11-02.csv"
    gbk.write_bytes(data)
    # 微 is, by accident, a valid UTF-8 pair in GBK; 信 is not.
    offset = data.index("信".encode("gbk"))

    with pytest.raises(DataSourceError) as raised:
        ingest(workspace, "dpi", good, gbk)

    message = str(raised.value)
    assert f"{gbk} is not UTF-8 text: invalid byte at line 3 (byte offset " in message
    assert f"(byte offset {offset})" in message
    assert f"iconv -f gbk -t utf-8 {gbk} > {gbk}.utf8" in message
    assert "13812345678" not in message and "微" not in message
    lake = Lake(workspace.lake)
    assert lake.batches() == []
    assert not list((workspace.lake / "_staging").glob("*"))
    assert not list(workspace.lake.rglob("*.parquet"))


def test_wrong_kind_file_error_names_top_reason_with_count(workspace, tmp_path):
    from telcoreach.pipeline import run_ingest

    signalling = write(tmp_path / "2026-11-02.csv", GOOD)

    with pytest.raises(DataSourceError) as raised:
        run_ingest(workspace, "dpi", [signalling])

    # Every line of a file with the wrong header is quarantined: header + 3.
    message = str(raised.value)
    assert "no row of dpi could be stored: all 4 rows went to the quarantine" in (
        message
    )
    assert "file header does not match kind dpi: missing start_time" in message
    assert message.endswith("(4 rows)")
    assert Engine(workspace).quarantine("dpi").count().to_pyarrow().as_py() == 4


def test_header_only_file_says_it_has_no_data_rows(workspace, tmp_path):
    from telcoreach.pipeline import run_ingest

    path = tmp_path / "2026-11-02.csv"
    path.write_text(HEADER, encoding="utf-8")

    with pytest.raises(DataSourceError, match=r"file 2026-11-02\.csv has no data rows"):
        run_ingest(workspace, "signalling", [path])

    assert Lake(workspace.lake).batches() == []
    write(path, GOOD)  # delivered in full later: not skipped as already seen
    assert run_ingest(workspace, "signalling", [path])["rows_stored"] == 3
