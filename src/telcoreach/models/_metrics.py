"""Held-out metrics of a propensity score: ranking, lift and calibration.

A propensity is a predicted probability that a subscriber converts (buys the
offer) if contacted. Marketing cares about three things: does the score rank
converters first (ROC AUC, the Kolmogorov-Smirnov statistic KS), how much
better than random is contacting the top tenth (lift), and can the score be
read as a probability (calibration).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telcoreach.errors import ModelError

__all__ = ["CURVE_POINTS", "LIFT_FRACTION", "ModelMetrics", "evaluate_propensity"]

#: Share of the population, ranked by propensity, whose conversion rate the lift
#: compares with the base rate.
LIFT_FRACTION = 0.10
#: Most points kept in a ROC or gain curve, enough for a chart.
CURVE_POINTS = 101
_CALIBRATION_BINS = 10


@dataclass(frozen=True)
class ModelMetrics:
    """Metrics of one model's propensities on held-out rows.

    Attributes
    ----------
    auc : float
        Area under the ROC curve: the chance that a random converter scores
        above a random non-converter (ties count half).
    ks : float
        Kolmogorov-Smirnov statistic: the largest gap between the score
        distributions of converters and non-converters (the largest
        ``TPR - FPR`` along the ROC curve).
    lift_at_10pct : float
        Conversion rate among the 10 % of rows with the highest propensity
        divided by the base rate.
    base_rate : float
        Conversion rate of all rows evaluated.
    rows, positives : int
        Rows evaluated and how many of them converted.
    calibration : list of dict
        Ten equal-width bins of predicted probability (``[0, 0.1]``,
        ``(0.1, 0.2]``, ..., ``(0.9, 1]``, as scikit-learn's
        ``calibration_curve``), each with ``bin_lower``, ``bin_upper``, ``count``,
        ``mean_predicted`` and ``observed_rate`` (``None`` for an empty bin).
    roc : dict of list
        ``fpr``, ``tpr`` and ``threshold`` of up to 101 ROC points from (0, 0)
        to (1, 1); the first threshold is ``None`` (nobody selected).
    gain : dict of list
        Cumulative gain and lift at 101 population shares 0, 0.01, ..., 1:
        ``population_share``, ``gain`` (share of all converters found) and
        ``lift`` (``gain / population_share``, ``None`` at 0).
    """

    auc: float
    ks: float
    lift_at_10pct: float
    base_rate: float
    rows: int
    positives: int
    calibration: list[dict]
    roc: dict[str, list]
    gain: dict[str, list]

    def to_dict(self) -> dict:
        """Return the metrics as a JSON-serialisable dict."""
        return {
            "auc": self.auc,
            "ks": self.ks,
            "lift_at_10pct": self.lift_at_10pct,
            "base_rate": self.base_rate,
            "rows": self.rows,
            "positives": self.positives,
            "calibration": [dict(row) for row in self.calibration],
            "roc": {key: list(values) for key, values in self.roc.items()},
            "gain": {key: list(values) for key, values in self.gain.items()},
        }

    @classmethod
    def from_dict(cls, values: dict) -> ModelMetrics:
        """Return the metrics stored by :meth:`to_dict`."""
        return cls(**values)


def evaluate_propensity(converted, propensity) -> ModelMetrics:
    """Return AUC, KS, lift at 10 %, calibration and curves of propensities.

    Parameters
    ----------
    converted : array-like of bool
        Observed outcome of each row (true: converted).
    propensity : array-like of float
        Predicted probability of conversion of each row, in ``[0, 1]``.

    Returns
    -------
    ModelMetrics

    Raises
    ------
    ModelError
        If the arrays differ in length, a propensity is outside ``[0, 1]`` or
        not finite, or the rows do not hold both outcomes.

    Notes
    -----
    The top 10 % is the ``round(0.1 * rows)`` (at least 1) highest
    propensities; rows tied at the cut are taken in input order.

    Examples
    --------
    >>> m = evaluate_propensity([True, False, True, False], [0.9, 0.1, 0.6, 0.7])
    >>> m.auc
    0.75
    """
    outcome, scores = _checked(converted, propensity)
    rows = outcome.size
    positives = int(outcome.sum())
    base_rate = positives / rows

    order = np.argsort(-scores, kind="stable")
    ranked_outcome = outcome[order]
    ranked_scores = scores[order]

    fpr, tpr, thresholds = _roc_points(ranked_outcome, ranked_scores, positives)
    auc = float(np.trapezoid(tpr, fpr))
    ks = float(np.max(np.abs(tpr - fpr)))

    top_rows = max(1, int(np.floor(LIFT_FRACTION * rows + 0.5)))
    lift = float(ranked_outcome[:top_rows].mean() / base_rate)

    return ModelMetrics(
        auc=auc,
        ks=ks,
        lift_at_10pct=lift,
        base_rate=float(base_rate),
        rows=int(rows),
        positives=positives,
        calibration=_calibration(outcome, scores),
        roc=_downsampled_roc(fpr, tpr, thresholds),
        gain=_gain_curve(ranked_outcome, positives),
    )


def _checked(converted, propensity) -> tuple[np.ndarray, np.ndarray]:
    outcome = np.asarray(converted)
    scores = np.asarray(propensity, dtype=np.float64)
    if outcome.ndim != 1 or scores.ndim != 1 or outcome.size != scores.size:
        raise ModelError(
            "expected one outcome per propensity (two 1-d arrays of equal length); "
            f"found shapes {outcome.shape} and {scores.shape}"
        )
    if outcome.dtype != bool:
        if not np.isin(outcome, [0, 1]).all():
            raise ModelError(
                "expected outcomes as booleans or 0/1; found values "
                f"{np.unique(outcome)[:5].tolist()}"
            )
        outcome = outcome.astype(bool)
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ModelError(
            "expected propensities in [0, 1]; found values from "
            f"{np.nanmin(scores)} to {np.nanmax(scores)} "
            f"({int((~np.isfinite(scores)).sum())} not finite)"
        )
    positives = int(outcome.sum())
    if positives in (0, outcome.size):
        raise ModelError(
            "expected held-out rows with both outcomes to evaluate a propensity; "
            f"found {positives} converted of {outcome.size}. Use more rows."
        )
    return outcome, scores


def _roc_points(
    ranked_outcome: np.ndarray, ranked_scores: np.ndarray, positives: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return FPR, TPR and threshold at each distinct score, highest first."""
    negatives = ranked_outcome.size - positives
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked_scores)), ranked_outcome.size - 1]
    true_positives = np.cumsum(ranked_outcome)[last_of_tie]
    false_positives = last_of_tie + 1 - true_positives
    fpr = np.r_[0.0, false_positives / negatives]
    tpr = np.r_[0.0, true_positives / positives]
    thresholds = np.r_[np.inf, ranked_scores[last_of_tie]]
    return fpr, tpr, thresholds


