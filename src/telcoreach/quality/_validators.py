"""Validators of raw carrier identifiers, run at ingest before tokenising.

Raw MSISDNs, IMSIs and IMEIs never reach the lake, so their format can only
be checked while the ingest function holds them. These functions take an
Arrow array of cleaned values (spaces and dashes removed) and return one
boolean per value; :func:`identifier_counts` turns them into the per-batch
counts the quality stage reads from the lake manifest.

Glossary: an MSISDN is a phone number (in China ``1[3-9]`` and 9 more
digits, optionally after ``86`` or ``+86``); an IMSI identifies a SIM (15
digits, starting with the mobile country code, MCC, 460 for China); an IMEI
identifies a handset (15 digits: an 8-digit type allocation code, TAC, naming
the device model, a 6-digit serial and a Luhn check digit).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from telcoreach.privacy._pii import digit_matrix, luhn_valid
from telcoreach.schemas import ID_PATTERNS

__all__ = [
    "identifier_counts",
    "imei_luhn_valid",
    "imsi_length_valid",
    "imsi_mcc_valid",
    "msisdn_valid",
]

#: A Chinese mobile number, with an optional country code (as ingest checks it).
MSISDN_PATTERN = ID_PATTERNS["msisdn"]
IMEI_DIGITS = 15
IMSI_DIGITS = 15
CHINA_MCC = "460"


def msisdn_valid(values: pa.Array) -> pa.Array:
    """Return whether each value is a Chinese mobile number (null stays null)."""
    return pc.match_substring_regex(values, MSISDN_PATTERN)


def imsi_mcc_valid(values: pa.Array) -> pa.Array:
    """Return whether each IMSI starts with China's mobile country code 460."""
    return pc.starts_with(values, CHINA_MCC)


def imsi_length_valid(values: pa.Array) -> pa.Array:
    """Return whether each IMSI is exactly 15 digits."""
    return pc.match_substring_regex(values, rf"^[0-9]{{{IMSI_DIGITS}}}$")


def imei_luhn_valid(values: pa.Array) -> pa.Array:
    """Return whether each value is 15 digits whose last is its Luhn check digit.

    The Luhn sum doubles every second digit from the right (the check digit
    itself is not doubled), subtracts 9 from doubled values above 9, and
    must be a multiple of 10. Values that are not 15 digits are false; nulls
    stay null.
    """
    values = values.cast(pa.string())
    well_formed = pc.fill_null(
        pc.match_substring_regex(values, rf"^[0-9]{{{IMEI_DIGITS}}}$"), False
    )
    if len(values) == 0:
        return pa.array([], pa.bool_())
    text = pc.if_else(well_formed, values, "0" * IMEI_DIGITS)
    luhn = pa.array(luhn_valid(digit_matrix(text, IMEI_DIGITS) - ord("0")))
    return pc.if_else(pc.is_null(values), None, pc.and_(well_formed, luhn))


def _rows(mask_of_distinct: pa.Array, indices: pa.Array) -> int:
    """Return how many rows point at a distinct value whose mask is true."""
    per_row = pc.take(pc.fill_null(mask_of_distinct, False), indices)
    return int(pc.sum(per_row).as_py() or 0)


def identifier_counts(
    identifier: str, cleaned: pa.Array, present: pa.Array, indices: pa.Array
) -> dict[str, int]:
    """Return row counts of each validator's failures for one identifier column.

    Parameters
    ----------
    identifier : {"msisdn", "imsi", "imei"}
        Kind of identifier.
    cleaned : pyarrow.Array
        Distinct raw values with spaces and dashes removed.
    present : pyarrow.Array
        Whether each distinct value is non-empty.
    indices : pyarrow.Array
        For each row, the index of its value in ``cleaned``.

    Returns
    -------
    dict of str to int
        ``{"<id>.present": rows with a value, "<id>.malformed": rows failing
        the format, ...}``; for IMSI also ``imsi.mcc`` and ``imsi.length``,
        for IMEI ``imei.luhn`` (15 digits but a wrong check digit).
    """
    present = pc.fill_null(present, False)
    counts = {f"{identifier}.present": _rows(present, indices)}
    if identifier == "msisdn":
        wrong = pc.and_(present, pc.invert(pc.fill_null(msisdn_valid(cleaned), False)))
        counts["msisdn.malformed"] = _rows(wrong, indices)
    elif identifier == "imsi":
        bad_mcc = pc.invert(pc.fill_null(imsi_mcc_valid(cleaned), False))
        bad_length = pc.invert(pc.fill_null(imsi_length_valid(cleaned), False))
        counts["imsi.mcc"] = _rows(pc.and_(present, bad_mcc), indices)
        counts["imsi.length"] = _rows(pc.and_(present, bad_length), indices)
        counts["imsi.malformed"] = _rows(
            pc.and_(present, pc.or_(bad_mcc, bad_length)), indices
        )
    elif identifier == "imei":
        digits = pc.fill_null(
            pc.match_substring_regex(cleaned, rf"^[0-9]{{{IMEI_DIGITS}}}$"), False
        )
        luhn = pc.fill_null(imei_luhn_valid(cleaned), False)
        counts["imei.malformed"] = _rows(pc.and_(present, pc.invert(digits)), indices)
        counts["imei.luhn"] = _rows(pc.and_(digits, pc.invert(luhn)), indices)
    return counts
