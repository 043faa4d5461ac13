"""A real SFTP server for tests: paramiko serving a folder on 127.0.0.1.

It can cut connections after a number of bytes, as a flaky carrier link
does, and records the offsets clients read from, so a test can tell a
resumed download from a fresh one.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

_HOST_KEY: paramiko.RSAKey | None = None


def host_key() -> paramiko.RSAKey:
    """Return the server's host key (generated once per test session)."""
    global _HOST_KEY
    if _HOST_KEY is None:
        _HOST_KEY = paramiko.RSAKey.generate(2048)
    return _HOST_KEY


@dataclass
class ServerState:
    """Knobs and observations of the test server.

    ``drop_after_bytes``: on a connection, the first read that would pass
    that many bytes served is not answered and the socket is closed;
    ``drops_left`` connections get cut this way (then none).
    """

    drop_after_bytes: int | None = None
    drops_left: int = 0
    read_offsets: list[tuple[str, int]] = field(default_factory=list)
    logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Auth(paramiko.ServerInterface):
    def __init__(self, server: SftpTestServer) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        if username == self.server.username and password == self.server.password:
            self.server.state.logins += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        allowed = self.server.authorized_key
        if username == self.server.username and allowed is not None and key == allowed:
            self.server.state.logins += 1
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Connection:
    """Bytes served on one client connection, and its socket to cut."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.served = 0


class _Handle(paramiko.SFTPHandle):
    def __init__(self, path: Path, state: ServerState, connection: _Connection):
        super().__init__()
        self.path = path
        self.state = state
        self.connection = connection
        self.readfile = path.open("rb")

    def read(self, offset: int, length: int):
        state = self.state
        with state.lock:
            state.read_offsets.append((self.path.name, offset))
            limit = state.drop_after_bytes if state.drops_left > 0 else None
        self.readfile.seek(offset)
        data = self.readfile.read(length)
        if limit is not None and self.connection.served + len(data) > limit:
            # Like a broken link: the socket goes away mid-file.
            with state.lock:
                state.drops_left -= 1
            self.connection.sock.shutdown(socket.SHUT_RDWR)
            self.connection.sock.close()
            return paramiko.SFTP_CONNECTION_LOST
        self.connection.served += len(data)
        return data

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


class _Folder(paramiko.SFTPServerInterface):
    def __init__(self, server, test_server: SftpTestServer, connection: _Connection):
        super().__init__(server)
        self.root = test_server.root.resolve()
        self.state = test_server.state
        self.connection = connection

    def _local(self, path: str) -> Path:
        local = (self.root / path.lstrip("/")).resolve()
        if local != self.root and self.root not in local.parents:
            raise PermissionError(path)
        return local

    def list_folder(self, path: str):
        try:
            folder = self._local(path)
            return [
                paramiko.SFTPAttributes.from_stat(entry.stat(), filename=entry.name)
                for entry in folder.iterdir()
            ]
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno or 13)

    def stat(self, path: str):
        try:
            return paramiko.SFTPAttributes.from_stat(self._local(path).stat())
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno or 13)

    lstat = stat

    def canonicalize(self, path: str) -> str:
        return "/" + str(self._local(path).relative_to(self.root)).lstrip(".")

    def open(self, path: str, flags: int, attr):
        if flags & (os.O_WRONLY | os.O_RDWR):
            return paramiko.SFTP_PERMISSION_DENIED
        try:
            return _Handle(self._local(path), self.state, self.connection)
        except OSError as error:
            return paramiko.SFTPServer.convert_errno(error.errno or 13)


class SftpTestServer:
    """Serve ``root`` read-only over SFTP on 127.0.0.1 at a free port.

    Use as a context manager; ``port`` is set once it has started.
    """

    def __init__(
        self,
        root: Path,
        username: str = "carrier",
        password: str = "s3cret",
        authorized_key: paramiko.PKey | None = None,
    ) -> None:
        self.root = Path(root)
        self.username = username
        self.password = password
        self.authorized_key = authorized_key
        self.state = ServerState()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SftpTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # shutdown wakes the thread blocked in accept(); close alone does not.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for transport in self._transports:
            transport.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(sock)
            transport = paramiko.Transport(sock)
            transport.add_server_key(host_key())
            transport.set_subsystem_handler(
                "sftp", paramiko.SFTPServer, _Folder, self, connection
            )
            self._transports.append(transport)
            try:
                transport.start_server(server=_Auth(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()
