"""Realistic raw identifiers: MSISDN, IMSI and IMEI with a synthetic TAC table.

Numbers are built as integers and turned into strings by Arrow in one pass,
so a million subscribers take milliseconds. None of them belongs to a real
person: the simulator draws them at random.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = [
    "imei_numbers",
    "luhn_check_digit",
    "tac_table",
    "unique_imsis",
    "unique_msisdns",
]

#: Three-digit mobile prefixes of China Mobile, the largest carrier in Beijing.
MSISDN_PREFIXES = np.array(
    [
        *(134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 157, 158),
        *(159, 172, 178, 182, 183, 184, 187, 188, 195, 197, 198),
    ],
    dtype=np.int64,
)
#: Mobile network codes of China Mobile under MCC 460.
IMSI_NETWORK_CODES = np.array([0, 2, 7], dtype=np.int64)
#: Seed of the synthetic TAC table: fixed so a model keeps its TAC across runs.
_TAC_SEED = 86_2026


def _unique_draws(rng: np.random.Generator, population: int, count: int) -> np.ndarray:
    """Return ``count`` distinct integers in ``[0, population)`` in random order."""
    return rng.choice(population, size=count, replace=False, shuffle=True)


def unique_msisdns(rng: np.random.Generator, count: int) -> pa.Array:
    """Return ``count`` distinct 11-digit MSISDNs ``1[3-9]X XXXX XXXX``."""
    draws = _unique_draws(rng, len(MSISDN_PREFIXES) * 10**8, count)
    numbers = MSISDN_PREFIXES[draws // 10**8] * 10**8 + draws % 10**8
    return pa.array(numbers).cast(pa.string())


def unique_imsis(rng: np.random.Generator, count: int) -> pa.Array:
    """Return ``count`` distinct IMSIs: ``460``, a 2-digit MNC and 10 digits."""
    draws = _unique_draws(rng, len(IMSI_NETWORK_CODES) * 10**10, count)
    network = IMSI_NETWORK_CODES[draws // 10**10]
    numbers = (460 * 100 + network) * 10**10 + draws % 10**10
    return pa.array(numbers).cast(pa.string())


def luhn_check_digit(payload: np.ndarray, digits: int) -> np.ndarray:
    """Return the Luhn check digit of each ``digits``-digit integer in ``payload``.

    Counting from the right of the payload, every first, third... digit is
    doubled (the check digit will sit to their right); doubled values above
    9 lose 9; the check digit brings the sum to a multiple of 10.
    """
    payload = np.asarray(payload, dtype=np.int64)
    total = np.zeros(payload.shape, dtype=np.int64)
    rest = payload.copy()
    for position in range(digits):
        digit = rest % 10
        rest //= 10
        if position % 2 == 0:
            digit = digit * 2
            digit = np.where(digit > 9, digit - 9, digit)
        total += digit
    return (10 - total % 10) % 10


def tac_table(model_count: int) -> np.ndarray:
    """Return distinct synthetic 8-digit TACs, one per handset model.

    A TAC (type allocation code) is the first 8 digits of an IMEI and names
    the handset model. Real TACs are licensed by the GSMA, so these are drawn
    from ``86xxxxxx`` (the range of Chinese manufacturers) with a fixed seed:
    model ``i`` (in the order of the handset distribution) always gets the
    same TAC.
    """
    rng = np.random.default_rng(_TAC_SEED)
    return 86_000_000 + _unique_draws(rng, 10**6, model_count)


def imei_numbers(rng: np.random.Generator, tac_of_subscriber: np.ndarray) -> pa.Array:
    """Return one distinct 15-digit IMEI per subscriber: TAC, serial, Luhn digit."""
    serials = _unique_draws(rng, 10**6, len(tac_of_subscriber))
    payload = np.asarray(tac_of_subscriber, dtype=np.int64) * 10**6 + serials
    numbers = payload * 10 + luhn_check_digit(payload, 14)
    return pa.array(numbers).cast(pa.string())
