"""Wire format of the PSI protocol: length-prefixed, typed frames over TCP.

A frame is a 4-byte big-endian payload length, a 1-byte frame type and the
payload. JSON frames (hello, error, stream header, result) carry UTF-8 JSON;
points frames carry whole 32-byte points, at most ``batch`` per frame. A
party that is busy computing sends a ping frame every few seconds so that the
peer's receive timeout measures silence, not the length of the computation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from typing import Any, ClassVar

from telcoreach.errors import PsiError

__all__ = ["PROTOCOL", "PROTOCOL_VERSION", "Channel", "Frame"]

logger = logging.getLogger(__name__)

PROTOCOL = "telcoreach-psi"
PROTOCOL_VERSION = 1
_HEADER = 5
_MAX_PAYLOAD = 64 * 1024 * 1024
_PING_INTERVAL_S = 2.0


class Frame:
    """Frame types (one byte on the wire)."""

    HELLO = 1
    ERROR = 2
    PING = 3
    READY = 4
    STREAM = 5
    POINTS = 6
    RESULT = 7

    NAMES: ClassVar[dict[int, str]] = {
        1: "hello",
        2: "error",
        3: "ping",
        4: "ready",
        5: "stream",
        6: "points",
        7: "result",
    }


class Channel:
    """One PSI connection: framed sends and receives, byte counts, pings.

    Parameters
    ----------
    sock : socket.socket
        A connected TCP socket.
    peer : str
        ``host:port`` of the other party, for messages.
    timeout_s : float
        Longest silence (no frame, not even a ping) accepted from the peer.
    """

    def __init__(self, sock: socket.socket, peer: str, timeout_s: float) -> None:
        self.sock = sock
        self.peer = peer
        self.timeout_s = timeout_s
        self.bytes_sent = 0
        self.bytes_received = 0
        self._last_send = time.monotonic()
        sock.settimeout(timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ------------------------------------------------------------ sending

    def send(self, frame_type: int, payload: bytes = b"") -> None:
        """Send one frame."""
        header = len(payload).to_bytes(4, "big") + bytes([frame_type])
        try:
            self.sock.sendall(header + payload if len(payload) < 65536 else header)
            if len(payload) >= 65536:
                self.sock.sendall(payload)
        except TimeoutError:
            raise PsiError(
                f"the peer {self.peer} did not read for {self.timeout_s:g} s "
                "(timeout); it may have stopped; raise --timeout if it is slow"
            ) from None
        except OSError as error:
            raise PsiError(
                f"cannot send to the peer {self.peer}: {error.strerror or error}; "
                "it closed the connection, see its own error message"
            ) from None
        self.bytes_sent += _HEADER + len(payload)
        self._last_send = time.monotonic()

    def send_json(self, frame_type: int, message: dict[str, Any]) -> None:
        """Send a JSON frame."""
        self.send(frame_type, json.dumps(message, sort_keys=True).encode())

    def send_error(self, message: str) -> None:
        """Tell the peer why this side stops; never fails."""
        # Best effort: the peer may already be gone, and this side's own
        # error is what the caller reports.
        with contextlib.suppress(PsiError):
            self.send_json(Frame.ERROR, {"error": message})

    def ping_if_due(self) -> None:
        """Send a ping when nothing has been sent for a while."""
        if time.monotonic() - self._last_send >= _PING_INTERVAL_S:
            self.send(Frame.PING)

    def send_points(self, name: str, points: bytes, width: int, batch: int) -> None:
        """Send a named stream of fixed-width points in frames of ``batch``."""
        items = len(points) // width
        self.send_json(Frame.STREAM, {"name": name, "items": items, "width": width})
        step = batch * width
        view = memoryview(points)
        for start in range(0, len(points), step):
            self.send(Frame.POINTS, bytes(view[start : start + step]))

    # ---------------------------------------------------------- receiving

    def _read_exactly(self, size: int, waiting_for: str) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                count = self.sock.recv_into(view[got:], size - got)
            except TimeoutError:
                raise PsiError(
                    f"the peer {self.peer} sent nothing for {self.timeout_s:g} s "
                    f"while this side waited for {waiting_for} (timeout); it may "
                    "have stopped or be overloaded; raise --timeout if it is slow"
                ) from None
            except OSError as error:
                raise PsiError(
                    f"connection to the peer {self.peer} failed while waiting for "
                    f"{waiting_for}: {error.strerror or error}"
                ) from None
            if count == 0:
                raise PsiError(
                    f"the peer {self.peer} closed the connection while this side "
                    f"waited for {waiting_for}; see the peer's own error message"
                )
            got += count
        self.bytes_received += size
        return bytes(buffer)

    def receive(self, expected: int) -> bytes:
        """Return the payload of the next frame, which must be of type ``expected``.

        Pings are skipped; an error frame from the peer becomes a
        :class:`PsiError` with the peer's message.
        """
        waiting_for = f"a {Frame.NAMES[expected]} frame"
        while True:
            header = self._read_exactly(_HEADER, waiting_for)
            length = int.from_bytes(header[:4], "big")
            frame_type = header[4]
            if frame_type not in Frame.NAMES or length > _MAX_PAYLOAD:
                raise PsiError(
                    f"the peer {self.peer} sent bytes that are not a {PROTOCOL} "
                    f"frame (type {frame_type}, length {length}); expected a "
                    f"telcoreach PSI peer of protocol version {PROTOCOL_VERSION}"
                )
            payload = self._read_exactly(length, waiting_for) if length else b""
            if frame_type == Frame.PING:
                continue
            if frame_type == Frame.ERROR:
                message = _decode_json(payload, self.peer).get("error", "no reason")
                raise PsiError(f"the peer {self.peer} stopped: {message}")
            if frame_type != expected:
                raise PsiError(
                    f"the peer {self.peer} sent a {Frame.NAMES[frame_type]} frame "
                    f"where a {Frame.NAMES[expected]} frame was expected; the two "
                    "sides run different protocol steps (versions or modes differ)"
                )
            return payload

    def receive_json(self, expected: int) -> dict[str, Any]:
        """Return the next frame, of type ``expected``, decoded from JSON."""
        return _decode_json(self.receive(expected), self.peer)

    def receive_points(self, name: str, items: int, width: int) -> bytes:
        """Return the named stream of ``items`` points of ``width`` bytes."""
        header = self.receive_json(Frame.STREAM)
        if (
            header.get("name") != name
            or header.get("items") != items
            or header.get("width") != width
        ):
            raise PsiError(
                f"the peer {self.peer} announced stream {header}; expected "
                f"{{'name': {name!r}, 'items': {items}, 'width': {width}}}"
            )
        parts = []
        received = 0
        while received < items * width:
            payload = self.receive(Frame.POINTS)
            if len(payload) % width or received + len(payload) > items * width:
                raise PsiError(
                    f"the peer {self.peer} sent a points frame of {len(payload)} "
                    f"bytes in stream {name!r}; expected whole {width}-byte points, "
                    f"{items} in all"
                )
            parts.append(payload)
            received += len(payload)
        return b"".join(parts)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):  # already closed by the peer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _decode_json(payload: bytes, peer: str) -> dict[str, Any]:
    try:
        message = json.loads(payload.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        message = None
    if not isinstance(message, dict):
        raise PsiError(
            f"the peer {peer} sent a malformed JSON frame; expected a telcoreach "
            f"PSI peer of protocol version {PROTOCOL_VERSION}"
        )
    return message
