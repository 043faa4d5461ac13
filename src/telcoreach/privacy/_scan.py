"""Find raw personal identifiers in text: the last line of defence in tests."""

from __future__ import annotations

import re

__all__ = ["RAW_ID_PATTERNS", "find_raw_identifiers"]

#: Patterns of raw identifiers as they would appear in any text.
#: A run of digits right after a decimal point is a fraction, not an id, and a
#: run inside a longer letters-and-digits word (a hex digest such as an audit
#: hash, a token) is part of that word.
_BEFORE = r"(?<![0-9A-Za-z.])"
_AFTER = r"(?![0-9A-Za-z])"
RAW_ID_PATTERNS: dict[str, re.Pattern[str]] = {
    "msisdn": re.compile(_BEFORE + r"(?:\+?86)?1[3-9][0-9]{9}" + _AFTER),
    "imsi": re.compile(_BEFORE + r"460[0-9]{12}" + _AFTER),
    "imei": re.compile(_BEFORE + r"[0-9]{15}" + _AFTER),
}


def find_raw_identifiers(text: str, limit: int = 10) -> dict[str, list[str]]:
    """Return up to ``limit`` matches per identifier kind found in ``text``.

    Matches are masked (all but the last two digits) so that reporting a leak
    does not repeat it.
    """
    found: dict[str, list[str]] = {}
    for kind, pattern in RAW_ID_PATTERNS.items():
        matches = pattern.findall(text)[:limit]
        if matches:
            found[kind] = ["*" * (len(m) - 2) + m[-2:] for m in matches]
    return found


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
