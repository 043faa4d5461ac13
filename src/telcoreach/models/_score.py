"""Apply a propensity model to new rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from telcoreach.errors import ModelError
from telcoreach.models._train import PropensityModel, TrainResult

__all__ = ["score"]


def score(model: PropensityModel | TrainResult, frame: pd.DataFrame) -> np.ndarray:
    """Return the propensity (probability of converting) of each row of ``frame``.

    Parameters
    ----------
    model : PropensityModel or TrainResult
        A model from :func:`load_model`, or a training result (its logistic
        regression is applied).
    frame : pandas.DataFrame
        Rows to score with at least the model's feature columns; other
        columns are ignored.

    Returns
    -------
    numpy.ndarray of float64
        One propensity in ``[0, 1]`` per row, in row order.

    Raises
    ------
    ModelError
        If a feature column is missing or holds values of the wrong type.
    """
    if isinstance(model, TrainResult):
        model = model.model
    if not isinstance(model, PropensityModel):
        raise ModelError(
            "expected a PropensityModel (from load_model) or a TrainResult; "
            f"found {type(model).__name__}"
        )
    if not isinstance(frame, pd.DataFrame):
        raise ModelError(
            f"expected a pandas DataFrame to score; found {type(frame).__name__}"
        )
    missing = [column for column in model.features if column not in frame.columns]
    if missing:
        raise ModelError(
            f"cannot score: feature columns {', '.join(missing)} are missing; the "
            f"model reads {', '.join(model.features)}"
        )
    if frame.empty:
        return np.empty(0, dtype=np.float64)
    try:
        propensity = model.pipeline.predict_proba(frame[model.features])[:, 1]
    except (ValueError, TypeError) as exc:
        raise ModelError(
            f"cannot score: a feature column has values the model cannot read "
            f"({exc}); numeric features must be numbers: "
            f"{', '.join(model.numeric_features) or 'none'}"
        ) from exc
    return propensity.astype(np.float64)