def _downsampled_roc(
    fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray
) -> dict[str, list]:
    keep = np.arange(fpr.size)
    if fpr.size > CURVE_POINTS:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, CURVE_POINTS)))
        keep = keep.astype(np.int64)
    threshold = [None if np.isinf(t) else float(t) for t in thresholds[keep]]
    return {
        "fpr": fpr[keep].tolist(),
        "tpr": tpr[keep].tolist(),
        "threshold": threshold,
    }


def _gain_curve(ranked_outcome: np.ndarray, positives: int) -> dict[str, list]:
    rows = ranked_outcome.size
    share = np.linspace(0.0, 1.0, CURVE_POINTS)
    selected_rows = np.floor(share * rows + 0.5).astype(np.int64)
    found = np.r_[0, np.cumsum(ranked_outcome)][selected_rows]
    base_rate = positives / rows
    lift = [
        None if selected == 0 else float(hits / selected / base_rate)
        for selected, hits in zip(selected_rows.tolist(), found.tolist(), strict=True)
    ]
    return {
        "population_share": share.round(2).tolist(),
        "gain": (found / positives).tolist(),
        "lift": lift,
    }


def _calibration(outcome: np.ndarray, scores: np.ndarray) -> list[dict]:
    edges = np.linspace(0.0, 1.0, _CALIBRATION_BINS + 1)
    bins = np.searchsorted(edges[1:-1], scores, side="left")
    counts = np.bincount(bins, minlength=_CALIBRATION_BINS)
    predicted = np.bincount(bins, weights=scores, minlength=_CALIBRATION_BINS)
    observed = np.bincount(bins, weights=outcome, minlength=_CALIBRATION_BINS)
    table = []
    for index, count in enumerate(counts.tolist()):
        table.append(
            {
                "bin_lower": float(edges[index].round(2)),
                "bin_upper": float(edges[index + 1].round(2)),
                "count": count,
                "mean_predicted": float(predicted[index] / count) if count else None,
                "observed_rate": float(observed[index] / count) if count else None,
            }
        )
    return table
