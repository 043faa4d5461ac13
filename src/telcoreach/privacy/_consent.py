"""Consent registry: who agreed to what, when, and who took it back.

Every grant or revocation is one row of the warehouse table
``consent_events`` (subscriber token, purpose, granted, time, source). Rows
are only ever appended; the latest event of a subscriber and purpose wins,
so a revocation takes effect at the next read, without rebuilding profiles
or tiers. Where the registry has no event for a subscriber, the consent flags
of the newest subscriber record in the lake (``consent_marketing``,
``consent_profiling``, ``opted_out``) decide; a purpose they do not cover
(sharing with a named enterprise) is refused until granted.

Purposes
--------
``marketing_sms``, ``marketing_call``
    Marketing contact by text message or by telephone call.
``profiling``
    Behavioural profiling (tiers, propensity scores).
``sharing:<enterprise>``
    Handing the subscriber's token or attributes to a named partner.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telcoreach.errors import ConsentError, DataSourceError
from telcoreach.privacy._scan import mask_digit_runs
from telcoreach.schemas import ID_PATTERNS

__all__ = [
    "CONSENT_TABLE",
    "MARKETING_PURPOSES",
    "UNSUBSCRIBE_KEYWORDS",
    "OptoutSummary",
    "change_consent",
    "check_purpose",
    "consent_history",
    "consent_status",
    "consented",
    "is_unsubscribe",
    "optout_from_replies",
    "record_consent",
    "run_optout",
    "show_consent",
]

logger = logging.getLogger(__name__)

CONSENT_TABLE = "consent_events"
MARKETING_PURPOSES = ("marketing_sms", "marketing_call")
#: Replies that mean "stop sending me marketing", after case folding and
#: removal of white space and punctuation (``TD`` and ``T`` are the Chinese
#: carriers' conventional unsubscribe codes; 退订 "unsubscribe", 取消 "cancel").
UNSUBSCRIBE_KEYWORDS = ("td", "t", "退订", "取消", "unsubscribe", "stop")

_PURPOSE = re.compile(r"^(marketing_sms|marketing_call|profiling|sharing:\S.{0,63})$")
_BEIJING = timezone(timedelta(hours=8))
_SCHEMA = pa.schema(
    [
        ("subscriber", pa.string()),
        ("purpose", pa.string()),
        ("granted", pa.bool_()),
        ("at", pa.timestamp("us")),
        ("source", pa.string()),
        ("recorded_at", pa.timestamp("us")),
        ("seq", pa.int64()),
    ]
)
_TOKEN = re.compile(r"^[a-z2-7]{24}$")


def check_purpose(purpose: str) -> str:
    """Return ``purpose`` if it is a known consent purpose.

    Raises
    ------
    ConsentError
        If it is none of ``marketing_sms``, ``marketing_call``, ``profiling``
        or ``sharing:<enterprise>``.
    """
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose.strip()):
        raise ConsentError(
            f"unknown consent purpose {purpose!r}; expected marketing_sms, "
            "marketing_call, profiling or sharing:<enterprise name>"
        )
    return purpose.strip()


def _check_tokens(tokens: Sequence[str]) -> list[str]:
    bad = [t for t in tokens if not isinstance(t, str) or not _TOKEN.match(t)]
    if bad:
        raise ConsentError(
            f"{len(bad)} value(s) are not subscriber tokens (24 characters of "
            "a-z2-7, as in the lake's `subscriber` column); pass tokens, never "
            "phone numbers, or use `telcoreach optout --replies` for raw numbers"
        )
    return list(tokens)


def now_beijing() -> datetime:
    """Return the current Beijing time (UTC+8) without a zone, as the lake stores."""
    return datetime.now(_BEIJING).replace(tzinfo=None, microsecond=0)


def record_consent(
    engine: Any,
    tokens: Sequence[str] | pa.Array,
    purpose: str | Sequence[str],
    granted: bool,
    *,
    source: str,
    at: datetime | pa.Array | None = None,
) -> int:
    """Append grant or revocation events and return how many were new.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace whose warehouse holds the registry.
    tokens : sequence of str or pyarrow.Array
        Subscriber tokens.
    purpose : str or sequence of str
        One purpose, or several (one event per token and purpose).
    granted : bool
        True for a grant, False for a revocation.
    source : str
        Where the decision came from (``cli``, ``sms reply file.csv``...).
    at : datetime or pyarrow.Array, optional
        When the person decided (Beijing time); one value, or one per token.
        Defaults to now.

    Notes
    -----
    An event identical to a recorded one (same token, purpose, decision,
    time and source) is not recorded twice, so re-reading a reply file adds
    nothing.
    """
    purposes = [purpose] if isinstance(purpose, str) else list(purpose)
    purposes = [check_purpose(p) for p in purposes]
    token_array = (
        tokens
        if isinstance(tokens, pa.Array)
        else pa.array(_check_tokens(list(tokens)), pa.string())
    )
    count = len(token_array)
    if count == 0:
        return 0
    if at is None or isinstance(at, datetime):
        at_array = pa.array([at or now_beijing()] * count, pa.timestamp("us"))
    else:
        at_array = at.cast(pa.timestamp("us"))
    recorded = now_beijing()
    parts = [
        pa.table(
            {
                "subscriber": token_array.cast(pa.string()),
                "purpose": pa.array([name] * count, pa.string()),
                "granted": pa.array(np.full(count, bool(granted))),
                "at": at_array,
                "source": pa.array([source] * count, pa.string()),
            }
        )
        for name in purposes
    ]
    events = pa.concat_tables(parts)
    keys = ["subscriber", "purpose", "granted", "at", "source"]
    con = engine.con
    exists = engine.has_table(CONSENT_TABLE)
    first_seq = 0
    if exists:
        table = engine.table(CONSENT_TABLE)
        fresh = ibis.memtable(events).distinct()
        events = fresh.anti_join(table, keys).to_pyarrow()
        first_seq = (table.seq.max().to_pyarrow().as_py() or 0) + 1
    else:
        events = ibis.memtable(events).distinct().to_pyarrow()
    if events.num_rows == 0:
        return 0
    events = events.append_column(
        "recorded_at", pa.array([recorded] * events.num_rows, pa.timestamp("us"))
    ).append_column(
        "seq", pa.array(np.arange(first_seq, first_seq + events.num_rows), pa.int64())
    )
    events = events.select(_SCHEMA.names).cast(_SCHEMA)
    if exists:
        con.insert(CONSENT_TABLE, events)
    else:
        engine.save(CONSENT_TABLE, events)
    logger.info(
        "recorded %d consent %s events for %s",
        events.num_rows,
        "grant" if granted else "revocation",
        ", ".join(purposes),
    )
    return events.num_rows


def _people(people: ibis.Table | Sequence[str]) -> ibis.Table:
    if isinstance(people, ibis.Table):
        return people
    tokens = _check_tokens(list(people))
    return ibis.memtable(pa.table({"subscriber": pa.array(tokens, pa.string())}))


def _baseline(engine: Any, purpose: str) -> ibis.Table | None:
    """Return ``subscriber, base_granted, base_basis`` from subscriber records."""
    if not engine.has_lake("subscribers"):
        return None
    records = engine.lake("subscribers")
    columns = set(records.columns)
    opted_out = (
        records.opted_out.fill_null(False)
        if "opted_out" in columns
        else ibis.literal(False)
    )
    if purpose in MARKETING_PURPOSES and "consent_marketing" in columns:
        granted = records.consent_marketing.fill_null(False) & ~opted_out
        basis = ibis.ifelse(
            opted_out,
            "opted out in subscriber record",
            ibis.ifelse(
                granted,
                "granted in subscriber record",
                "not granted in subscriber record",
            ),
        )
    elif purpose == "profiling" and "consent_profiling" in columns:
        granted = records.consent_profiling.fill_null(False)
        basis = ibis.ifelse(
            granted, "granted in subscriber record", "not granted in subscriber record"
        )
    else:
        granted = ibis.literal(False)
        basis = ibis.literal("never granted")
    return records.select(
        "subscriber", base_granted=granted, base_basis=basis.cast("string")
    )


def _latest_events(engine: Any, purpose: str) -> ibis.Table | None:
    """Return each subscriber's latest event for ``purpose``, or None."""
    parts = []
    if engine.has_table(CONSENT_TABLE):
        events = engine.table(CONSENT_TABLE)
        parts.append(
            events.filter(events.purpose == purpose).select(
                "subscriber", "granted", "at", "source", "seq"
            )
        )
    if purpose in MARKETING_PURPOSES and engine.has_table("optouts"):
        # An opt-out register kept by another component: a revocation of all
        # marketing, at its time if it has one, else after everything else.
        optouts = engine.table("optouts")
        at = (
            optouts.at.cast("timestamp")
            if "at" in optouts.columns
            else ibis.literal(datetime(9999, 1, 1), "timestamp")
        )
        parts.append(
            optouts.select(
                "subscriber",
                granted=ibis.literal(False),
                at=at,
                source=ibis.literal("opt-out register"),
                seq=ibis.literal(-1, "int64"),
            )
        )
    if not parts:
        return None
    events = parts[0] if len(parts) == 1 else ibis.union(*parts)
    newest = ibis.row_number().over(
        group_by="subscriber", order_by=[ibis.desc(events.at), ibis.desc(events.seq)]
    )
    latest = events.mutate(_newest=newest).filter(lambda t: t._newest == 0)
    return latest.select(
        "subscriber", event_granted="granted", event_at="at", event_source="source"
    )


