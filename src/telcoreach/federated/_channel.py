"""Framed messages between the two parties over one TCP connection.

A message is a kind (``hello``, ``scores``...), a small JSON header and
optional numpy arrays and an opaque byte blob (ciphertexts). The channel
counts the bytes and messages each way, and can keep what it received so that
tests can check what a party saw.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from telcoreach.errors import ModelError

__all__ = ["Channel", "Message", "accept", "connect"]

logger = logging.getLogger(__name__)

_PREFIX = struct.Struct(">QI")
_MAX_FRAME_BYTES = 2**31
_DTYPES = {"float64": np.float64, "int64": np.int64, "bool": np.bool_}


@dataclass
class Message:
    """One received message: its kind, header, arrays and blob."""

    kind: str
    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    blob: bytes = b""


class Channel:
    """A framed, byte-counting message channel over a connected socket.

    Parameters
    ----------
    sock : socket.socket
        A connected stream socket.
    record : bool, default False
        Keep every received :class:`Message` in :attr:`received`.
    """

    def __init__(self, sock: socket.socket, record: bool = False) -> None:
        self._sock = sock
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0
        self.record = record
        self.received: list[Message] = []

    def send(
        self,
        kind: str,
        meta: dict | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        blob: bytes = b"",
    ) -> None:
        """Send one message."""
        arrays = arrays or {}
        parts = []
        described = []
        for name, values in arrays.items():
            values = np.ascontiguousarray(values)
            if values.dtype.name not in _DTYPES:
                values = values.astype(np.float64)
            described.append([name, values.dtype.name, list(values.shape)])
            parts.append(values.tobytes())
        header = json.dumps(
            {"kind": kind, "meta": meta or {}, "arrays": described, "blob": len(blob)}
        ).encode("utf-8")
        body = b"".join([header, *parts, blob])
        frame = _PREFIX.pack(len(body), len(header)) + body
        self._sock.sendall(frame)
        self.bytes_sent += len(frame)
        self.messages_sent += 1

    def receive(self, expected: str) -> Message:
        """Return the next message, which must be of kind ``expected``.

        Raises
        ------
        ModelError
            If the peer closed the connection, reported an error, or sent a
            malformed message or another kind.
        """
        prefix = self._read(_PREFIX.size, expected)
        body_bytes, header_bytes = _PREFIX.unpack(prefix)
        if body_bytes > _MAX_FRAME_BYTES or header_bytes > body_bytes:
            raise ModelError(
                f"federated peer sent a malformed frame ({body_bytes} bytes, header "
                f"{header_bytes}) while {expected!r} was expected; is the peer a "
                "telcoreach fl party of the same version?"
            )
        body = self._read(body_bytes, expected)
        self.bytes_received += _PREFIX.size + body_bytes
        self.messages_received += 1
        message = _decode(body, header_bytes, expected)
        if self.record:
            self.received.append(message)
        if message.kind == "error":
            raise ModelError(f"federated peer stopped: {message.meta.get('reason')}")
        if message.kind != expected:
            raise ModelError(
                f"federated peer sent a {message.kind!r} message where {expected!r} "
                "was expected; both parties must run the same protocol version"
            )
        return message

    def send_error(self, reason: str) -> None:
        """Tell the peer why this party stops (best effort)."""
        try:
            self.send("error", {"reason": reason})
        except OSError:
            logger.debug("could not send the error to the peer", exc_info=True)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def stats(self) -> dict:
        """Return bytes and messages each way."""
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
        }

    def _read(self, size: int, expected: str) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                chunk = self._sock.recv(min(size - len(chunks), 1 << 20))
            except TimeoutError as exc:
                raise ModelError(
                    f"federated peer sent nothing for too long while {expected!r} "
                    "was expected; is it still running?"
                ) from exc
            if not chunk:
                raise ModelError(
                    f"federated peer closed the connection while {expected!r} was "
                    "expected; see the peer's error message"
                )
            chunks.extend(chunk)
        return bytes(chunks)


def _decode(body: bytes, header_bytes: int, expected: str) -> Message:
    try:
        header = json.loads(body[:header_bytes].decode("utf-8"))
        kind, meta = str(header["kind"]), dict(header["meta"])
        offset = header_bytes
        arrays = {}
        for name, dtype, shape in header["arrays"]:
            dtype = np.dtype(_DTYPES[dtype])
            count = int(np.prod(shape, dtype=np.int64))
            size = count * dtype.itemsize
            if offset + size > len(body):
                raise ValueError("array past the end of the frame")
            values = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
            arrays[str(name)] = values.reshape(shape)
            offset += size
        blob = body[offset : offset + int(header["blob"])]
        if offset + len(blob) != len(body):
            raise ValueError("frame length does not match its header")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"federated peer sent a malformed message while {expected!r} was "
            f"expected: {exc}"
        ) from exc
    return Message(kind, meta, arrays, blob)


def accept(
    host: str, port: int, timeout_s: float, record: bool = False
) -> tuple[Channel, int]:
    """Listen on ``host:port``, wait for one peer and return its channel."""
    with socket.create_server((host, port)) as server:
        server.settimeout(timeout_s)
        bound_port = server.getsockname()[1]
        logger.info("waiting for the federated peer on %s:%d", host, bound_port)
        try:
            sock, _ = server.accept()
        except TimeoutError as exc:
            raise ModelError(
                f"no federated peer connected to {host}:{bound_port} within "
                f"{timeout_s:g} s; start the guest with --port {bound_port}"
            ) from exc
    sock.settimeout(timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Channel(sock, record), bound_port


def connect(host: str, port: int, timeout_s: float, record: bool = False) -> Channel:
    """Connect to the peer at ``host:port``, retrying until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ModelError(
                    f"cannot connect to the federated peer at {host}:{port} within "
                    f"{timeout_s:g} s ({exc}); start the host first with the same "
                    "--port"
                ) from exc
            time.sleep(0.2)
    sock.settimeout(timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Channel(sock, record)
