"""Assign subscribers to experiment variants by hashing their token.

Each token is hashed with SHA-256 together with an experiment salt (a name
unique to the experiment). The 256-bit digest is read as two independent
uniform numbers in [0, 1): the first decides the holdout (people the
campaign never touches, kept to measure its total effect), the second picks
the variant by cumulative weight. So the assignment is a pure function of
token and salt: re-running it, on any machine, gives the same split, a new
salt gives an independent one, and changing the variant weights never moves
anyone in or out of the holdout.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

from telcoreach.errors import ConfigError, PrivacyError, SchemaError
from telcoreach.privacy import find_raw_identifiers

__all__ = ["HOLDOUT", "assign_variants", "hash_uniforms"]

logger = logging.getLogger(__name__)

#: Variant name of the untouched holdout.
HOLDOUT = "holdout"
_SCALE = 2.0**-53
_PRIVACY_SAMPLE = 1000


def hash_uniforms(tokens: Iterable[str], experiment_salt: str) -> np.ndarray:
    """Return two uniform numbers in [0, 1) per token from SHA-256(salt:token).

    Parameters
    ----------
    tokens : iterable of str
        Subscriber tokens.
    experiment_salt : str
        Experiment name; the digest is of ``f"{experiment_salt}:{token}"``
        encoded as UTF-8.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 2)``: column 0 from digest bytes 0-7, column 1 from bytes
        8-15, each the top 53 bits of a big-endian unsigned integer times
        ``2**-53``.
    """
    sha256 = hashlib.sha256
    prefix = f"{experiment_salt}:"
    # One C call per token; the arithmetic after it is vectorised.
    digests = b"".join([sha256((prefix + token).encode()).digest() for token in tokens])
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 4)[:, :2]
    return (words >> np.uint64(11)).astype(np.float64) * _SCALE


def assign_variants(
    tokens: Iterable[str] | pa.Array | pa.ChunkedArray,
    experiment_salt: str,
    variants: Mapping[str, float],
    holdout: float = 0.1,
) -> pa.Table:
    """Split subscribers into variants and a holdout, deterministically.

    Parameters
    ----------
    tokens : sequence of str, pyarrow array or pandas Series
        Subscriber tokens (never raw phone numbers or IMSIs).
    experiment_salt : str
        Experiment name mixed into the hash; reuse it to reproduce the split,
        change it for an independent one.
    variants : mapping of str to float
        Variant names and relative weights (normalised to sum to 1 over the
        non-holdout share), e.g. ``{"sms": 1, "push": 1}``.
    holdout : float
        Share of all subscribers kept out of every variant, in [0, 1).

    Returns
    -------
    pyarrow.Table
        Columns ``subscriber`` (the token) and ``variant`` (a variant name or
        ``"holdout"``), in input order.

    Raises
    ------
    ConfigError
        If the salt is empty, a weight is not positive, a variant is named
        ``holdout`` or ``holdout`` is outside [0, 1).
    SchemaError
        If a token is missing.
    PrivacyError
        If the tokens look like raw MSISDN, IMSI or IMEI numbers.

    Examples
    --------
    >>> table = assign_variants(["a" * 24, "b" * 24], "spring-sms", {"sms": 1})
    >>> table.column_names
    ['subscriber', 'variant']
    """
    _check_split(experiment_salt, variants, holdout)
    token_array = _as_string_array(tokens)
    if token_array.null_count:
        raise SchemaError(
            f"assignment: expected a token for every subscriber, found "
            f"{token_array.null_count} missing; drop those rows first"
        )
    values = token_array.to_pylist()
    sample = "\n".join(values[:_PRIVACY_SAMPLE])
    if find_raw_identifiers(sample, limit=1):
        raise PrivacyError(
            "assignment: expected subscriber tokens, found values that look like "
            "raw phone numbers, IMSIs or IMEIs; assign the audience exported by "
            "`telcoreach audience` (column subscriber) instead"
        )

    uniforms = hash_uniforms(values, experiment_salt)
    names = list(variants)
    weights = np.array([float(variants[n]) for n in names])
    edges = np.cumsum(weights / weights.sum())
    edges[-1] = 1.0
    picked = np.searchsorted(edges, uniforms[:, 1], side="right")
    codes = np.where(uniforms[:, 0] < holdout, len(names), picked).astype(np.int32)
    labels = pa.DictionaryArray.from_arrays(
        pa.array(codes), pa.array([*names, HOLDOUT])
    ).cast(pa.string())
    logger.info(
        "assigned %d subscribers to %d variants and a %.1f %% holdout",
        len(values),
        len(names),
        100 * holdout,
    )
    return pa.table({"subscriber": token_array, "variant": labels})


def _check_split(salt: str, variants: Mapping[str, float], holdout: float) -> None:
    if not isinstance(salt, str) or not salt.strip():
        raise ConfigError(
            "experiment salt: expected a non-empty name unique to the experiment "
            f"(e.g. 'sms-vs-push-2025-06'), found {salt!r}"
        )
    if not variants:
        raise ConfigError(
            "variants: expected at least one name with a weight, e.g. "
            "sms=1,push=1; found none"
        )
    bad = {n: w for n, w in variants.items() if not float(w) > 0}
    if bad or HOLDOUT in variants:
        raise ConfigError(
            "variants: expected positive weights and no variant called "
            f"{HOLDOUT!r} (the holdout is set with holdout=), found "
            f"{dict(variants)!r}"
        )
    if not 0 <= holdout < 1:
        raise ConfigError(
            f"holdout: expected a share in [0, 1) such as 0.1, found {holdout!r}"
        )


def _as_string_array(tokens) -> pa.Array:
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    if not isinstance(tokens, pa.Array):
        tokens = pa.array(list(tokens) if not hasattr(tokens, "__array__") else tokens)
    if pa.types.is_large_string(tokens.type) or pa.types.is_string_view(tokens.type):
        tokens = tokens.cast(pa.string())
    if not pa.types.is_string(tokens.type):
        raise SchemaError(
            f"assignment: expected subscriber tokens as strings, found type "
            f"{tokens.type}; pass the subscriber column of an audience file"
        )
    return tokens