def consent_status(
    engine: Any, people: ibis.Table | Sequence[str], purpose: str
) -> ibis.Table:
    """Return one row per subscriber of ``people``: ``consented`` and its ``basis``.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace.
    people : ibis.Table or sequence of str
        A table with a ``subscriber`` column, or subscriber tokens.
    purpose : str
        Consent purpose (see the module docstring).

    Returns
    -------
    ibis.Table
        ``subscriber``, ``consented`` (bool), ``revoked`` (the latest
        decision was a revocation or an opt-out) and ``basis`` (text).
    """
    purpose = check_purpose(purpose)
    status = _people(people).select("subscriber").distinct()
    base = _baseline(engine, purpose)
    if base is not None:
        status = status.left_join(base, "subscriber", rname="{name}_base").select(
            "subscriber", "base_granted", "base_basis"
        )
    else:
        status = status.mutate(
            base_granted=ibis.literal(False),
            base_basis=ibis.literal("no subscriber record"),
        )
    latest = _latest_events(engine, purpose)
    if latest is not None:
        status = status.left_join(latest, "subscriber", rname="{name}_event").select(
            "subscriber", "base_granted", "base_basis", "event_granted", "event_source"
        )
    else:
        status = status.mutate(
            event_granted=ibis.literal(None, "boolean"),
            event_source=ibis.literal(None, "string"),
        )
    has_event = status.event_granted.notnull()
    consented = ibis.ifelse(
        has_event, status.event_granted, status.base_granted.fill_null(False)
    )
    revoked = ibis.ifelse(
        has_event,
        ~status.event_granted,
        status.base_basis.fill_null("") == "opted out in subscriber record",
    )
    basis = ibis.ifelse(
        has_event,
        ibis.ifelse(status.event_granted, "granted by ", "revoked by ")
        + status.event_source,
        status.base_basis.fill_null("no subscriber record"),
    )
    return status.select(
        "subscriber", consented=consented, revoked=revoked, basis=basis
    )


