"""Fetch throughput on this machine: folder, SFTP and HTTP, all on 127.0.0.1.

Run with ``.venv/bin/python benchmarks/fetch.py [--megabytes N] [--files F]``.

F files of N/F MB each are served from a temporary folder by the test SFTP
server (paramiko, ``tests/sftp_server.py``) and by Python's ``http.server``
(its HTML folder listing), and fetched into fresh workspaces; each line shows
the wall time and MB/s of a first fetch (everything new) and of a second one
(nothing new: listing only). Both ends run in this one Python process, so the
figures are a floor for a real link, not a ceiling.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from telcoreach.config import parse_config
from telcoreach.fetch import fetch_source
from telcoreach.pipeline import init_workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sftp_server import SftpTestServer

_PASSWORD_ENV = "TELCOREACH_BENCH_PASSWORD"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _run(label: str, root: Path, settings: dict, megabytes: float) -> None:
    config = parse_config(
        {"sources": [{"kind": "signalling", "name": "drop", "fetch": settings}]},
        label,
    )
    workspace = init_workspace(root / label, config)
    for attempt in ("first", "second"):
        started = time.perf_counter()
        summary = fetch_source(workspace, "drop")
        seconds = time.perf_counter() - started
        rate = summary.bytes / 1e6 / seconds
        print(
            f"{label:<8}{attempt:<8}{len(summary.fetched):>6}{seconds:>9.2f}"
            f"{rate:>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=64)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    os.environ[_PASSWORD_ENV] = "bench"

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        delivery = root / "delivery"
        delivery.mkdir()
        size = int(args.megabytes * 1e6 / args.files)
        for number in range(args.files):
            (delivery / f"events-{number:03d}.csv").write_bytes(os.urandom(size))
        print(f"{args.files} files of {size / 1e6:.1f} MB")
        print(f"{'channel':<8}{'fetch':<8}{'files':>6}{'seconds':>9}{'MB/s':>9}")

        _run("folder", root, {"protocol": "folder", "path": str(delivery)}, 0)

        with SftpTestServer(delivery, password="bench") as server:
            sftp = {
                "protocol": "sftp",
                "host": "127.0.0.1",
                "port": server.port,
                "path": "/",
                "username": "carrier",
                "password_env": _PASSWORD_ENV,
            }
            _run("sftp", root, sftp, 0)

        handler = functools.partial(_QuietHandler, directory=str(delivery))
        http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{http.server_address[1]}/"
            _run("http", root, {"protocol": "http", "url": url}, 0)
        finally:
            http.shutdown()
            http.server_close()


if __name__ == "__main__":
    main()
