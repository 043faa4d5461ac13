"""Find raw personal identifiers in text: the last line of defence in tests."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["RAW_ID_PATTERNS", "find_raw_identifiers", "mask_digit_runs"]

#: Patterns of raw identifiers as they would appear in any text.
#: A run of digits right after a decimal point is a fraction, not an id, and a
#: run inside a longer letters-and-digits word (a hex digest such as an audit
#: hash, a token) is part of that word.
_BEFORE = r"(?<![0-9A-Za-z.])"
_AFTER = r"(?![0-9A-Za-z])"
RAW_ID_PATTERNS: dict[str, re.Pattern[str]] = {
    # Also written in groups: 138 1234 5678, 138-1234-5678.
    "msisdn": re.compile(
        _BEFORE
        + r"(?:\+?86[ \-]?)?1[3-9][0-9](?:[0-9]{8}|[ \-][0-9]{4}[ \-][0-9]{4})"
        + _AFTER
    ),
    "imsi": re.compile(_BEFORE + r"460[0-9]{12}" + _AFTER),
    "imei": re.compile(_BEFORE + r"[0-9]{15}" + _AFTER),
    "id_card": re.compile(_BEFORE + r"[0-9]{17}[0-9Xx]" + _AFTER),
    "bank_card": re.compile(
        _BEFORE + r"(?=62|60|4|5[1-5]|35|9558|95599)[0-9]{16,19}" + _AFTER
    ),
}

_ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def _id_card_check_ok(number: str) -> bool:
    """Whether an 18-character number has a GB 11643 check digit (MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def _luhn_ok(number: str) -> bool:
    """Whether a digit string ends in a valid Luhn check digit."""
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


#: Kinds whose pattern alone gives too many false alarms: a match counts
#: only when its check digit is valid.
_CHECKS = {
    "id_card": _id_card_check_ok,
    "bank_card": _luhn_ok,
}


def find_raw_identifiers(text: str, limit: int = 10) -> dict[str, list[str]]:
    """Return up to ``limit`` matches per identifier kind found in ``text``.

    Matches are masked (all but the last two digits) so that reporting a leak
    does not repeat it. Text is compared in Unicode NFKC form, so full-width
    digits (``１３８…``) are found too.
    """
    text = unicodedata.normalize("NFKC", text)
    found: dict[str, list[str]] = {}
    for kind, pattern in RAW_ID_PATTERNS.items():
        matches = pattern.findall(text)
        if kind in _CHECKS:
            matches = [m for m in matches if _CHECKS[kind](m)]
        matches = matches[:limit]
        if matches:
            found[kind] = ["*" * (len(m) - 2) + m[-2:] for m in matches]
    return found


_MESSAGE_DIGITS = re.compile(r"[0-9]{5,}")


def mask_digit_runs(text: str) -> str:
    """Return ``text`` with every run of 5+ digits masked (it may be a number).

    For error messages that quote input (a parser's complaint, a header):
    they must never repeat a phone number or another identifier.
    """
    return _MESSAGE_DIGITS.sub("<digits>", text)


_DIGIT_RUN = r"[0-9]{7,}|1[3-9][0-9][ \-][0-9]{4}[ \-][0-9]{4}"


def redact_digit_runs(values):
    """Replace long digit runs (possible raw identifiers) in a string array.

    Used on text that could not be parsed into fields (garbage lines, free
    text) so that a quarantined row never carries a raw phone number, IMSI
    or IMEI.
    """
    import pyarrow.compute as pc

    return pc.replace_substring_regex(
        values, pattern=_DIGIT_RUN, replacement="<digits redacted>"
    )
