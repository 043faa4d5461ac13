"""Accuracy of profiles and tiers against a simulated city's ground truth."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from telcoreach.engine import Engine
from telcoreach.errors import DataSourceError

__all__ = ["evaluate_against_truth"]

logger = logging.getLogger(__name__)


def evaluate_against_truth(engine: Engine, truth_path: Path) -> dict[str, Any]:
    """Compare profiles and tiers with the simulator's hidden ground truth.

    The truth file keys people by raw MSISDN; it is tokenised here with the
    workspace key, in memory, and never written anywhere.

    Returns
    -------
    dict
        ``home_cell_accuracy``, ``work_cell_accuracy`` (over people with a
        true work place), per-tier precision/recall/support and the subway
        commuter flag's precision/recall.
    """
    if not truth_path.is_file():
        raise DataSourceError(f"ground-truth file {truth_path} not found")
    truth = pacsv.read_csv(
        truth_path,
        convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True,
            column_types={
                "msisdn": pa.string(),
                "home_cell": pa.string(),
                "work_cell": pa.string(),
            },
        ),
    )
    tokens = engine.workspace.pseudonymiser.tokenise("msisdn", truth["msisdn"])
    truth = truth.drop(["msisdn"]).to_pandas().add_prefix("true_")
    truth["subscriber"] = tokens.to_pylist()

    profiles = engine.table("profiles")
    wanted = [
        c
        for c in ("home_cell", "work_cell", "subway_commuter")
        if c in profiles.columns
    ]
    found = profiles.select("subscriber", *wanted).to_pandas()
    if engine.has_table("tiers"):
        tiers = engine.table("tiers").select("subscriber", "tier").to_pandas()
        found = found.merge(tiers, on="subscriber", how="left")
    merged = truth.merge(found, on="subscriber", how="inner")
    result: dict[str, Any] = {"subscribers_evaluated": len(merged)}

    result["home_cell_accuracy"] = float(
        (merged["home_cell"] == merged["true_home_cell"]).mean()
    )
    with_work = merged[merged["true_work_cell"].notna()]
    result["work_cell_accuracy"] = float(
        (with_work["work_cell"] == with_work["true_work_cell"]).mean()
    )
    result["work_cell_evaluated"] = len(with_work)
    if "tier" in merged:
        result["tiers"] = {
            tier: _precision_recall(merged["tier"] == tier, merged["true_tier"] == tier)
            for tier in sorted(merged["true_tier"].dropna().unique())
        }
    if "subway_commuter" in merged and "true_subway_commuter" in merged:
        result["subway_commuter"] = _precision_recall(
            _flag(merged["subway_commuter"]), _flag(merged["true_subway_commuter"])
        )
    logger.info("evaluated %d subscribers against ground truth", len(merged))
    return result


def _flag(values: pd.Series) -> pd.Series:
    if values.dtype == object:
        values = values.astype(str).str.lower().isin(["true", "1", "yes"])
    return values.fillna(False).astype(bool)


def _precision_recall(predicted: pd.Series, actual: pd.Series) -> dict[str, float]:
    true_positive = int((predicted & actual).sum())
    precision = true_positive / max(int(predicted.sum()), 1)
    recall = true_positive / max(int(actual.sum()), 1)
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "support": int(actual.sum()),
        "predicted": int(predicted.sum()),
    }