def consented(
    engine: Any, people: ibis.Table | Sequence[str], purpose: str
) -> ibis.Table:
    """Return the rows of ``people`` whose subscriber consents to ``purpose`` now.

    This is the one consent check of telcoreach: audiences, exports and
    (event-driven) triggers call it at the moment they read, so a revocation
    recorded a second earlier is honoured.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace.
    people : ibis.Table or sequence of str
        A table with a ``subscriber`` column (its other columns are kept),
        or subscriber tokens (then a one-column table is returned).
    purpose : str
        Consent purpose.

    Examples
    --------
    >>> allowed = consented(engine, ["abcdefghijklmnopqrstuvwx"], "marketing_sms")
    ... # doctest: +SKIP
    """
    table = _people(people)
    allowed = consent_status(engine, table, purpose)
    return table.semi_join(allowed.filter(allowed.consented), "subscriber")


def consent_history(engine: Any, token: str) -> list[dict[str, Any]]:
    """Return every recorded event of one subscriber, oldest first."""
    _check_tokens([token])
    if not engine.has_table(CONSENT_TABLE):
        return []
    events = engine.table(CONSENT_TABLE)
    rows = (
        events.filter(events.subscriber == token)
        .order_by(["at", "seq"])
        .select("purpose", "granted", "at", "source", "recorded_at")
        .to_pyarrow()
        .to_pylist()
    )
    return [
        {**row, "at": str(row["at"]), "recorded_at": str(row["recorded_at"])}
        for row in rows
    ]


