"""Train a propensity model and its baseline on a stratified held-out split."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from telcoreach.errors import ConfigError, ModelError
from telcoreach.models._metrics import ModelMetrics, evaluate_propensity
from telcoreach.models._pipeline import (
    FeatureSet,
    lightgbm_fit_params,
    lightgbm_pipeline,
    logistic_coefficients,
    logistic_pipeline,
    select_features,
)

if TYPE_CHECKING:
    from telcoreach.models._registry import ModelCard

__all__ = [
    "BASELINES",
    "PropensityModel",
    "TrainResult",
    "train_propensity",
    "training_data_sha256",
]

logger = logging.getLogger(__name__)

#: Baseline models trained beside the logistic regression (``None``: none).
BASELINES = ("lightgbm",)
_TOP_COEFFICIENTS = 10


@dataclass
class PropensityModel:
    """A fitted pipeline with the columns it reads and the label it predicts.

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted pipeline; ``predict_proba`` takes a frame with ``features``.
    label : str
        Column the model predicts.
    numeric_features, categorical_features : list of str
        Feature columns by encoding.
    card : ModelCard or None
        Registry card when the model was loaded from or saved to a registry.
    """

    pipeline: Pipeline
    label: str
    numeric_features: list[str]
    categorical_features: list[str]
    card: ModelCard | None = None

    @property
    def features(self) -> list[str]:
        """Columns the model reads, numeric first."""
        return [*self.numeric_features, *self.categorical_features]


@dataclass
class TrainResult:
    """Summary of a training run: data, features and held-out metrics of each model.

    Attributes
    ----------
    label : str
        Column predicted.
    features, numeric_features, categorical_features : list of str
        Feature columns used, all and by encoding.
    dropped_columns : dict of str to str
        Columns of the frame not used, with the reason.
    rows_train, rows_test : int
        Rows in the training and held-out parts of the split.
    base_rate : float
        Conversion rate of the held-out rows.
    seed : int
        Seed of the split and the baseline.
    test_size : float
        Share of rows held out.
    training_data_sha256 : str
        SHA-256 of the label and feature columns, independent of row order.
    logistic_regression : ModelMetrics
        Held-out metrics of the logistic regression.
    baseline_name : str or None
        Baseline trained beside it (``"lightgbm"``), if any.
    baseline : ModelMetrics or None
        Held-out metrics of the baseline.
    top_coefficients : list of dict
        The largest logistic coefficients on the standardised or one-hot
        encoded features (``feature``, ``coefficient``).
    model, baseline_model : PropensityModel
        The fitted models (not part of :meth:`to_dict`).
    """

    label: str
    features: list[str]
    numeric_features: list[str]
    categorical_features: list[str]
    dropped_columns: dict[str, str]
    rows_train: int
    rows_test: int
    base_rate: float
    seed: int
    test_size: float
    training_data_sha256: str
    logistic_regression: ModelMetrics
    baseline_name: str | None
    baseline: ModelMetrics | None
    top_coefficients: list[dict]
    model: PropensityModel = field(repr=False)
    baseline_model: PropensityModel | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Return the summary as a JSON-serialisable dict (without the models)."""
        return {
            "label": self.label,
            "features": list(self.features),
            "numeric_features": list(self.numeric_features),
            "categorical_features": list(self.categorical_features),
            "dropped_columns": dict(self.dropped_columns),
            "rows_train": self.rows_train,
            "rows_test": self.rows_test,
            "base_rate": self.base_rate,
            "seed": self.seed,
            "test_size": self.test_size,
            "training_data_sha256": self.training_data_sha256,
            "metrics": self.metrics_dict(),
            "top_coefficients": [dict(row) for row in self.top_coefficients],
        }

    def metrics_dict(self) -> dict[str, dict]:
        """Return the held-out metrics of each model keyed by model name."""
        metrics = {"logistic_regression": self.logistic_regression.to_dict()}
        if self.baseline is not None:
            metrics[str(self.baseline_name)] = self.baseline.to_dict()
        return metrics


