"""An SFTP server as a delivery channel (paramiko)."""

from __future__ import annotations

import logging
import posixpath
import socket
import stat
from pathlib import Path
from typing import BinaryIO

import paramiko

from telcoreach.errors import DataSourceError
from telcoreach.fetch._remote import RemoteFile, TransferInterruptedError

__all__ = ["SftpTransport"]

logger = logging.getLogger(__name__)

#: Bytes per read request. Reads are sequential (one request in flight), so
#: a dropped connection loses nothing already received; the rate is at most
#: this much per round trip.
_BLOCK = 1 << 18


class SftpTransport:
    """Read files from one folder of an SFTP server.

    Parameters
    ----------
    host, port : str, int
        Server address.
    username : str
        Login name.
    folder : str
        Remote folder of the deliveries.
    password : str or None
        Password, or the passphrase of ``key_file`` when both are given.
    key_file : Path or None
        Private key (RSA, ECDSA or Ed25519) used instead of a password.
    known_hosts : Path or None
        OpenSSH ``known_hosts`` file; the server's host key must be listed.
        Without it the key is not checked and a warning is logged.
    timeout_s : float
        Connect, login and read timeout.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        folder: str,
        *,
        password: str | None,
        key_file: Path | None,
        known_hosts: Path | None,
        timeout_s: float,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.folder = folder
        self._password = password
        self.key_file = key_file
        self.known_hosts = known_hosts
        self.timeout_s = timeout_s
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def _where(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}"

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        try:
            sock = socket.create_connection(
                (self.host, self.port), timeout=self.timeout_s
            )
        except OSError as error:
            raise TransferInterruptedError(
                f"cannot reach {self._where}: {error}"
            ) from None
        # Without it, Nagle's algorithm and delayed ACKs add ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.timeout_s
        transport.auth_timeout = self.timeout_s
        try:
            transport.start_client(timeout=self.timeout_s)
            self._check_host_key(transport)
            self._login(transport)
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, EOFError, OSError) as error:
            transport.close()
            if isinstance(error, paramiko.AuthenticationException):
                raise self._login_refused() from None
            raise TransferInterruptedError(f"{self._where}: {error}") from None
        except BaseException:
            transport.close()
            raise
        sftp.get_channel().settimeout(self.timeout_s)
        self._transport, self._sftp = transport, sftp
        return sftp

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        key = transport.get_remote_server_key()
        fingerprint = key.fingerprint
        if self.known_hosts is None:
            logger.warning(
                "%s: host key %s not verified; set fetch.known_hosts to check it",
                self._where,
                fingerprint,
            )
            return
        known = paramiko.HostKeys()
        try:
            known.load(str(self.known_hosts))
        except OSError as error:
            raise DataSourceError(
                f"cannot read known_hosts file {self.known_hosts}: {error.strerror}"
            ) from None
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        if not known.check(name, key):
            raise DataSourceError(
                f"{self._where} presented host key {fingerprint}, which "
                f"{self.known_hosts} does not list for {name}; if the server's key "
                "really changed, update known_hosts (e.g. with ssh-keyscan)"
            )

    def _login(self, transport: paramiko.Transport) -> None:
        if self.key_file is not None:
            try:
                key = paramiko.PKey.from_path(self.key_file, password=self._password)
            except (OSError, paramiko.SSHException, ValueError) as error:
                raise DataSourceError(
                    f"cannot load private key {self.key_file} ({error}); expected "
                    "an OpenSSH or PEM private key, with its passphrase in the "
                    "variable named by fetch.password_env if it has one"
                ) from None
            transport.auth_publickey(self.username, key)
        else:
            transport.auth_password(self.username, self._password or "")

    def _login_refused(self) -> DataSourceError:
        how = f"key {self.key_file}" if self.key_file else "password"
        return DataSourceError(
            f"{self._where} refused the login of {self.username!r} with the "
            f"{how}: expected valid credentials, found them rejected; check the "
            "variable named by fetch.password_env, fetch.username and fetch.key_file"
        )

    def list_files(self) -> list[RemoteFile]:
        """Return the regular files in the remote folder."""
        sftp = self._connect()
        try:
            entries = sftp.listdir_attr(self.folder)
        except FileNotFoundError:
            raise DataSourceError(
                f"{self._where} has no folder {self.folder!r}; check fetch.path"
            ) from None
        except PermissionError:
            raise DataSourceError(
                f"{self._where} denies listing {self.folder!r}; check fetch.path "
                "and the account's rights"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            self.reset()
            raise TransferInterruptedError(f"{self._where}: {error}") from None
        return [
            RemoteFile(
                name=entry.filename,
                size=entry.st_size,
                version=str(entry.st_mtime),
                sha256=None,
                location=posixpath.join(self.folder, entry.filename),
            )
            for entry in entries
            if entry.st_mode is not None and stat.S_ISREG(entry.st_mode)
        ]

    def download(self, remote: RemoteFile, sink: BinaryIO, offset: int) -> None:
        """Append the remote file's bytes from ``offset`` to ``sink``."""
        sftp = self._connect()
        try:
            with sftp.open(remote.location, "rb") as source:
                source.seek(offset)
                # paramiko asks 32 KiB per request by default; servers answer
                # up to 256 KiB (OpenSSH) or return less, which reads handle.
                source.MAX_REQUEST_SIZE = _BLOCK
                while block := source.read(_BLOCK):
                    sink.write(block)
        except FileNotFoundError:
            raise DataSourceError(
                f"{remote.name} disappeared from {self._where} while being fetched"
            ) from None
        except PermissionError:
            raise DataSourceError(
                f"{self._where} denies reading {remote.location!r}"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            self.reset()
            raise TransferInterruptedError(f"{self._where}: {error}") from None

    def reset(self) -> None:
        """Close the connection; the next call opens a new one."""
        self.close()

    def close(self) -> None:
        """Close the SFTP session and its SSH transport."""
        if self._sftp is not None:
            self._sftp.close()
        if self._transport is not None:
            self._transport.close()
        self._sftp = self._transport = None