_NOISE = r"[\s\p{P}\p{S}]+"


def is_unsubscribe(texts: pa.Array) -> pa.BooleanArray:
    """Return, per reply text, whether it is an unsubscribe request.

    The text is normalised (NFKC, so full-width ``ＴＤ`` reads as ``TD``),
    case-folded and stripped of white space and punctuation; it must then
    equal one of :data:`UNSUBSCRIBE_KEYWORDS`. A sentence that merely
    contains a keyword (``"don't stop"``) is not an unsubscribe.
    """
    text = pc.utf8_normalize(texts.cast(pa.string()).fill_null(""), "NFKC")
    text = pc.replace_substring_regex(pc.utf8_lower(text), _NOISE, "")
    return pc.is_in(text, value_set=pa.array(UNSUBSCRIBE_KEYWORDS, pa.string()))


@dataclass
class OptoutSummary:
    """What ``optout`` recorded."""

    replies: int
    unsubscribes: int
    ignored_not_unsubscribe: int
    invalid: int
    subscribers: int
    events_recorded: int
    purposes: list[str]
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "replies": self.replies,
            "unsubscribes": self.unsubscribes,
            "ignored_not_unsubscribe": self.ignored_not_unsubscribe,
            "invalid": self.invalid,
            "subscribers": self.subscribers,
            "events_recorded": self.events_recorded,
            "purposes": self.purposes,
            "invalid_by_reason": self.invalid_by_reason,
            **({"hint": self.hint} if self.hint else {}),
        }