def train_propensity(
    frame: pd.DataFrame,
    label: str,
    features: list[str] | None = None,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    baseline: str | None = "lightgbm",
) -> TrainResult:
    """Train a logistic-regression propensity model and report held-out metrics.

    The rows are split, stratified by the label, into a training part and a
    held-out part of ``test_size``; both models are fitted on the training
    part and evaluated on the held-out part.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per subscriber (or contact) with the label and the features.
    label : str
        Boolean (or 0/1) column to predict, e.g. ``converted``.
    features : list of str, optional
        Feature columns. By default every column except the label, identifier
        columns (``subscriber``, ``msisdn``, ``*_token``) and timestamps.
        Constant columns are dropped either way, with a log line.
    test_size : float, default 0.25
        Share of rows held out for the metrics, in ``(0, 1)``.
    seed : int, default 0
        Seed of the split and of the baseline; the same seed and data give the
        same models and metrics.
    baseline : {"lightgbm", None}, default "lightgbm"
        Model trained beside the logistic regression for comparison.

    Returns
    -------
    TrainResult
        Metrics of both models side by side and the fitted models.

    Raises
    ------
    ConfigError
        If ``test_size``, ``seed`` or ``baseline`` has a wrong value.
    ModelError
        If the label is missing, not binary, has missing values or too few
        rows of a class, or if no usable feature column is left.

    Notes
    -----
    Numeric features are imputed with the training median and standardised;
    boolean and text features are imputed with a ``"missing"`` category and
    one-hot encoded, ignoring categories first seen when scoring. The
    logistic regression is unweighted (``class_weight=None``), so its
    propensities estimate probabilities on the training population. The
    saved model is the one fitted on the training part, so the reported
    metrics describe exactly the model that scores.

    Examples
    --------
    >>> result = train_propensity(frame, "converted")  # doctest: +SKIP
    >>> result.logistic_regression.auc, result.baseline.auc  # doctest: +SKIP
    (0.79, 0.80)
    """
    _check_options(test_size, seed, baseline)
    if not isinstance(frame, pd.DataFrame):
        raise ModelError(
            f"expected a pandas DataFrame to train on; found {type(frame).__name__}"
        )
    outcome = _label_values(frame, label)
    feature_set = select_features(frame, label, features)
    data_hash = training_data_sha256(frame[[*feature_set.names, label]])

    rows = np.arange(len(frame))
    train_rows, test_rows = train_test_split(
        rows, test_size=test_size, stratify=outcome, random_state=seed
    )
    train_x = frame.iloc[train_rows][feature_set.names]
    test_x = frame.iloc[test_rows][feature_set.names]
    train_y, test_y = outcome[train_rows], outcome[test_rows]

    started = time.perf_counter()
    logistic = logistic_pipeline(feature_set).fit(train_x, train_y)
    logistic_metrics = evaluate_propensity(test_y, logistic.predict_proba(test_x)[:, 1])
    logger.info(
        "logistic regression on %d rows, %d features: held-out AUC %.4f (%.1f s)",
        len(train_rows),
        len(feature_set.names),
        logistic_metrics.auc,
        time.perf_counter() - started,
    )

    baseline_model, baseline_metrics = None, None
    if baseline is not None:
        started = time.perf_counter()
        boosted = lightgbm_pipeline(feature_set, seed)
        boosted.fit(train_x, train_y, **lightgbm_fit_params(feature_set))
        baseline_metrics = evaluate_propensity(
            test_y, boosted.predict_proba(test_x)[:, 1]
        )
        baseline_model = _wrap(boosted, label, feature_set)
        logger.info(
            "%s baseline: held-out AUC %.4f (%.1f s)",
            baseline,
            baseline_metrics.auc,
            time.perf_counter() - started,
        )

    return TrainResult(
        label=label,
        features=feature_set.names,
        numeric_features=feature_set.numeric,
        categorical_features=feature_set.categorical,
        dropped_columns=feature_set.dropped,
        rows_train=len(train_rows),
        rows_test=len(test_rows),
        base_rate=logistic_metrics.base_rate,
        seed=seed,
        test_size=float(test_size),
        training_data_sha256=data_hash,
        logistic_regression=logistic_metrics,
        baseline_name=baseline,
        baseline=baseline_metrics,
        top_coefficients=logistic_coefficients(logistic)[:_TOP_COEFFICIENTS],
        model=_wrap(logistic, label, feature_set),
        baseline_model=baseline_model,
    )


def training_data_sha256(frame: pd.DataFrame) -> str:
    """Return a SHA-256 of a frame's columns and rows that ignores row order.

    Each row is reduced to pandas' stable 64-bit row hash (over the columns in
    name order); the sorted row hashes, after the column names and dtypes, are
    hashed with SHA-256. Reordering rows or columns keeps the hash; changing,
    adding or removing a value, or changing a dtype, changes it.
    """
    columns = sorted(map(str, frame.columns))
    canonical = frame.rename(columns=str)[columns]
    row_hashes = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    digest = hashlib.sha256()
    for column in columns:
        digest.update(f"{column}:{canonical[column].dtype}\n".encode())
    digest.update(np.sort(row_hashes).astype("<u8").tobytes())
    return digest.hexdigest()


def _check_options(test_size, seed, baseline) -> None:
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise ConfigError(f"test_size must be a number in (0, 1); found {test_size!r}")
    if not 0 < test_size < 1:
        raise ConfigError(
            f"test_size must be a share of rows strictly between 0 and 1 "
            f"(e.g. 0.25); found {test_size}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; found {seed!r}")
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(
            f"unknown baseline {baseline!r}; expected one of "
            f"{', '.join(BASELINES)} or None"
        )


def _label_values(frame: pd.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise ModelError(
            f"label column {label!r} not in the training frame; it has "
            f"{', '.join(map(str, frame.columns))}"
        )
    values = frame[label]
    missing = int(values.isna().sum())
    if missing:
        raise ModelError(
            f"label {label!r} has {missing} missing values; expected every row "
            "to have an outcome. Drop or fill those rows first."
        )
    distinct = set(pd.unique(values).tolist())
    if not distinct <= {True, False}:
        raise ModelError(
            f"label {label!r} must be boolean or 0/1; found values "
            f"{sorted(map(str, distinct))[:5]}"
        )
    outcome = values.to_numpy(dtype=bool)
    positives = int(outcome.sum())
    negatives = outcome.size - positives
    if min(positives, negatives) < 2:
        raise ModelError(
            f"label {label!r} needs at least 2 rows of each outcome for a "
            f"stratified split; found {positives} true and {negatives} false"
        )
    return outcome


def _wrap(pipeline: Pipeline, label: str, feature_set: FeatureSet) -> PropensityModel:
    return PropensityModel(
        pipeline=pipeline,
        label=label,
        numeric_features=list(feature_set.numeric),
        categorical_features=list(feature_set.categorical),
    )
