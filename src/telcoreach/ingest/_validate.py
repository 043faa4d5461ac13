"""Vectorised validation of one chunk of input rows against a record schema.

Each row either becomes a typed, pseudonymised row for the lake or a
quarantine row that says why it was rejected. Identifier values never appear
in a reason or in the quarantined copy of the row: they are tokenised too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from telcoreach.privacy import PII_KINDS, Pseudonymiser, redact_digit_runs, scrub_pii
from telcoreach.quality._validators import identifier_counts
from telcoreach.schemas import ID_PATTERNS, Field, RecordSchema

__all__ = ["QUARANTINE_SCHEMA", "ValidatedChunk", "validate_chunk"]

QUARANTINE_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("row", pa.string()),
    ]
)

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}
_EXPECTED = {
    "int64": "a whole number",
    "float64": "a number",
    "bool": "true/false",
    "timestamp": "a time as YYYY-MM-DD HH:MM:SS",
}
_ID_EXPECTED = {
    "msisdn": "an 11-digit mobile number 1[3-9]XXXXXXXXX",
    "imsi": "15 digits starting with MCC 460",
    "imei": "15 digits",
}
_INT = r"^\s*[-+]?[0-9]+\s*$"
_FLOAT = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"
_TRUE = ["true", "1", "yes", "y", "t"]
_FALSE = ["false", "0", "no", "n", "f"]
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S")


@dataclass
class ValidatedChunk:
    """Rows of a chunk split into lake rows and quarantine rows."""

    valid: pa.Table
    rejected: pa.Table
    #: Personal data items masked in free-text fields, by kind (mobile...).
    pii_masked: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Rows failing each check (a row failing two counts in both, unlike the
    #: quarantine's first reason), plus raw identifier validator counts.
    checks: dict[str, int] = dataclasses.field(default_factory=dict)


def _is_empty(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
    return pc.is_null(values)


def _parse(values: pa.Array, dtype: str) -> pa.Array:
    """Parse ``values`` to ``dtype``; unparsable values become null."""
    target = _ARROW_TYPES[dtype]
    if values.type == target:
        return values
    if not pa.types.is_string(values.type):
        if dtype == "timestamp" and pa.types.is_timestamp(values.type):
            return values.cast(target)
        if dtype != "string":
            return values.cast(target)
        values = values.cast(pa.string())
    if dtype == "string":
        return pc.utf8_trim_whitespace(values)
    if dtype == "timestamp":
        trimmed = pc.utf8_trim_whitespace(values)
        parsed = pc.strptime(trimmed, _TIME_FORMATS[0], unit="us", error_is_null=True)
        for time_format in _TIME_FORMATS[1:]:
            if parsed.null_count == values.null_count:
                break
            fallback = pc.strptime(trimmed, time_format, unit="us", error_is_null=True)
            parsed = pc.coalesce(parsed, fallback)
        return parsed
    if dtype == "bool":
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        truth = pc.is_in(lowered, pa.array(_TRUE))
        falsity = pc.is_in(lowered, pa.array(_FALSE))
        null = pa.scalar(None, pa.bool_())
        return pc.if_else(truth, True, pc.if_else(falsity, False, null))
    pattern = _INT if dtype == "int64" else _FLOAT
    ok = pc.match_substring_regex(values, pattern)
    cleaned = pc.if_else(ok, pc.utf8_trim_whitespace(values), None)
    return cleaned.cast(target)


def _field_problems(
    field: Field, raw: pa.Array, parsed: pa.Array
) -> list[tuple[pa.Array, str, pa.Array | None]]:
    """Return (row mask, reason, detail values) for each way ``field`` can fail."""
    empty = _is_empty(raw)
    problems: list[tuple[pa.Array, str, pa.Array | None]] = []
    if field.required:
        problems.append((empty, f"{field.name}: required value missing", None))

    present = pc.invert(empty)
    unparsed = pc.and_(present, pc.is_null(parsed))
    if field.dtype != "string":
        reason = f"{field.name}: expected {_EXPECTED[field.dtype]}"
        problems.append((unparsed, reason, raw))
    if field.allowed:
        outside = pc.and_(
            pc.is_valid(parsed), pc.invert(pc.is_in(parsed, pa.array(field.allowed)))
        )
        reason = f"{field.name}: expected one of {', '.join(field.allowed)}"
        problems.append((outside, reason, raw))
    if field.minimum is not None:
        low = pc.fill_null(pc.less(parsed, field.minimum), False)
        problems.append((low, f"{field.name}: below minimum {field.minimum:g}", raw))
    if field.maximum is not None:
        high = pc.fill_null(pc.greater(parsed, field.maximum), False)
        problems.append((high, f"{field.name}: above maximum {field.maximum:g}", raw))
    return problems


@dataclass
class _Identifier:
    columns: dict[str, pa.Array]
    problems: list[tuple[pa.Array, str, pa.Array | None]]
    counts: dict[str, int] = dataclasses.field(default_factory=dict)


def _identifier_columns(
    field: Field, raw: pa.Array, pseudonymiser: Pseudonymiser, check_ids: bool
) -> _Identifier:
    """Tokenise and check an identifier column, working on its distinct values.

    A day of signalling holds millions of rows but only as many distinct ids
    as subscribers, so every check runs on the dictionary and is mapped back.
    """
    encoded = pc.dictionary_encode(raw.cast(pa.string()))
    distinct, indices = encoded.dictionary, encoded.indices
    empty = _is_empty(distinct)
    cleaned = pc.replace_substring_regex(distinct, pattern=r"[\s\-]", replacement="")
    tokens = pseudonymiser.tokenise(field.identifier, distinct)
    null = pa.scalar(None, pa.string())
    columns = {field.stored_as: pc.take(pc.if_else(empty, null, tokens), indices)}
    if field.identifier == "imei":
        tac = pc.if_else(
            pc.match_substring_regex(cleaned, r"^[0-9]{15}$"),
            pc.utf8_slice_codeunits(cleaned, 0, 8),
            null,
        )
        columns["tac"] = pc.take(tac, indices)

    missing = pc.fill_null(pc.take(empty, indices), True)
    problems: list[tuple[pa.Array, str, pa.Array | None]] = []
    if field.required:
        problems.append((missing, f"{field.name}: required value missing", None))
    counts: dict[str, int] = {}
    if check_ids:
        counts = identifier_counts(field.identifier, cleaned, pc.invert(empty), indices)
        well_formed = pc.match_substring_regex(cleaned, ID_PATTERNS[field.identifier])
        wrong = pc.and_(pc.invert(missing), pc.invert(pc.take(well_formed, indices)))
        reason = (
            f"{field.name}: malformed identifier, expected "
            f"{_ID_EXPECTED[field.identifier]}"
        )
        problems.append((wrong, reason, None))
    return _Identifier(columns, problems, counts)


def _any_problem(
    problems: list[tuple[pa.Array, str, pa.Array | None]], length: int
) -> pa.Array:
    """Return the mask of rows that fail at least one check."""
    bad = pa.array([False] * length) if not problems else None
    for mask, _, _ in problems:
        mask = pc.fill_null(mask, False)
        bad = mask if bad is None else pc.or_(bad, mask)
    return bad


def _first_reason(
    problems: list[tuple[pa.Array, str, pa.Array | None]], bad: pa.Array
) -> tuple[pa.Array, pa.Array]:
    """Return, for the failing rows only, the first failing reason and its detail."""
    count = pc.sum(bad).as_py() or 0
    reason = pa.nulls(count, pa.string())
    detail = pa.nulls(count, pa.string())
    for mask, text, values in reversed(problems):
        mask = pc.fill_null(mask, False).filter(bad)
        reason = pc.if_else(mask, text, reason)
        if values is None:
            detail = pc.if_else(mask, pa.scalar(None, pa.string()), detail)
            continue
        shown = redact_digit_runs(
            pc.utf8_slice_codeunits(values.filter(bad).cast(pa.string()), 0, 60)
        )
        found = pc.binary_join_element_wise("found ", pc.fill_null(shown, ""), "")
        detail = pc.if_else(mask, found, detail)
    return reason, detail


def validate_chunk(
    schema: RecordSchema,
    chunk: pa.Table,
    pseudonymiser: Pseudonymiser,
    *,
    source_file: str,
    first_line: int | pa.Array,
    check_ids: bool = True,
) -> ValidatedChunk:
    """Validate, type and pseudonymise one chunk of rows of ``schema.kind``.

    Parameters
    ----------
    schema : RecordSchema
        The record kind.
    chunk : pyarrow.Table
        Input rows; columns named as the schema's input fields (strings or
        already typed). Missing optional columns are treated as empty.
    pseudonymiser : Pseudonymiser
        Tokeniser for identifier fields.
    source_file : str
        Name of the file the rows came from, for the quarantine.
    first_line : int or pyarrow.Array
        Line number of the first row (rows are consecutive), or one line
        number per row.
    check_ids : bool
        Check identifiers against carrier formats; adapters of public data
        sets whose ids are not phone numbers pass False.
    """
    length = chunk.num_rows
    if isinstance(first_line, int):
        lines = pa.array(range(first_line, first_line + length), pa.int64())
    else:
        lines = first_line

    columns: dict[str, pa.Array] = {}
    problems: list[tuple[pa.Array, str, pa.Array | None]] = []
    raw_columns: dict[str, pa.Array] = {}
    pii_masked = dict.fromkeys(PII_KINDS, 0)
    checks: dict[str, int] = {}
    for field in schema.fields:
        if field.name in chunk.column_names:
            raw = chunk.column(field.name).combine_chunks()
        else:
            raw = pa.nulls(length, pa.string())
        raw_columns[field.name] = raw
        if field.identifier is not None:
            identifier = _identifier_columns(field, raw, pseudonymiser, check_ids)
            columns.update(identifier.columns)
            problems.extend(identifier.problems)
            checks.update(identifier.counts)
            continue
        parsed = _parse(raw, field.dtype)
        if field.free_text:
            scrubbed = scrub_pii(parsed)
            parsed = scrubbed.text
            raw_columns[field.name] = parsed
            for kind, count in scrubbed.counts.items():
                pii_masked[kind] += count
        columns[field.stored_as] = parsed
        problems.extend(_field_problems(field, raw, parsed))

    bad = _any_problem(problems, length)
    good = pc.invert(bad)
    for mask, text, _ in problems:
        failing = int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)
        if failing:
            checks[text] = checks.get(text, 0) + failing
    columns["_source_file"] = pa.array([source_file] * length, pa.string())
    columns["_line"] = lines
    valid = pa.table(columns).filter(good)

    if not pc.any(bad).as_py():
        return ValidatedChunk(
            valid, QUARANTINE_SCHEMA.empty_table(), pii_masked, checks=checks
        )
    reason, detail = _first_reason(problems, bad)
    shown_columns = []
    for field in schema.fields:
        value = (
            columns[field.stored_as]
            if field.identifier is not None
            else raw_columns[field.name].cast(pa.string())
        )
        shown_columns.append(
            pc.binary_join_element_wise(
                f"{field.stored_as}=", pc.fill_null(value.filter(bad), ""), ""
            )
        )
    row_text = pc.binary_join_element_wise(*shown_columns, " | ")
    count = len(reason)
    rejected = pa.table(
        {
            "kind": pa.array([schema.kind] * count, pa.string()),
            "source_file": pa.array([source_file] * count, pa.string()),
            "line": lines.filter(bad),
            "reason": reason,
            "detail": detail,
            "row": row_text,
        },
        schema=QUARANTINE_SCHEMA,
    )
    return ValidatedChunk(valid, rejected, pii_masked, checks=checks)
