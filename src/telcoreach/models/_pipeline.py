"""Feature selection and the two fitted pipelines: logistic regression and LightGBM.

Both pipelines take a pandas frame with the feature columns by name, so a model
loaded from the registry scores any frame that has those columns, whatever
else it holds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from telcoreach.errors import ModelError

logger = logging.getLogger(__name__)

#: Columns that identify a subscriber: never features, since a model keyed on
#: who someone is memorises people instead of learning behaviour.
IDENTIFIER_COLUMNS = frozenset({"subscriber", "msisdn", "imsi", "imei"})
_TOKEN_COLUMN = re.compile(r"(^|_)token$")
#: Category that stands for a missing categorical or boolean value.
MISSING_CATEGORY = "missing"
_LOGISTIC_MAX_ITER = 2000


@dataclass(frozen=True)
class FeatureSet:
    """Feature columns split by how they are encoded, and the columns left out."""

    numeric: list[str]
    categorical: list[str]
    dropped: dict[str, str]

    @property
    def names(self) -> list[str]:
        """All feature columns, numeric first."""
        return [*self.numeric, *self.categorical]


def is_identifier(column: str) -> bool:
    """Return whether ``column`` names a subscriber identifier or token."""
    return column in IDENTIFIER_COLUMNS or bool(_TOKEN_COLUMN.search(column))


def select_features(
    frame: pd.DataFrame, label: str, features: list[str] | None
) -> FeatureSet:
    """Return the usable feature columns of ``frame`` and why others are left out.

    Without ``features`` every column but the label, identifiers and
    timestamps is a candidate; constant columns are dropped either way.
    """
    if features is None:
        candidates, dropped = [], {}
        for column in frame.columns:
            if column == label:
                continue
            if is_identifier(column):
                dropped[column] = "identifier"
            elif _is_time(frame[column]):
                dropped[column] = "timestamp (derive e.g. a month column to use it)"
            else:
                candidates.append(column)
    else:
        candidates, dropped = list(dict.fromkeys(features)), {}
        _check_requested(frame, label, candidates)

    usable = []
    for column in candidates:
        if frame[column].nunique(dropna=False) <= 1:
            dropped[column] = "constant"
            logger.info("feature %s dropped: it holds a single value", column)
        else:
            usable.append(column)
    for column, reason in dropped.items():
        if reason != "constant":
            logger.info("column %s not used as a feature: %s", column, reason)
    if not usable:
        raise ModelError(
            f"expected at least one varying feature column besides {label!r}; "
            f"found none (left out: {dropped or 'nothing'}). Add feature columns."
        )

    categorical = [c for c in usable if _is_categorical(frame[c])]
    numeric = [c for c in usable if c not in categorical]
    return FeatureSet(numeric=numeric, categorical=categorical, dropped=dropped)


def _check_requested(frame: pd.DataFrame, label: str, features: list[str]) -> None:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ModelError(
            f"feature columns {', '.join(missing)} not in the training frame; "
            f"it has {', '.join(map(str, frame.columns))}"
        )
    if label in features:
        raise ModelError(
            f"the label {label!r} is listed as a feature; remove it from features"
        )
    identifiers = [c for c in features if is_identifier(c)]
    if identifiers:
        raise ModelError(
            f"identifier columns {', '.join(identifiers)} cannot be features; "
            "remove them (a model must not learn who a subscriber is)"
        )
    times = [c for c in features if _is_time(frame[c])]
    if times:
        raise ModelError(
            f"timestamp columns {', '.join(times)} cannot be features as they "
            "are; derive a numeric or categorical column (e.g. month) first"
        )


def _is_time(values: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ) or pd.api.types.is_timedelta64_dtype(values.dtype)


def _is_categorical(values: pd.Series) -> bool:
    dtype = values.dtype
    return pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype)


def as_float(columns: pd.DataFrame) -> np.ndarray:
    """Return numeric feature columns as a float matrix, missing values as NaN."""
    return columns.to_numpy(dtype=np.float64, na_value=np.nan)


class CategoryCodes(TransformerMixin, BaseEstimator):
    """Encode text, boolean or categorical columns as integer category codes.

    ``fit`` learns each column's categories (its distinct values as text, a
    missing value counting as the category ``"missing"``); ``transform``
    returns their codes, ``-1`` for a category not seen in ``fit``. Lookups are
    vectorised (pandas hash tables), so scoring millions of rows stays fast.

    Attributes
    ----------
    categories_ : list of numpy.ndarray
        Sorted categories of each column; a code indexes into them.
    """

    def fit(self, columns, y=None):
        """Learn the categories of each column of ``columns``."""
        frame = pd.DataFrame(columns)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.categories_ = [
            np.sort(_texts(frame[column]).unique().to_numpy(dtype=object))
            for column in frame.columns
        ]
        return self

    def transform(self, columns):
        """Return the category codes of ``columns`` as an ``int32`` matrix."""
        check_is_fitted(self, "categories_")
        frame = pd.DataFrame(columns)
        codes = np.empty(frame.shape, dtype=np.int32)
        for index, column in enumerate(frame.columns):
            codes[:, index] = pd.Categorical(
                _texts(frame[column]), categories=self.categories_[index]
            ).codes
        return codes

    def get_feature_names_out(self, input_features=None):
        """Return the input column names: one code column per input column."""
        check_is_fitted(self, "categories_")
        return self.feature_names_in_.copy()


def _texts(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna(MISSING_CATEGORY)


def logistic_pipeline(feature_set: FeatureSet) -> Pipeline:
    """Return an unfitted pipeline: impute, scale, one-hot, logistic regression."""
    numeric = Pipeline(
        [
            ("to_float", FunctionTransformer(as_float, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("codes", CategoryCodes()),
            ("one_hot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    # Kept sparse: one-hot columns are mostly zeros, and the solver's products
    # then cost the non-zeros only, which matters for wide categories.
    encode = _column_transformer(feature_set, numeric, categorical, sparse=True)
    classifier = LogisticRegression(solver="lbfgs", max_iter=_LOGISTIC_MAX_ITER)
    return Pipeline([("encode", encode), ("classifier", classifier)])


def lightgbm_pipeline(feature_set: FeatureSet, seed: int) -> Pipeline:
    """Return an unfitted pipeline: category codes and a deterministic LightGBM."""
    from lightgbm import LGBMClassifier

    numeric = FunctionTransformer(as_float, feature_names_out="one-to-one")
    # LightGBM treats a negative category code, here an unseen one, as missing.
    encode = _column_transformer(feature_set, numeric, CategoryCodes())
    classifier = LGBMClassifier(
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=100,
        random_state=seed,
        deterministic=True,
        force_col_wise=True,
        n_jobs=2,
        verbose=-1,
    )
    return Pipeline([("encode", encode), ("classifier", classifier)])


def lightgbm_fit_params(feature_set: FeatureSet) -> dict:
    """Return fit arguments telling LightGBM which encoded columns are categories."""
    first = len(feature_set.numeric)
    codes = list(range(first, first + len(feature_set.categorical)))
    return {"classifier__categorical_feature": codes or "auto"}


def _column_transformer(
    feature_set: FeatureSet, numeric, categorical, *, sparse: bool = False
) -> ColumnTransformer:
    parts = []
    if feature_set.numeric:
        parts.append(("numeric", numeric, feature_set.numeric))
    if feature_set.categorical:
        parts.append(("categorical", categorical, feature_set.categorical))
    return ColumnTransformer(
        parts, remainder="drop", sparse_threshold=1.0 if sparse else 0.0
    )


def logistic_coefficients(pipeline: Pipeline) -> list[dict]:
    """Return the fitted logistic coefficients per encoded feature, largest first.

    Numeric features are named as their column (the coefficient is per
    standard deviation); one-hot features as ``column=category``.
    """
    names = []
    for part, transformer, columns in pipeline.named_steps["encode"].transformers_:
        if part == "numeric":
            names.extend(columns)
        elif part == "categorical":
            codes = transformer.named_steps["codes"]
            one_hot = transformer.named_steps["one_hot"]
            for index, column in enumerate(columns):
                labels = codes.categories_[index]
                names.extend(
                    f"{column}={labels[int(code)]}"
                    for code in one_hot.categories_[index]
                )
    weights = pipeline.named_steps["classifier"].coef_[0]
    order = np.argsort(-np.abs(weights), kind="stable")
    return [{"feature": names[i], "coefficient": float(weights[i])} for i in order]
