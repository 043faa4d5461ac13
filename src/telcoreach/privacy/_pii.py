"""Find and mask Chinese personal data in free text, vectorised over Arrow arrays.

Free text (search keywords typed in an app, host names, notes) may carry
personal data a user typed in. Five kinds are recognised:

``mobile``
    An 11-digit mainland mobile number ``1[3-9]XXXXXXXXX``, optionally after
    ``+86``/``86``, digits possibly grouped by spaces or dashes.
``id_card``
    An 18-character resident identity card number (GB 11643): 17 digits, a
    plausible birth date at positions 7-14, and a check digit (ISO 7064
    MOD 11-2, ``X`` standing for 10).
``imsi``
    An IMSI (International Mobile Subscriber Identity): 15 digits starting
    with the mobile country code 460 (China), then a 2-digit network code
    and a 10-digit subscriber number.
``imei``
    An IMEI (handset serial number): 15 digits whose last is a Luhn check digit.
``bank_card``
    A payment card number: 16-19 digits passing the Luhn check, with an issuer
    prefix common in China (62/60 UnionPay, 4 Visa, 51-55 Mastercard, 35 JCB,
    9558/95599 domestic debit cards).

Candidates are cut out with Arrow regular expressions, checked with numpy on
digit matrices (one per length), and replaced by ``<kind>`` tags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PII_KINDS", "PiiScrub", "scrub_pii"]

logger = logging.getLogger(__name__)

#: Kinds in the order they are tried on a candidate; the first that fits wins.
PII_KINDS: tuple[str, ...] = ("id_card", "mobile", "imsi", "imei", "bank_card")

_MARK = "\x1f"
# A candidate is a maximal digit run (digits may be grouped by single spaces
# or dashes), with an optional leading "+" and trailing fraction. Digits
# after a decimal point are a fraction, never an identifier, so "0.138..."
# is cut out whole and only its integer part is checked. Letters do not
# shield a run: in typed text "qq13812345678" or a host
# "h13812345678.example.com" still carries the number.
_FRACTION = r"(?:\.[0-9]+)?"
_GROUPED = r"\+?[0-9](?:[ \-]?[0-9])*[Xx]?" + _FRACTION
_CONTIGUOUS = r"\+?[0-9]+[Xx]?" + _FRACTION
# A mobile number grouped 3-4-4 and run on into another number
# ("139 1234 5678 2024") fails as a whole run; this pass cuts it out.
_MOBILE_SHAPED = r"(?:\+?86[ \-]?)?1[3-9][0-9][ \-][0-9]{4}[ \-][0-9]{4}"

_MOBILE = r"^(?:\+?86)?1[3-9][0-9]{9}$"
_IMSI = r"^460[0-9]{12}$"
_BANK_PREFIX = r"^(?:62|60|4|5[1-5]|35|9558|95599)"
_ID_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)


@dataclass(frozen=True)
class PiiScrub:
    """Masked text and how many items of each kind were masked."""

    text: pa.Array
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Items masked, all kinds together."""
        return sum(self.counts.values())


def digit_matrix(values: pa.Array, length: int) -> np.ndarray:
    """Return an ``(n, length)`` uint8 matrix of ASCII strings all ``length`` long."""
    values = pc.cast(values, pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.zeros((0, length), dtype=np.uint8)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    start = offsets[values.offset]
    end = offsets[values.offset + len(values)]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[start:end]
    return data.reshape(len(values), length)


def luhn_valid(digits: np.ndarray) -> np.ndarray:
    """Return whether each row of digits (0-9) ends in a valid Luhn check digit."""
    doubled = np.zeros(digits.shape[1], dtype=bool)
    doubled[-2::-2] = True
    values = digits.astype(np.int64)
    values[:, doubled] *= 2
    values -= 9 * (values > 9)
    return values.sum(axis=1) % 10 == 0


def _id_card_ok(chars: np.ndarray) -> np.ndarray:
    """Return whether each 18-character row is a GB 11643 number (date, check)."""
    digits = chars[:, :17].astype(np.int64) - 48
    expected = _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]
    last = np.where(chars[:, 17] == ord("x"), ord("X"), chars[:, 17])
    year = digits[:, 6:10] @ np.array([1000, 100, 10, 1])
    month = digits[:, 10:12] @ np.array([10, 1])
    day = digits[:, 12:14] @ np.array([10, 1])
    plausible = ((year >= 1900) & (year <= 2100) & (month >= 1) & (month <= 12)) & (
        (day >= 1) & (day <= 31)
    )
    return (last == expected) & plausible


