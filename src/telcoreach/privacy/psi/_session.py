"""One PSI session between a serving and a joining party (see docs/psi.md).

Steps, each party with its own secret scalar (``s`` serving, ``j`` joining)
and its identifiers shuffled by a fresh random permutation:

1. hello: protocol, version, curve, identifier kind and mode must agree;
2. each party computes its blinded set ``[own] H(id)`` (``H`` hashes to the
   curve) and, once both are ready, they swap these sets;
3. each party re-blinds the peer's set: ``[own][peer] H(id)``;
4. membership mode: the serving party returns the joiner's doubly-blinded
   values in the joiner's order, the joiner returns the server's in the
   server's order, and each side matches its own items against the other
   side's doubly-blinded set. Cardinality-only mode: the serving party returns
   the joiner's doubly-blinded values shuffled again, so the joiner can count
   the matches but not tell which of its items they are; it reports the count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from telcoreach.errors import DataSourceError, PsiError
from telcoreach.privacy._scan import mask_digit_runs
from telcoreach.privacy._tokens import normalise_identifiers
from telcoreach.privacy.psi._curves import (
    CURVES,
    POINT_BYTES,
    CurvePool,
    hash_domain,
    new_scalar,
)
from telcoreach.privacy.psi._wire import PROTOCOL, PROTOCOL_VERSION, Channel, Frame

__all__ = ["IDENTIFIER_KINDS", "PsiInput", "join_psi", "read_identifiers", "serve_psi"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

#: Identifier kinds that can be matched, with the full-match pattern a
#: normalised identifier must have and the token column written for it.
IDENTIFIER_KINDS: dict[str, tuple[str, str]] = {
    "msisdn": (r"^1[3-9][0-9]{9}$", "subscriber"),
    "imsi": (r"^460[0-9]{12}$", "imsi_token"),
    "imei": (r"^[0-9]{15}$", "imei_token"),
}
#: Bytes of a doubly-blinded value kept for matching: a false match among
#: 10^7 x 10^7 pairs has probability below 2^-80.
_MATCH_BYTES = 16
DEFAULT_BATCH = 65536
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PsiInput:
    """Distinct, normalised identifiers of one party, with their input rows."""

    kind: str
    identifiers: pa.StringArray
    rows: np.ndarray
    input_rows: int
    invalid_rows: int
    duplicate_rows: int
    source: str


def read_identifiers(
    path: Path, column: str = "msisdn", kind: str = "msisdn"
) -> PsiInput:
    """Return the distinct valid identifiers of one CSV column as a :class:`PsiInput`.

    Identifiers are normalised as for tokens (an MSISDN to its 11 digits);
    rows whose value is empty or not a valid identifier of ``kind`` are
    counted, not used; a repeated identifier is used once (its first row).

    Raises
    ------
    DataSourceError
        If the file cannot be parsed or has no column ``column``.
    PsiError
        If ``kind`` is not a known identifier kind.
    """
    if kind not in IDENTIFIER_KINDS:
        raise PsiError(
            f"unknown identifier kind {kind!r}; expected one of "
            f"{', '.join(IDENTIFIER_KINDS)}"
        )
    path = Path(path)
    try:
        table = pv.read_csv(
            path,
            convert_options=pv.ConvertOptions(
                include_columns=[column], column_types={column: pa.string()}
            ),
        )
    except (pa.ArrowInvalid, KeyError) as error:
        # Messages quote file content, which may hold identifiers: mask digits.
        header = ""
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as handle:
                header = mask_digit_runs(handle.readline().strip())
        if header and column not in [c.strip() for c in header.split(",")]:
            raise DataSourceError(
                f"{path} has no column {column!r}; found columns {header!r}; "
                "name the identifier column with --column"
            ) from None
        reason = mask_digit_runs(str(error).splitlines()[0])
        raise DataSourceError(f"cannot read {path} as CSV: {reason}") from None
    values = table.column(column).combine_chunks()
    normalised = normalise_identifiers(kind, values)
    pattern = IDENTIFIER_KINDS[kind][0]
    valid = pc.fill_null(pc.match_substring_regex(normalised, pattern), False)
    valid_rows = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
    encoded = pc.dictionary_encode(normalised.filter(valid))
    _, first = np.unique(encoded.indices.to_numpy(), return_index=True)
    first.sort()
    identifiers = normalised.filter(valid).take(pa.array(first))
    return PsiInput(
        kind=kind,
        identifiers=identifiers,
        rows=valid_rows[first] + 1,
        input_rows=len(values),
        invalid_rows=len(values) - len(valid_rows),
        duplicate_rows=len(valid_rows) - len(first),
        source=path.name,
    )


def sharing_purpose(enterprise: str | None, purpose: str) -> str | None:
    """Return the consent purpose that sharing with the peer needs, or None.

    ``enterprise`` names the partner (``sharing:<enterprise>``); without it a
    ``purpose`` that is itself a sharing purpose is used.
    """
    from telcoreach.privacy._consent import check_purpose

    if enterprise is not None and enterprise.strip():
        return check_purpose(f"sharing:{enterprise.strip()}")
    if purpose.startswith("sharing:"):
        return check_purpose(purpose)
    return None


def _subscribers_of(workspace, kind: str, tokens: pa.Array) -> pa.Array:
    """Return the subscriber token of each identifier token (null if unknown)."""
    if kind == "msisdn":
        return tokens
    from telcoreach.engine import Engine

    column = IDENTIFIER_KINDS[kind][1]
    engine = Engine(workspace)
    try:
        if not engine.has_lake("subscribers"):
            return pa.nulls(len(tokens), pa.string())
        records = engine.lake("subscribers")
        if column not in records.columns:
            return pa.nulls(len(tokens), pa.string())
        pairs = (
            records.filter(records[column].notnull())
            .select(column, "subscriber")
            .distinct(on=column)
            .to_pyarrow()
        )
    finally:
        engine.close()
    where = pc.index_in(tokens, value_set=pairs.column(column).combine_chunks())
    return pc.take(pairs.column("subscriber").combine_chunks(), where)


def exclude_withheld(
    workspace, own: PsiInput, purpose: str | None
) -> tuple[PsiInput, dict[str, int]]:
    """Drop identifiers of erased subscribers and of those not consenting.

    Runs before the protocol, so the peer never learns that these people are
    customers. An identifier is dropped when its token (or its subscriber's
    token) is on the workspace's forget list, or, when ``purpose`` is given,
    when its subscriber does not consent to ``purpose`` now (an identifier
    that belongs to no known subscriber has no consent).

    Returns
    -------
    tuple
        The remaining input and the counts ``excluded_erased`` and
        ``excluded_no_consent``.
    """
    import ibis

    from telcoreach.engine import Engine
    from telcoreach.privacy._consent import consented

    counts = {"excluded_erased": 0, "excluded_no_consent": 0}
    forgotten = pa.array(sorted(workspace.forgotten_tokens()), pa.string())
    if purpose is None and not len(forgotten):
        return own, counts
    tokens = workspace.pseudonymiser.tokenise(own.kind, own.identifiers)
    subscribers = _subscribers_of(workspace, own.kind, tokens)
    erased = pc.fill_null(
        pc.or_(
            pc.is_in(tokens, value_set=forgotten),
            pc.is_in(subscribers, value_set=forgotten),
        ),
        False,
    )
    keep = pc.invert(erased)
    counts["excluded_erased"] = pc.sum(erased).as_py() or 0
    if purpose is not None:
        candidates = pc.unique(pc.filter(subscribers, keep).drop_null())
        engine = Engine(workspace)
        try:
            people = ibis.memtable(pa.table({"subscriber": candidates}))
            allowed = consented(engine, people, purpose).to_pyarrow()
        finally:
            engine.close()
        agreed = pc.fill_null(
            pc.is_in(subscribers, value_set=allowed.column("subscriber")), False
        )
        withheld = pc.and_(keep, pc.invert(agreed))
        counts["excluded_no_consent"] = pc.sum(withheld).as_py() or 0
        keep = pc.and_(keep, agreed)
    mask = keep.to_numpy(zero_copy_only=False)
    remaining = PsiInput(
        kind=own.kind,
        identifiers=own.identifiers.filter(keep),
        rows=own.rows[mask],
        input_rows=own.input_rows,
        invalid_rows=own.invalid_rows,
        duplicate_rows=own.duplicate_rows,
        source=own.source,
    )
    return remaining, counts


def _secure_permutation(size: int) -> np.ndarray:
    """Return a uniformly random permutation drawn from the OS random source."""
    keys = np.frombuffer(os.urandom(8 * size), dtype=np.uint64)
    return np.argsort(keys, kind="stable")


def _matches(own: bytes, other: bytes) -> np.ndarray:
    """Return, for each 16-byte value of ``own``, whether ``other`` holds it."""
    kind = pa.binary(_MATCH_BYTES)

    def array(data: bytes) -> pa.Array:
        count = len(data) // _MATCH_BYTES
        return pa.FixedSizeBinaryArray.from_buffers(
            kind, count, [None, pa.py_buffer(data)]
        )

    return pc.is_in(array(own), value_set=array(other)).to_numpy(zero_copy_only=False)


def _truncate(points: bytes) -> bytes:
    """Keep the first ``_MATCH_BYTES`` bytes of every 32-byte point."""
    rows = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)
    return rows[:, :_MATCH_BYTES].tobytes()


@dataclass
class _Settings:
    curve: str
    kind: str
    cardinality_only: bool
    batch: int

    @property
    def mode(self) -> str:
        return "cardinality" if self.cardinality_only else "membership"


def _hello(settings: _Settings, role: str, items: int) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL,
        "version": PROTOCOL_VERSION,
        "role": role,
        "curve": settings.curve,
        "kind": settings.kind,
        "mode": settings.mode,
        "items": items,
    }


def _disagreement(mine: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """Return why two hello messages cannot work together, or None."""
    if theirs.get("protocol") != PROTOCOL:
        return (
            f"the peer speaks {theirs.get('protocol')!r}, not {PROTOCOL!r}; "
            "expected a telcoreach psi serve/join peer"
        )
    if theirs.get("version") != PROTOCOL_VERSION:
        return (
            f"protocol version mismatch: this side speaks v{PROTOCOL_VERSION}, the "
            f"peer v{theirs.get('version')}; run the same telcoreach version on "
            "both sides"
        )
    if theirs.get("role") == mine["role"]:
        return f"both sides are {mine['role']!r}; one must serve and one must join"
    roles = f"{mine['role']} side {{0}}, {theirs.get('role')} side {{1}}"
    for field, option in (("curve", "--curve"), ("kind", "--kind")):
        if theirs.get(field) != mine[field]:
            pair = roles.format(mine[field], theirs.get(field))
            return f"{field} mismatch ({pair}); run both sides with the same {option}"
    if theirs.get("mode") != mine["mode"]:
        pair = roles.format(mine["mode"], theirs.get("mode"))
        return (
            f"mode mismatch ({pair}); pass --cardinality-only on both sides or on "
            "neither"
        )
    if not isinstance(theirs.get("items"), int) or theirs["items"] < 0:
        return f"the peer announced {theirs.get('items')!r} items; expected a count"
    return None


class _Session:
    """The steps of one party, timed, with progress and pings."""

    def __init__(
        self,
        role: str,
        channel: Channel,
        pool: CurvePool,
        settings: _Settings,
        progress: Progress | None,
    ) -> None:
        self.role = role
        self.channel = channel
        self.pool = pool
        self.settings = settings
        self.progress = progress
        self.seconds_by_step: dict[str, float] = {}

    def _tick(self, description: str) -> Callable[[int, int], None]:
        def tick(done: int, total: int) -> None:
            self.channel.ping_if_due()
            if self.progress:
                self.progress(description, done, total)

        return tick

    def _timed(self, step: str, started: float) -> None:
        self.seconds_by_step[step] = round(time.perf_counter() - started, 3)

    def _handshake(self, items: int) -> int:
        mine = _hello(self.settings, self.role, items)
        channel = self.channel
        if self.role == "join":
            channel.send_json(Frame.HELLO, mine)
        theirs = channel.receive_json(Frame.HELLO)
        problem = _disagreement(mine, theirs)
        if problem:
            raise PsiError(problem)  # the caller tells the peer too
        if self.role == "serve":
            channel.send_json(Frame.HELLO, mine)
        return int(theirs["items"])

    def _both_ready(self) -> None:
        # Neither side streams until both finished computing, so a send never
        # waits on a peer that is busy and not reading.
        self.channel.send(Frame.READY)
        self.channel.receive(Frame.READY)

    def run(self, own: PsiInput) -> tuple[np.ndarray | None, int, int]:
        """Return (own match mask or None, intersection size, peer items).

        The mask is over ``own.identifiers`` in their order; it is None in
        cardinality-only mode.
        """
        channel, settings, serving = self.channel, self.settings, self.role == "serve"
        started = time.perf_counter()
        peer_items = self._handshake(len(own.identifiers))
        self._timed("handshake", started)

        started = time.perf_counter()
        scalar = new_scalar(settings.curve)
        order = _secure_permutation(len(own.identifiers))
        shuffled = own.identifiers.take(pa.array(order)).to_pylist()
        domain = hash_domain(settings.curve, settings.kind, PROTOCOL_VERSION)
        own_blinded = self.pool.hash_and_multiply(
            scalar, domain, shuffled, self._tick("blinding own identifiers")
        )
        del shuffled
        self._timed("blind own", started)

        started = time.perf_counter()
        self._both_ready()
        if self.progress:
            self.progress("exchanging blinded sets", 0, 1)
        names = ("blinded-join", "blinded-serve")
        if serving:
            peer_blinded = channel.receive_points(names[0], peer_items, POINT_BYTES)
            channel.send_points(names[1], own_blinded, POINT_BYTES, settings.batch)
        else:
            channel.send_points(names[0], own_blinded, POINT_BYTES, settings.batch)
            peer_blinded = channel.receive_points(names[1], peer_items, POINT_BYTES)
        del own_blinded
        self._timed("exchange blinded", started)

        started = time.perf_counter()
        peer_double = _truncate(
            self.pool.multiply(
                scalar, peer_blinded, self._tick("re-blinding the peer's points")
            )
        )
        del peer_blinded
        self._timed("re-blind peer", started)

        started = time.perf_counter()
        self._both_ready()
        if self.progress:
            self.progress("matching", 0, 1)
        if serving:
            mask, count = self._finish_serving(peer_double, len(own.identifiers))
        else:
            mask, count = self._finish_joining(peer_double, len(own.identifiers))
        self._timed("match", started)

        if mask is not None:
            unshuffled = np.zeros(len(mask), dtype=bool)
            unshuffled[order[mask]] = True
            mask = unshuffled
        return mask, count, peer_items

    def _finish_serving(
        self, peer_double: bytes, own_items: int
    ) -> tuple[np.ndarray | None, int]:
        channel, batch = self.channel, self.settings.batch
        if self.settings.cardinality_only:
            # A fresh shuffle: the joiner can count matches but not place them.
            rows = np.frombuffer(peer_double, dtype=np.uint8).reshape(-1, _MATCH_BYTES)
            shuffled = rows[_secure_permutation(len(rows))].tobytes()
            channel.send_points("double-join", shuffled, _MATCH_BYTES, batch)
            count = _count_from(channel.receive_json(Frame.RESULT), channel.peer)
            return None, count
        channel.send_points("double-join", peer_double, _MATCH_BYTES, batch)
        own_double = channel.receive_points("double-serve", own_items, _MATCH_BYTES)
        mask = _matches(own_double, peer_double)
        count = int(mask.sum())
        channel.send_json(Frame.RESULT, {"intersection": count})
        return mask, count

    def _finish_joining(
        self, peer_double: bytes, own_items: int
    ) -> tuple[np.ndarray | None, int]:
        channel, batch = self.channel, self.settings.batch
        own_double = channel.receive_points("double-join", own_items, _MATCH_BYTES)
        mask = _matches(own_double, peer_double)
        count = int(mask.sum())
        if self.settings.cardinality_only:
            channel.send_json(Frame.RESULT, {"intersection": count})
            return None, count
        channel.send_points("double-serve", peer_double, _MATCH_BYTES, batch)
        theirs = _count_from(channel.receive_json(Frame.RESULT), channel.peer)
        if theirs != count:
            raise PsiError(
                f"the two sides found different intersections ({count} here, "
                f"{theirs} at the peer); a point was corrupted in transit, rerun"
            )
        return mask, count


def _count_from(message: dict[str, Any], peer: str) -> int:
    count = message.get("intersection")
    if not isinstance(count, int) or count < 0:
        raise PsiError(f"the peer {peer} sent result {message}; expected a count")
    return count


# ------------------------------------------------------------------ roles


def serve_psi(
    workspace, input_path: Path, *, port: int, **options: Any
) -> dict[str, Any]:
    """Wait for one joining party on ``host:port``, run PSI, return a summary.

    See :func:`join_psi` for the options; in addition ``wait_s`` is how long
    to wait for the joiner and ``on_listen(host, port)`` is called once the
    socket listens (``port=0`` picks a free port).
    """
    host = options.pop("host", "127.0.0.1")
    wait_s = options.pop("wait_s", 300.0)
    on_listen = options.pop("on_listen", None)

    def connect(timeout_s: float) -> Channel:
        with socket.create_server((host, port)) as listener:
            bound = listener.getsockname()[1]
            logger.info("PSI server listening on %s:%d", host, bound)
            if on_listen:
                on_listen(host, bound)
            listener.settimeout(wait_s)
            try:
                sock, address = listener.accept()
            except TimeoutError:
                raise PsiError(
                    f"no party joined {host}:{bound} within {wait_s:g} s; start "
                    f"`telcoreach psi join --port {bound}` on the other side or "
                    "raise --wait"
                ) from None
        return Channel(sock, f"{address[0]}:{address[1]}", timeout_s)

    return _run_role("serve", workspace, input_path, connect, **options)


def join_psi(
    workspace,
    input_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int,
    connect_timeout_s: float = 30.0,
    **options: Any,
) -> dict[str, Any]:
    """Connect to a serving party, run PSI, write and audit the result.

    Parameters
    ----------
    workspace : Workspace
        Where the result is written (``exports/``) and audited; its
        pseudonymisation key turns matched identifiers into tokens.
    input_path : Path
        CSV with one identifier per row in ``column``.
    host, port : str, int
        The serving party.
    connect_timeout_s : float
        How long to retry while the server is not yet listening.
    column, kind : str
        Identifier column and kind (``msisdn``, ``imsi``, ``imei``).
    curve : str
        ``x25519`` (default) or ``sm2``; both sides must agree.
    cardinality_only : bool
        Learn only the size of the intersection; no member is written.
    out : Path, optional
        CSV of matched tokens [default: ``exports/psi-<role>-<time>.csv``].
    purpose : str
        Why the identifiers are matched, for the audit log; a
        ``sharing:<enterprise>`` purpose also selects whose consent is needed.
    enterprise : str, optional
        The partner: only subscribers consenting to ``sharing:<enterprise>``
        take part. Required by :func:`serve_psi` (unless ``purpose`` is a
        sharing purpose). On both sides identifiers of subscribers on the
        forget list are dropped before the protocol, and the drops counted.
    workers, batch, timeout_s, pool, progress
        Processes for the curve arithmetic (or an existing :class:`CurvePool`),
        points per frame, longest silence of the peer, progress callback.

    Returns
    -------
    dict
        Counts (including ``excluded_erased``, ``excluded_no_consent``),
        output and its digests, bytes sent and received, seconds per step.
    """

    def connect(timeout_s: float) -> Channel:
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=timeout_s)
                return Channel(sock, f"{host}:{port}", timeout_s)
            except (ConnectionRefusedError, TimeoutError) as error:
                if time.monotonic() >= deadline:
                    raise PsiError(
                        f"cannot connect to a PSI server at {host}:{port} within "
                        f"{connect_timeout_s:g} s ({error.strerror or error}); "
                        "start `telcoreach psi serve` there first"
                    ) from None
                time.sleep(0.2)

    return _run_role("join", workspace, input_path, connect, **options)


def _run_role(
    role: str,
    workspace,
    input_path: Path,
    connect: Callable[[float], Channel],
    *,
    column: str = "msisdn",
    kind: str = "msisdn",
    curve: str = "x25519",
    cardinality_only: bool = False,
    out: Path | None = None,
    purpose: str = "customer matching",
    enterprise: str | None = None,
    workers: int | None = None,
    batch: int = DEFAULT_BATCH,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pool: CurvePool | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    if curve not in CURVES:
        raise PsiError(f"unknown curve {curve!r}; expected one of {', '.join(CURVES)}")
    if batch < 1:
        raise PsiError(f"batch must be a positive number of points; found {batch}")
    consent_purpose = sharing_purpose(enterprise, purpose)
    if role == "serve" and consent_purpose is None:
        raise PsiError(
            "psi serve shares which subscribers are customers, so it needs the "
            "partner's name: expected --enterprise NAME (subscribers must hold "
            "consent `sharing:NAME`; grant it with `telcoreach consent grant "
            "TOKEN... -p sharing:NAME`)"
        )
    started = time.perf_counter()
    own = read_identifiers(input_path, column, kind)
    _ = workspace.pseudonymiser  # a missing or wrong key fails before any work
    # Erased and non-consenting people leave before the protocol: the peer
    # does not even learn that they are customers.
    own, excluded = exclude_withheld(workspace, own, consent_purpose)
    settings = _Settings(curve, kind, cardinality_only, batch)
    owned_pool = pool is None
    pool = pool or CurvePool(curve, workers)
    if pool.curve != curve:
        raise PsiError(f"the curve pool computes on {pool.curve}, not {curve}")
    try:
        if progress:
            progress("waiting for the other party", 0, 1)
        channel = connect(timeout_s)
        try:
            session = _Session(role, channel, pool, settings, progress)
            try:
                mask, count, peer_items = session.run(own)
            except PsiError as error:
                channel.send_error(str(error))
                raise
        finally:
            channel.close()
    finally:
        if owned_pool:
            pool.close()
    seconds = round(time.perf_counter() - started, 3)
    summary: dict[str, Any] = {
        "role": role,
        "peer": channel.peer,
        "curve": curve,
        "mode": settings.mode,
        "kind": kind,
        "input": own.source,
        "input_rows": own.input_rows,
        "invalid_rows": own.invalid_rows,
        "duplicate_rows": own.duplicate_rows,
        **excluded,
        "consent_purpose": consent_purpose,
        "identifiers": len(own.identifiers),
        "peer_identifiers": peer_items,
        "intersection": count,
        "output": None,
        "bytes_sent": channel.bytes_sent,
        "bytes_received": channel.bytes_received,
        "seconds": seconds,
        "seconds_by_step": session.seconds_by_step,
        "workers": pool.workers,
        "protocol_version": PROTOCOL_VERSION,
    }
    written = None
    if mask is not None:
        written, summary["output_sha256"] = _write_members(
            workspace, own, mask, role, out
        )
        summary["output"] = str(written)
    # record_use hashes the file with SM3 and SHA-256; an absolute path, so a
    # workspace opened by a relative path does not resolve it twice.
    entry = workspace.record_use(
        f"psi {role}",
        purpose,
        subscribers=count,
        output=None if written is None else written.resolve(),
        details={
            key: summary[key]
            for key in (
                "peer",
                "curve",
                "mode",
                "kind",
                "input",
                "consent_purpose",
                "excluded_erased",
                "excluded_no_consent",
                "identifiers",
                "peer_identifiers",
                "bytes_sent",
                "bytes_received",
                "seconds",
                "protocol_version",
            )
        },
    )
    summary["output_sm3"] = entry.get("output_sm3")
    summary["audit_hash"] = entry["hash"]
    logger.info(
        "PSI %s (%s, %s): %d of %d identifiers shared in %.1f s",
        role,
        curve,
        settings.mode,
        count,
        len(own.identifiers),
        seconds,
    )
    return summary


def _write_members(
    workspace, own: PsiInput, mask: np.ndarray, role: str, out: Path | None
) -> tuple[Path, str]:
    """Write the matched identifiers as workspace tokens; return path and SHA-256."""
    token_column = IDENTIFIER_KINDS[own.kind][1]
    matched = np.flatnonzero(mask)
    tokens = workspace.pseudonymiser.tokenise(
        own.kind, own.identifiers.take(pa.array(matched))
    )
    table = pa.table({token_column: tokens, "input_row": pa.array(own.rows[matched])})
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        out = workspace.exports_dir / f"psi-{role}-{stamp}.csv"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pv.write_csv(table, out)
    return out, hashlib.sha256(out.read_bytes()).hexdigest()