def _decode_replies(path: Path) -> tuple[bytes, bool]:
    """Return the file as UTF-8 bytes and whether it had to be repaired.

    Bytes that are not UTF-8 become U+FFFD, so the rows holding them can be
    told apart and counted instead of failing the whole file.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataSourceError(
            f"cannot read SMS replies {path}: {error.strerror or error}; expected "
            "a CSV file with header msisdn,text,received_at"
        ) from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace").encode("utf-8"), True
    return data, False


def _read_replies(path: Path) -> tuple[pa.Table, dict[str, int]]:
    """Return the parsable reply rows and the rows skipped, counted by reason."""
    import io

    import pyarrow.csv as pacsv

    data, repaired = _decode_replies(path)
    data, unbalanced = _drop_unbalanced_quotes(data)
    skipped = {"wrong_column_count": 0, "unbalanced_quote": unbalanced}

    def skip(row: Any) -> str:
        # The row's text holds a phone number: count it, never log it.
        skipped["wrong_column_count"] += 1
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "msisdn": pa.string(),
                    "text": pa.string(),
                    "received_at": pa.string(),
                },
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        reason = mask_digit_runs(str(error).splitlines()[0])
        raise DataSourceError(
            f"cannot read SMS replies {path}: expected a CSV file with header "
            f"msisdn,text,received_at ({reason})"
        ) from None
    missing = {"msisdn", "text", "received_at"} - set(table.column_names)
    if missing:
        found = mask_digit_runs(", ".join(table.column_names))
        raise DataSourceError(
            f"SMS replies {path} lack column(s) {', '.join(sorted(missing))}; "
            f"expected header msisdn,text,received_at, found {found}"
        )
    table = table.select(["msisdn", "text", "received_at"])
    skipped["not_utf8"] = 0
    if repaired:
        broken = None
        for name in table.column_names:
            has = pc.match_substring(table.column(name), "\ufffd")
            broken = has if broken is None else pc.or_(broken, has)
        skipped["not_utf8"] = pc.sum(broken).as_py() or 0
        table = table.filter(pc.invert(broken))
        if skipped["not_utf8"]:
            logger.warning(
                "%s: %d rows are not UTF-8 and were skipped; convert the file with "
                "`iconv -f gbk -t utf-8`",
                path.name,
                skipped["not_utf8"],
            )
    return table, skipped


def _drop_unbalanced_quotes(data: bytes) -> tuple[bytes, int]:
    """Drop lines with an odd number of double quotes; return the rest and the count.

    A reply with an unclosed quote would otherwise run on into the lines after
    it, and the unsubscribes there would be lost without a trace. Replies are
    one line each, so a quote must close on its own line.
    """
    lines = pc.split_pattern(pa.array([data.decode("utf-8")]), "\n")[0].values
    odd = pc.equal(pc.bit_wise_and(pc.count_substring(lines, '"'), 1), 1)
    dropped = pc.sum(odd).as_py() or 0
    if not dropped:
        return data, 0
    kept = pc.filter(lines, pc.invert(odd))
    joined = pc.binary_join(pa.ListArray.from_arrays([0, len(kept)], kept), "\n")
    return joined[0].as_py().encode("utf-8"), dropped


_ISO_TIME = (
    r"^\s*\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d\d:?\d\d)?\s*$"
)


def _beijing_times(values: pa.Array) -> pa.Array:
    """Parse reply times; zoned times are converted to Beijing time.

    Only ISO 8601 times (``2026-11-02 08:00[:00]``, optionally with a zone)
    are accepted: a slash date such as 03/11/2026 is ambiguous (day or month
    first) and counts as a bad time instead of being guessed.
    """
    import pandas as pd

    iso = pc.fill_null(pc.match_substring_regex(values, _ISO_TIME), False)
    values = pc.if_else(iso, values, pa.scalar(None, pa.string()))
    parsed = pd.to_datetime(
        pd.Series(values.to_numpy(zero_copy_only=False)),
        errors="coerce",
        utc=True,
        format="mixed",
    )
    zoned = pd.Series(values.to_numpy(zero_copy_only=False)).str.contains(
        r"(?:Z|[+-]\d\d:?\d\d)$", regex=True, na=False
    )
    local = parsed.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    naive = parsed.dt.tz_localize(None)
    chosen = local.where(zoned, naive)
    return pa.array(chosen.to_numpy(dtype="datetime64[us]"), pa.timestamp("us"))


def optout_from_replies(
    engine: Any,
    pseudonymiser: Any,
    path: Path,
    *,
    purposes: Sequence[str] = MARKETING_PURPOSES,
) -> OptoutSummary:
    """Record an opt-out for every unsubscribe reply in an SMS reply file.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace.
    pseudonymiser : Pseudonymiser
        The workspace's tokeniser: phone numbers are replaced by tokens as
        soon as they are read and are never stored.
    path : Path
        CSV with header ``msisdn,text,received_at``.
    purposes : sequence of str
        Purposes revoked by an unsubscribe (all marketing by default).

    Returns
    -------
    OptoutSummary
        Replies read, unsubscribes recognised, replies ignored because they
        are not unsubscribes, rows with an unusable number or time, and
        rows skipped because they are not ``msisdn,text,received_at`` rows
        (wrong column count, e.g. an unclosed quote) or not UTF-8.
    """
    replies, skipped = _read_replies(path)
    msisdn = replies.column("msisdn").combine_chunks()
    well_formed = pc.fill_null(
        pc.match_substring_regex(
            pc.replace_substring_regex(msisdn, r"[\s\-]", ""), ID_PATTERNS["msisdn"]
        ),
        False,
    )
    at = _beijing_times(replies.column("received_at").combine_chunks())
    usable = pc.and_(well_formed, pc.is_valid(at))
    unsubscribe = is_unsubscribe(replies.column("text").combine_chunks())
    chosen = pc.and_(usable, unsubscribe)
    tokens = pseudonymiser.tokenise("msisdn", pc.filter(msisdn, chosen))
    del msisdn
    recorded = record_consent(
        engine,
        tokens,
        list(purposes),
        False,
        source=f"sms reply ({path.name})",
        at=pc.filter(at, chosen),
    )
    unsubscribes = pc.sum(chosen).as_py() or 0
    usable_count = pc.sum(usable).as_py() or 0
    bad_number = len(well_formed) - (pc.sum(well_formed).as_py() or 0)
    reasons = {
        **skipped,
        "bad_number": bad_number,
        "bad_time": replies.num_rows - usable_count - bad_number,
    }
    hint = None
    if skipped.get("not_utf8"):
        hint = (
            f"{skipped['not_utf8']} rows of {path.name} are not UTF-8; convert the "
            f"file with `iconv -f gbk -t utf-8 {path.name}` and run again"
        )
    summary = OptoutSummary(
        replies=replies.num_rows + sum(skipped.values()),
        unsubscribes=unsubscribes,
        ignored_not_unsubscribe=usable_count - unsubscribes,
        invalid=sum(reasons.values()),
        subscribers=len(pc.unique(tokens)),
        events_recorded=recorded,
        purposes=[check_purpose(p) for p in purposes],
        invalid_by_reason=reasons,
        hint=hint,
    )
    logger.info(
        "opt-out replies: %d read, %d unsubscribes, %d ignored, %d invalid",
        summary.replies,
        summary.unsubscribes,
        summary.ignored_not_unsubscribe,
        summary.invalid,
    )
    return summary


# Workspace-level operations: what the ``consent`` and ``optout`` commands run.


def _open_engine(workspace: Any) -> Any:
    from telcoreach.engine import Engine

    return Engine(workspace)


def unknown_tokens(engine: Any, tokens: Sequence[str]) -> list[str]:
    """Return the tokens of ``tokens`` held by no lake table and no profile.

    A token is known when a lake table with a ``subscriber`` column (the
    subscriber records, signalling, DPI...) or the warehouse's ``profiles``
    holds it.
    """
    from telcoreach.schemas import KINDS

    wanted = ibis.memtable(
        pa.table({"subscriber": pa.array(sorted(set(tokens)), pa.string())})
    )
    sources = [engine.lake(kind) for kind in KINDS if engine.has_lake(kind)]
    if engine.has_table("profiles"):
        sources.append(engine.table("profiles"))
    for source in sources:
        if "subscriber" not in source.columns:
            continue
        wanted = wanted.anti_join(source.select("subscriber"), "subscriber")
    return sorted(wanted.to_pyarrow().column("subscriber").to_pylist())


def change_consent(
    workspace: Any,
    tokens: Sequence[str],
    purpose: str,
    granted: bool,
    *,
    source: str = "cli",
    at: datetime | None = None,
    allow_unknown: bool = False,
) -> dict[str, Any]:
    """Record a grant or revocation for ``tokens`` and audit it; return a summary.

    Raises
    ------
    ConsentError
        If a grant names a token that no lake table or profile holds (a
        typo, or a token of another key) and ``allow_unknown`` is False.
    """
    purpose = check_purpose(purpose)
    tokens = _check_tokens(list(tokens))
    engine = _open_engine(workspace)
    try:
        if granted and not allow_unknown:
            unknown = unknown_tokens(engine, tokens)
            if unknown:
                raise ConsentError(
                    f"{len(unknown)} of {len(set(tokens))} token(s) belong to no "
                    "subscriber of this workspace (not in the lake or profiles): "
                    f"{', '.join(unknown[:5])}; expected tokens made with this "
                    "workspace's key (check for typos, or map old tokens with "
                    "`telcoreach keys resolve`), or pass --allow-unknown to "
                    "record the grant anyway"
                )
        added = record_consent(engine, tokens, purpose, granted, source=source, at=at)
        now = consent_status(engine, tokens, purpose)
        allowed = now.filter(now.consented).count().to_pyarrow().as_py()
    finally:
        engine.close()
    action = "consent grant" if granted else "consent revoke"
    workspace.record_use(
        action,
        "consent management",
        tables=[CONSENT_TABLE],
        subscribers=len(set(tokens)),
        output=f"warehouse:{CONSENT_TABLE}",
        details={"purpose": purpose, "events_recorded": added, "source": source},
    )
    return {
        "action": action,
        "purpose": purpose,
        "subscribers": len(set(tokens)),
        "events_recorded": added,
        "consented_now": allowed,
    }


def show_consent(workspace: Any, token: str) -> dict[str, Any]:
    """Return one subscriber's consent now, per purpose, and its history."""
    _check_tokens([token])
    engine = _open_engine(workspace)
    try:
        history = consent_history(engine, token)
        purposes = [*MARKETING_PURPOSES, "profiling"]
        purposes += sorted(
            {e["purpose"] for e in history if e["purpose"] not in purposes}
        )
        current = {}
        for purpose in purposes:
            row = consent_status(engine, [token], purpose).to_pyarrow().to_pylist()[0]
            current[purpose] = {"consented": row["consented"], "basis": row["basis"]}
    finally:
        engine.close()
    workspace.record_use(
        "consent show",
        "transparency",
        tables=[CONSENT_TABLE, "subscribers"],
        subscribers=1,
    )
    return {"subscriber": token, "now": current, "history": history}


