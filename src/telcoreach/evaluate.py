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
                "true_home_cell": pa.string(),
                "true_work_cell": pa.string(),
            },
        ),
    )
    tokens = engine.workspace.pseudonymiser.tokenise("msisdn", truth["msisdn"])
    truth = truth.drop(["msisdn"]).append_column("subscriber", tokens).to_pandas()

    profiles = engine.table("profiles").select("subscriber", "home_cell", "work_cell")
    found = profiles.to_pandas()
    if engine.has_table("tiers"):
        found = found.merge(
            engine.table("tiers").select("subscriber", "tier").to_pandas(),
            on="subscriber",
            how="left",
        )
    if "subway_commuter" in engine.table("profiles").columns:
        found = found.merge(
            engine.table("profiles")
            .select("subscriber", "subway_commuter")
            .to_pandas(),
            on="subscriber",
            how="left",
        )
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
    if "subway_commuter" in merged and "subway_commuter" in truth:
        result["subway_commuter"] = _precision_recall(
            merged["subway_commuter_y"].fillna(False).astype(bool)
            if "subway_commuter_y" in merged
            else merged["subway_commuter"].fillna(False).astype(bool),
            _truth_flag(merged),
        )
    logger.info("evaluated %d subscribers against ground truth", len(merged))
    return result


def _truth_flag(merged: pd.DataFrame) -> pd.Series:
    column = "subway_commuter_x" if "subway_commuter_x" in merged else "subway_commuter"
    values = merged[column]
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
