"""Fetching deliveries from a folder, a real SFTP server and a real HTTP server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paramiko
import pytest
from typer.testing import CliRunner

from sftp_server import SftpTestServer, host_key
from telcoreach.cli import app
from telcoreach.config import parse_config
from telcoreach.errors import ConfigError, DataSourceError
from telcoreach.fetch import fetch_source
from telcoreach.lake import Lake
from telcoreach.pipeline import init_workspace

PASSWORD_ENV = "TELCOREACH_TEST_FETCH_PASSWORD"


def _no_wait(_seconds: float) -> None:
    """Retries in tests do not sleep."""


def _cells_csv(rows: int, seed: int = 0) -> bytes:
    lines = ["cell_id,lac,lat,lon,radius_m,cell_type"]
    lines += [
        f"C{seed}-{i:06d},4100,{39.8 + i * 1e-5:.6f},{116.3 + i * 1e-5:.6f},500,macro"
        for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def _workspace(tmp_path: Path, fetch: dict, **source):
    config = parse_config(
        {"sources": [{"kind": "cells", "name": "cells", "fetch": fetch, **source}]},
        "test configuration",
    )
    return init_workspace(tmp_path / "ws", config)


def _inbox_files(workspace) -> dict[str, bytes]:
    folder = workspace.root / "inbox" / "cells"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    folder = tmp_path / "delivery"
    folder.mkdir()
    (folder / "cells-1.csv").write_bytes(_cells_csv(4_000, seed=1))
    (folder / "cells-2.csv").write_bytes(_cells_csv(3_000, seed=2))
    (folder / "readme.txt.part").write_bytes(b"an upload in progress")
    return folder


# --- SFTP -----------------------------------------------------------------


@pytest.fixture
def sftp(delivery: Path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    with SftpTestServer(delivery, password="s3cret") as server:
        yield server


def _sftp_settings(server: SftpTestServer, **extra) -> dict:
    return {
        "protocol": "sftp",
        "host": "127.0.0.1",
        "port": server.port,
        "path": "/",
        "username": "carrier",
        "password_env": PASSWORD_ENV,
        "pattern": "*.csv",
        "timeout_s": 5,
        "retries": 2,
        "backoff_s": 0,
        **extra,
    }


def test_sftp_fetch_copies_matching_files_byte_for_byte(tmp_path, sftp, delivery):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))

    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.fetched == ["cells-1.csv", "cells-2.csv"]
    assert _inbox_files(workspace) == {
        name: (delivery / name).read_bytes() for name in summary.fetched
    }


def test_sftp_second_fetch_downloads_nothing(tmp_path, sftp):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))
    fetch_source(workspace, "cells", sleep=_no_wait)
    reads_after_first = len(sftp.state.read_offsets)

    again = fetch_source(workspace, "cells", sleep=_no_wait)

    assert again.fetched == [] and again.skipped == 2 and again.bytes == 0
    assert len(sftp.state.read_offsets) == reads_after_first


def test_sftp_cut_connection_leaves_inbox_clean_and_rerun_resumes(
    tmp_path, sftp, delivery
):
    (delivery / "big.csv").write_bytes(_cells_csv(40_000, seed=3))
    workspace = _workspace(tmp_path, _sftp_settings(sftp, pattern="big.csv"))
    sftp.state.drop_after_bytes = 600_000
    sftp.state.drops_left = 100  # every attempt of this run is cut

    with pytest.raises(DataSourceError, match="failed after 3 attempts"):
        fetch_source(workspace, "cells", sleep=_no_wait)

    assert _inbox_files(workspace) == {}
    part = workspace.root / "fetch" / "partial" / "cells" / "big.csv.part"
    kept = part.stat().st_size
    # Each of the 3 attempts got two 256 KiB reads in and resumed the last one.
    assert kept == 3 * 2 * 262_144 < (delivery / "big.csv").stat().st_size

    sftp.state.drops_left = 0
    sftp.state.read_offsets.clear()
    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.fetched == ["big.csv"] and summary.resumed == 1
    assert _inbox_files(workspace) == {"big.csv": (delivery / "big.csv").read_bytes()}
    assert min(offset for _, offset in sftp.state.read_offsets) == kept
    assert not part.exists()


def test_sftp_dropped_connection_is_retried_within_the_run(tmp_path, sftp, delivery):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))
    sftp.state.drop_after_bytes = 30_000
    sftp.state.drops_left = 1

    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.retries == 1 and sftp.state.logins == 2
    assert _inbox_files(workspace) == {
        name: (delivery / name).read_bytes() for name in summary.fetched
    }


def test_sftp_file_changed_at_the_source_is_fetched_again(tmp_path, sftp, delivery):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))
    fetch_source(workspace, "cells", sleep=_no_wait)
    (delivery / "cells-2.csv").write_bytes(_cells_csv(3_500, seed=7))

    again = fetch_source(workspace, "cells", sleep=_no_wait)

    assert again.fetched == ["cells-2.csv"]
    assert _inbox_files(workspace)["cells-2.csv"] == _cells_csv(3_500, seed=7)
    ledger = json.loads((workspace.root / "fetch" / "ledger.json").read_text())
    assert (
        ledger["sources"]["cells"]["cells-2.csv"]["sha256"]
        == hashlib.sha256(_cells_csv(3_500, seed=7)).hexdigest()
    )


def test_sftp_wrong_password_is_a_clear_error(tmp_path, sftp, monkeypatch):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")

    with pytest.raises(DataSourceError, match="refused the login of 'carrier'"):
        fetch_source(workspace, "cells", sleep=_no_wait)
    assert _inbox_files(workspace) == {}


def test_sftp_unset_password_variable_is_a_config_error(tmp_path, sftp, monkeypatch):
    workspace = _workspace(tmp_path, _sftp_settings(sftp))
    monkeypatch.delenv(PASSWORD_ENV)

    with pytest.raises(ConfigError, match=f"\\${PASSWORD_ENV}, which is not set"):
        fetch_source(workspace, "cells", sleep=_no_wait)


def test_sftp_logs_in_with_a_key_file(tmp_path, delivery):
    key = paramiko.RSAKey.generate(2048)
    key_file = tmp_path / "id_rsa"
    key.write_private_key_file(str(key_file))
    with SftpTestServer(delivery, authorized_key=key) as server:
        settings = _sftp_settings(server, key_file=str(key_file))
        del settings["password_env"]
        workspace = _workspace(tmp_path, settings)

        summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.fetched == ["cells-1.csv", "cells-2.csv"]


def test_sftp_host_key_not_in_known_hosts_is_refused(tmp_path, sftp):
    known_hosts = tmp_path / "known_hosts"
    other = paramiko.RSAKey.generate(1024)
    known_hosts.write_text(f"[127.0.0.1]:{sftp.port} ssh-rsa {other.get_base64()}\n")
    workspace = _workspace(tmp_path, _sftp_settings(sftp, known_hosts=str(known_hosts)))

    with pytest.raises(DataSourceError, match="does not list"):
        fetch_source(workspace, "cells", sleep=_no_wait)


def test_sftp_host_key_in_known_hosts_is_accepted(tmp_path, sftp):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{sftp.port} ssh-rsa {host_key().get_base64()}\n"
    )
    workspace = _workspace(tmp_path, _sftp_settings(sftp, known_hosts=str(known_hosts)))

    assert len(fetch_source(workspace, "cells", sleep=_no_wait).fetched) == 2


# --- HTTP -----------------------------------------------------------------


class _HttpState:
    def __init__(self, root: Path, listing_hashes: bool = True) -> None:
        self.root = root
        self.listing_hashes = listing_hashes
        self.extra_names: list[str] = []
        #: SHA-256 the listing announces instead of the true one, by name.
        self.announced: dict[str, str] = {}
        self.credentials = ("carrier", "s3cret")
        self.drop_after_bytes: int | None = None
        self.drops_left = 0
        self.ranges: list[str | None] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    state: _HttpState

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _authorised(self) -> bool:
        expected = base64.b64encode(":".join(self.state.credentials).encode())
        if self.headers.get("Authorization") == f"Basic {expected.decode()}":
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="deliveries"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _files(self) -> list[Path]:
        return sorted(p for p in self.state.root.iterdir() if p.is_file())

    def do_HEAD(self) -> None:
        self.do_GET(body=False)

    def do_GET(self, body: bool = True) -> None:
        if not self._authorised():
            return
        if self.path == "/listing.json":
            items = [
                {"name": p.name, "size": p.stat().st_size, "url": f"/files/{p.name}"}
                | (
                    {
                        "sha256": self.state.announced.get(
                            p.name, hashlib.sha256(p.read_bytes()).hexdigest()
                        )
                    }
                    if self.state.listing_hashes
                    else {}
                )
                for p in self._files()
            ] + [{"name": name} for name in self.state.extra_names]
            self._send(200, json.dumps({"files": items}).encode(), "application/json")
        elif self.path == "/index/":
            links = "".join(
                f'<a href="../files/{p.name}">{p.name}</a>\n' for p in self._files()
            )
            page = f'<html><a href="../">up</a>\n{links}</html>'.encode()
            self._send(200, page, "text/html", body)
        elif self.path.startswith("/files/"):
            self._file(self.path.removeprefix("/files/"), body)
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, data: bytes, kind: str, body: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _file(self, name: str, body: bool) -> None:
        path = self.state.root / name
        if "/" in name or not path.is_file():
            self._send(404, b"not found", "text/plain")
            return
        data = path.read_bytes()
        requested = self.headers.get("Range")
        start = 0
        if body:
            self.state.ranges.append(requested)
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
            )
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        with self.state.lock:
            cut = self.state.drop_after_bytes if self.state.drops_left > 0 else None
            if cut is not None:
                self.state.drops_left -= 1
        if cut is None:
            self.wfile.write(data[start:])
            return
        # Like a broken link: part of the body, then the socket goes away.
        self.wfile.write(data[start : start + cut])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True


@pytest.fixture
def http(delivery: Path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    state = _HttpState(delivery)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _http_settings(state: _HttpState, path: str = "/listing.json", **extra) -> dict:
    return {
        "protocol": "http",
        "url": state.base + path,
        "username": "carrier",
        "password_env": PASSWORD_ENV,
        "pattern": "*.csv",
        "timeout_s": 5,
        "retries": 2,
        "backoff_s": 0,
        **extra,
    }


def test_http_second_fetch_downloads_nothing(tmp_path, http, delivery):
    workspace = _workspace(tmp_path, _http_settings(http))
    first = fetch_source(workspace, "cells", sleep=_no_wait)
    downloads = len(http.ranges)

    again = fetch_source(workspace, "cells", sleep=_no_wait)

    assert first.fetched == ["cells-1.csv", "cells-2.csv"]
    assert again.fetched == [] and len(http.ranges) == downloads
    assert _inbox_files(workspace) == {
        name: (delivery / name).read_bytes() for name in first.fetched
    }


def test_http_cut_connection_resumes_with_a_range_request(tmp_path, http, delivery):
    workspace = _workspace(tmp_path, _http_settings(http, pattern="cells-1.csv"))
    http.drop_after_bytes = 40_000
    http.drops_left = 100

    with pytest.raises(DataSourceError, match="failed after 3 attempts"):
        fetch_source(workspace, "cells", sleep=_no_wait)
    assert _inbox_files(workspace) == {}
    part = workspace.root / "fetch" / "partial" / "cells" / "cells-1.csv.part"
    assert part.stat().st_size == 3 * 40_000  # each attempt resumed the last one

    http.drops_left = 0
    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.fetched == ["cells-1.csv"] and summary.resumed == 1
    assert http.ranges == [None, "bytes=40000-", "bytes=80000-", "bytes=120000-"]
    assert _inbox_files(workspace) == {
        "cells-1.csv": (delivery / "cells-1.csv").read_bytes()
    }


def test_http_same_size_new_content_is_fetched_again(tmp_path, http, delivery):
    workspace = _workspace(tmp_path, _http_settings(http))
    fetch_source(workspace, "cells", sleep=_no_wait)
    changed = bytearray((delivery / "cells-1.csv").read_bytes())
    changed[-3] = ord("9") if changed[-3] != ord("9") else ord("8")
    (delivery / "cells-1.csv").write_bytes(bytes(changed))

    again = fetch_source(workspace, "cells", sleep=_no_wait)

    assert again.fetched == ["cells-1.csv"]
    assert _inbox_files(workspace)["cells-1.csv"] == bytes(changed)


def test_http_hash_mismatch_is_reported_as_a_changed_file_not_a_drop(
    tmp_path, http, delivery
):
    workspace = _workspace(tmp_path, _http_settings(http, pattern="cells-1.csv"))
    true_sha = hashlib.sha256((delivery / "cells-1.csv").read_bytes()).hexdigest()
    http.announced["cells-1.csv"] = "0" * 64

    with pytest.raises(DataSourceError) as raised:
        fetch_source(workspace, "cells", sleep=_no_wait)

    message = str(raised.value)
    assert "file changed or corrupted at the source" in message
    assert f"expected sha256 {'0' * 64} got {true_sha}" in message
    assert "check the connection" not in message
    assert len(http.ranges) == 2  # one retry, not settings.retries (2)
    assert _inbox_files(workspace) == {}


def test_http_wrong_password_is_a_clear_error(tmp_path, http, monkeypatch):
    workspace = _workspace(tmp_path, _http_settings(http))
    monkeypatch.setenv(PASSWORD_ENV, "wrong")

    with pytest.raises(DataSourceError, match="refused the listing with HTTP 401"):
        fetch_source(workspace, "cells", sleep=_no_wait)


def test_http_html_index_is_listed_with_head_requests(tmp_path, http, delivery):
    workspace = _workspace(tmp_path, _http_settings(http, path="/index/"))

    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.fetched == ["cells-1.csv", "cells-2.csv"]
    assert (
        _inbox_files(workspace)["cells-2.csv"]
        == (delivery / "cells-2.csv").read_bytes()
    )


def test_http_names_that_leave_the_inbox_are_skipped(tmp_path, http):
    http.extra_names = ["../escape.csv", "sub/dir.csv"]
    workspace = _workspace(tmp_path, _http_settings(http))

    summary = fetch_source(workspace, "cells", sleep=_no_wait)

    assert summary.listed == 2
    assert not (workspace.root / "inbox" / "escape.csv").exists()


# --- folder, ingest, configuration, command line ------------------------------


def test_folder_fetch_then_ingest_stores_rows_once(tmp_path, delivery):
    workspace = _workspace(
        tmp_path, {"protocol": "folder", "path": str(delivery), "pattern": "*.csv"}
    )

    first = fetch_source(workspace, "cells", ingest=True)
    again = fetch_source(workspace, "cells", ingest=True)

    assert first.ingest["rows_stored"] == 7_000
    assert again.ingest["status"] == "nothing new to ingest"
    assert sum(b.rows_stored for b in Lake(workspace.lake).batches("cells")) == 7_000


def test_fetch_ingest_takes_files_fetched_earlier_without_ingest(tmp_path, delivery):
    workspace = _workspace(
        tmp_path, {"protocol": "folder", "path": str(delivery), "pattern": "*.csv"}
    )
    fetch_source(workspace, "cells")

    summary = fetch_source(workspace, "cells", ingest=True)

    assert summary.fetched == []
    assert summary.ingest["rows_stored"] == 7_000
    again = fetch_source(workspace, "cells", ingest=True)
    assert again.ingest["status"] == "nothing new to ingest"


def test_folder_fetch_keeps_the_delivery_time_of_each_file(tmp_path, delivery):
    workspace = _workspace(
        tmp_path, {"protocol": "folder", "path": str(delivery), "pattern": "*.csv"}
    )
    delivered_ns = 1_790_000_000_123_456_789  # 2026-09-21, well before the fetch
    os.utime(delivery / "cells-1.csv", ns=(delivered_ns, delivered_ns))

    fetch_source(workspace, "cells")

    inbox = workspace.root / "inbox" / "cells"
    assert (inbox / "cells-1.csv").stat().st_mtime_ns == delivered_ns
    source_ns = (delivery / "cells-2.csv").stat().st_mtime_ns
    assert (inbox / "cells-2.csv").stat().st_mtime_ns == source_ns


def test_password_written_in_config_is_refused_without_echoing_it():
    settings = {"protocol": "sftp", "host": "h", "username": "u", "password": "pw1"}
    with pytest.raises(ConfigError, match="password_env") as raised:
        parse_config({"sources": [{"kind": "cells", "fetch": settings}]}, "config")
    assert "pw1" not in str(raised.value)


def test_sftp_without_host_names_the_missing_field():
    with pytest.raises(ConfigError, match="protocol sftp needs host"):
        parse_config(
            {
                "sources": [
                    {
                        "kind": "cells",
                        "fetch": {
                            "protocol": "sftp",
                            "username": "u",
                            "password_env": "X",
                        },
                    }
                ]
            },
            "config",
        )


def test_unknown_source_lists_the_fetchable_ones(tmp_path, delivery):
    workspace = _workspace(tmp_path, {"protocol": "folder", "path": str(delivery)})

    with pytest.raises(ConfigError, match="fetched: cells"):
        fetch_source(workspace, "signalling")


def test_cli_fetch_prints_the_summary_as_json(tmp_path, delivery):
    workspace = _workspace(
        tmp_path, {"protocol": "folder", "path": str(delivery), "pattern": "*.csv"}
    )

    result = CliRunner().invoke(
        app, ["fetch", "cells", "--workspace", str(workspace.root), "--json"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fetched"] == 2