def _classify(candidates: pa.Array) -> np.ndarray:
    """Return the 1-based index into :data:`PII_KINDS` of each candidate (0: none)."""
    kind = np.zeros(len(candidates), dtype=np.int8)
    if len(candidates) == 0:
        return kind
    cleaned = pc.replace_substring_regex(candidates, pattern=r"[ \-]", replacement="")
    # An "X" is only an ID-card check digit; elsewhere it is the next word.
    number = pc.replace_substring_regex(cleaned, pattern=r"[Xx]$", replacement="")
    lengths = pc.utf8_length(number).to_numpy(zero_copy_only=False)
    all_digits = pc.match_substring_regex(number, r"^[0-9]+$").to_numpy(
        zero_copy_only=False
    )
    code = {name: i + 1 for i, name in enumerate(PII_KINDS)}

    id_shape = pc.match_substring_regex(cleaned, r"^[0-9]{17}[0-9Xx]$").to_numpy(
        zero_copy_only=False
    )
    rows = np.flatnonzero(id_shape)
    if len(rows):
        ok = _id_card_ok(digit_matrix(cleaned.take(pa.array(rows)), 18))
        kind[rows[ok]] = code["id_card"]

    mobile = pc.match_substring_regex(number, _MOBILE).to_numpy(zero_copy_only=False)
    kind[(kind == 0) & mobile] = code["mobile"]

    imsi = pc.match_substring_regex(number, _IMSI).to_numpy(zero_copy_only=False)
    kind[(kind == 0) & imsi] = code["imsi"]

    bank_prefix = pc.match_substring_regex(number, _BANK_PREFIX).to_numpy(
        zero_copy_only=False
    )
    for length in (15, *range(16, 20)):
        rows = np.flatnonzero((kind == 0) & all_digits & (lengths == length))
        if length > 15:
            rows = rows[bank_prefix[rows]]
        if not len(rows):
            continue
        digits = digit_matrix(number.take(pa.array(rows)), length) - 48
        ok = luhn_valid(digits)
        kind[rows[ok]] = code["imei"] if length == 15 else code["bank_card"]
    return kind


def _scrub_pass(
    text: pa.Array, pattern: str, counts: np.ndarray, tags: pa.Array
) -> pa.Array:
    """Mask the PII among the matches of ``pattern`` in ``text``; add to ``counts``."""
    marked = pc.replace_substring_regex(
        text, pattern=f"({pattern})", replacement=_MARK + r"\1" + _MARK
    )
    pieces = pc.split_pattern(marked, _MARK)
    flat = pc.list_flatten(pieces)
    parents = pc.list_parent_indices(pieces).to_numpy()
    offsets = pieces.offsets.to_numpy()
    # Between two marks (odd positions within a row) sit the candidates.
    position = np.arange(len(flat)) - offsets[parents]
    candidate_rows = np.flatnonzero(position % 2 == 1)
    parts = pc.extract_regex(
        flat.take(pa.array(candidate_rows, pa.int64())),
        r"^(?P<number>[^.]*)(?P<fraction>.*)$",
    )
    kind = _classify(parts.field("number"))
    counts += np.bincount(kind, minlength=len(PII_KINDS) + 1)[1:]

    chosen = np.zeros(len(flat), dtype=np.int64)
    chosen[candidate_rows] = kind
    fraction = np.full(len(flat), "", dtype=object)
    fraction[candidate_rows] = parts.field("fraction").to_numpy(zero_copy_only=False)
    replacement = pc.binary_join_element_wise(
        pc.take(tags, pa.array(chosen)), pa.array(fraction, pa.string()), ""
    )
    masked = pc.if_else(pa.array(chosen > 0), replacement, flat)
    rebuilt = pa.ListArray.from_arrays(pieces.offsets, masked)
    return pc.binary_join(rebuilt, "")


def scrub_pii(values: pa.Array | pa.ChunkedArray) -> PiiScrub:
    """Return ``values`` with mobile, ID-card, IMSI, IMEI and bank-card numbers masked.

    Each item found is replaced by a tag such as ``<mobile>``; nulls stay
    null. Text is first brought to Unicode NFKC form, so full-width digits
    typed with a Chinese input method (``１３８…``) count as digits. Digits
    grouped with spaces or dashes (``138 1234 5678``) are recognised, and a
    run that fails as a whole is tried again for a mobile number inside it
    and then split at its separators.

    Parameters
    ----------
    values : pyarrow.Array or pyarrow.ChunkedArray
        Strings of free text.

    Returns
    -------
    PiiScrub
        The masked strings and the count of items masked per kind.

    Examples
    --------
    >>> import pyarrow as pa
    >>> out = scrub_pii(pa.array(["call +86 138-1234-5678", "id 11010519491231002X"]))
    >>> out.text.to_pylist()
    ['call <mobile>', 'id <id_card>']
    >>> out.counts["mobile"], out.counts["id_card"]
    (1, 1)
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    present = pc.is_valid(values)
    # The marker must not occur in the text itself; it is a control character.
    text = pc.replace_substring(pc.fill_null(values, ""), _MARK, " ")
    text = pc.utf8_normalize(text, "NFKC")
    counts = np.zeros(len(PII_KINDS), dtype=np.int64)
    tags = pa.array(["", *(f"<{name}>" for name in PII_KINDS)], pa.string())
    if len(text):
        for pattern in (_GROUPED, _MOBILE_SHAPED, _CONTIGUOUS):
            text = _scrub_pass(text, pattern, counts, tags)
    masked = pc.if_else(present, text, pa.scalar(None, pa.string()))
    found = {name: int(n) for name, n in zip(PII_KINDS, counts, strict=True)}
    if counts.any():
        logger.debug("masked personal data in free text: %s", found)
    return PiiScrub(masked, found)