def run_optout(
    workspace: Any,
    tokens: Sequence[str] = (),
    replies: Path | None = None,
    *,
    purposes: Sequence[str] = MARKETING_PURPOSES,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Record opt-outs by token and/or from an SMS reply file; audit; summarise.

    Raises
    ------
    ConsentError
        If neither tokens nor a reply file is given.
    """
    if not tokens and replies is None:
        raise ConsentError(
            "nothing to opt out: expected subscriber tokens or --replies FILE "
            "(CSV msisdn,text,received_at)"
        )
    tokens = _check_tokens(list(tokens))
    engine = _open_engine(workspace)
    summary: dict[str, Any] = {"purposes": [check_purpose(p) for p in purposes]}
    touched = 0
    try:
        if tokens:
            summary["tokens"] = len(set(tokens))
            summary["events_recorded_tokens"] = record_consent(
                engine, tokens, list(purposes), False, source="optout (cli)", at=at
            )
            touched += len(set(tokens))
        if replies is not None:
            result = optout_from_replies(
                engine, workspace.pseudonymiser, Path(replies), purposes=purposes
            )
            summary["replies"] = result.to_dict()
            touched += result.subscribers
    finally:
        engine.close()
    details = {k: v for k, v in summary.items() if k != "purposes"}
    if replies is not None:
        from telcoreach.privacy._audit import file_sm3

        details["replies_file_sm3"] = file_sm3(Path(replies))
    workspace.record_use(
        "optout",
        "consent management",
        tables=[CONSENT_TABLE],
        subscribers=touched,
        output=f"warehouse:{CONSENT_TABLE}",
        details=details,
    )
    return summary
