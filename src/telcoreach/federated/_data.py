"""One party's table for vertical federated learning: align, split, encode.

Each party reads its own CSV (or Parquet) file with a shared id column: the
pseudonymous token both parties found with private set intersection (PSI, a
protocol that finds the ids two parties have in common without revealing the
others). Rows are sorted by id so that row ``i`` is the same person on both
sides; categorical columns are one-hot encoded and every column standardised
with the party's own training rows, locally, so that no statistic of a
party's columns ever leaves it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from telcoreach.errors import DataSourceError, SchemaError

__all__ = [
    "PartyData",
    "held_out_mask",
    "ids_digest",
    "load_party_table",
    "prepare_party",
]

logger = logging.getLogger(__name__)

#: Largest magnitude of a standardised value; larger ones are clipped so that
#: the fixed-point encoding of the encrypted protocol cannot overflow.
CLIP_SD = 64.0


@dataclass
class PartyData:
    """One party's aligned, encoded and standardised rows.

    Attributes
    ----------
    ids : numpy.ndarray
        Ids as strings, sorted; row ``i`` of every array is ``ids[i]``.
    features : numpy.ndarray
        ``(rows, columns)`` float matrix, standardised with training rows.
    feature_names : list of str
        Name of each column (``column=value`` for one-hot columns).
    is_test : numpy.ndarray
        Boolean mask of the held-out rows.
    label : numpy.ndarray or None
        0/1 label of the label holder, ``None`` for a party without it.
    means, scales : numpy.ndarray
        Standardisation of each column (training mean and standard deviation).
    source_columns : list of str
        Columns of the input file used as features.
    seed, test_size : int, float
        Seed and share of the held-out split.
    """

    ids: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    is_test: np.ndarray
    label: np.ndarray | None
    means: np.ndarray
    scales: np.ndarray
    source_columns: list[str]
    seed: int = 0
    test_size: float = 0.25

    @property
    def train(self) -> np.ndarray:
        """Feature rows used for training."""
        return self.features[~self.is_test]

    @property
    def test(self) -> np.ndarray:
        """Held-out feature rows."""
        return self.features[self.is_test]


def load_party_table(path: str | Path) -> pd.DataFrame:
    """Return a party's table read from a CSV or Parquet file.

    Raises
    ------
    DataSourceError
        If the file is missing or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataSourceError(
            f"party data file not found at {path}; expected a CSV or Parquet "
            "file with an id column and feature columns"
        )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise DataSourceError(f"cannot parse {path} as CSV or Parquet: {exc}") from exc


def ids_digest(ids: np.ndarray) -> str:
    """Return the SHA-256 of the sorted ids, one per line, as hex."""
    return hashlib.sha256("\n".join(map(str, ids)).encode("utf-8")).hexdigest()


def held_out_mask(ids: np.ndarray, seed: int, test_size: float) -> np.ndarray:
    """Return which ids are held out, from a keyed hash both parties compute.

    An id is held out when the SipHash of the id under a key derived from
    ``seed`` falls in the lowest ``test_size`` share of the hash range, so
    both parties draw the same split from the ids alone.
    """
    key = hashlib.sha256(f"telcoreach-fl-split:{seed}".encode()).hexdigest()[:16]
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=key)
    return (hashed >> np.uint64(11)).astype(np.float64) / 2.0**53 < test_size


def prepare_party(
    frame: pd.DataFrame,
    id_column: str,
    *,
    label: str | None = None,
    features: list[str] | None = None,
    seed: int = 0,
    test_size: float = 0.25,
) -> PartyData:
    """Return a party's rows sorted by id, one-hot encoded and standardised.

    Parameters
    ----------
    frame : pandas.DataFrame
        The party's table: the id column, feature columns and, for the label
        holder, the label.
    id_column : str
        Shared id column (unique, no missing values).
    label : str, optional
        Label column (``yes``/``no``, ``true``/``false`` or 0/1) of the label
        holder; ``None`` for the other party.
    features : list of str, optional
        Feature columns; by default every column but the id and the label.
    seed, test_size : int, float
        Shared seed and share of the held-out split (see :func:`held_out_mask`).

    Raises
    ------
    SchemaError
        If a column is missing, ids repeat or are missing, or the label is not
        binary.
    """
    missing = [c for c in [id_column, label] if c and c not in frame.columns]
    if missing:
        raise SchemaError(
            f"party table lacks the column(s) {', '.join(missing)}; found "
            f"{', '.join(map(str, frame.columns))}. Pass --id-column/--label "
            "with the right names"
        )
    if features is None:
        features = [c for c in frame.columns if c not in (id_column, label)]
    unknown = [c for c in features if c not in frame.columns]
    if unknown or not features:
        raise SchemaError(
            f"feature columns {unknown or '(none)'} not usable; the table has "
            f"{', '.join(map(str, frame.columns))}"
        )
    ids = frame[id_column]
    if ids.isna().any() or ids.duplicated().any():
        raise SchemaError(
            f"id column {id_column!r} must be unique and complete; found "
            f"{int(ids.isna().sum())} missing and {int(ids.duplicated().sum())} "
            "repeated ids. Deduplicate (or run PSI) first"
        )
    frame = frame.assign(**{id_column: ids.astype(str)}).sort_values(id_column)
    sorted_ids = frame[id_column].to_numpy(dtype=object)
    is_test = held_out_mask(sorted_ids, seed, test_size)

    encoded = pd.get_dummies(frame[features], prefix_sep="=", dtype=np.float64)
    encoded = encoded.astype(np.float64)
    if encoded.isna().any().any():
        bad = encoded.columns[encoded.isna().any()].tolist()
        raise SchemaError(
            f"feature columns {bad} have missing values; fill or drop them first"
        )
    matrix = encoded.to_numpy()
    means = matrix[~is_test].mean(axis=0)
    scales = matrix[~is_test].std(axis=0)
    scales[scales == 0] = 1.0
    matrix = np.clip((matrix - means) / scales, -CLIP_SD, CLIP_SD)

    target = None
    if label is not None:
        target = _binary_label(frame[label], label)
    logger.info(
        "party table: %d rows (%d held out), %d source columns -> %d features",
        len(frame),
        int(is_test.sum()),
        len(features),
        matrix.shape[1],
    )
    return PartyData(
        ids=sorted_ids,
        features=matrix,
        feature_names=[str(c) for c in encoded.columns],
        is_test=is_test,
        label=target,
        means=means,
        scales=scales,
        source_columns=list(features),
        seed=seed,
        test_size=test_size,
    )


def _binary_label(values: pd.Series, name: str) -> np.ndarray:
    if values.isna().any():
        raise SchemaError(f"label column {name!r} has {values.isna().sum()} missing")
    text = values.astype(str).str.strip().str.lower()
    mapping = {"yes": 1, "no": 0, "true": 1, "false": 0, "1": 1, "0": 0}
    mapping |= {"1.0": 1, "0.0": 0}
    bad = sorted(set(text.unique()) - set(mapping))
    if bad:
        raise SchemaError(
            f"label column {name!r} must be binary (yes/no, true/false or 0/1); "
            f"found {bad[:5]}"
        )
    return text.map(mapping).to_numpy(dtype=np.float64)
