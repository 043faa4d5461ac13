"""Propensity models on the UCI bank-marketing data: quality and speed.

Run ``.venv/bin/python benchmarks/models.py [data_dir]``. Prints held-out
metrics of the logistic regression and the LightGBM baseline side by side,
then the time to read, train, save, load and score.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from telcoreach.ingest.adapters._bank import read_bank_marketing
from telcoreach.models import (
    campaign_training_frame,
    load_model,
    save_model,
    score,
    train_propensity,
    training_data_sha256,
)

ROOT = Path(__file__).resolve().parents[1]


def _timed(label: str, timings: dict, action):
    started = time.perf_counter()
    value = action()
    timings[label] = time.perf_counter() - started
    return value


def main() -> None:
    """Print quality and timing figures of the propensity models."""
    default = os.environ.get("TELCOREACH_DATA", ROOT.parent / "shared" / "datasets")
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    timings: dict[str, float] = {}

    customers, outcomes = _timed(
        "read bank-marketing (41,188 rows)",
        timings,
        lambda: read_bank_marketing(data_dir),
    )
    frame = campaign_training_frame(customers, outcomes)
    _timed("training data hash", timings, lambda: training_data_sha256(frame))
    result = _timed(
        "train LR + LightGBM (30,891 rows)",
        timings,
        lambda: train_propensity(frame, "converted"),
    )
    big = pd.concat([frame] * 10, ignore_index=True)

    with tempfile.TemporaryDirectory() as models_dir:
        _timed("save model", timings, lambda: save_model(models_dir, "bank", result))
        model = _timed("load model", timings, lambda: load_model(models_dir, "bank"))
        propensity = _timed(
            f"score {len(big):,} rows", timings, lambda: score(model, big)
        )

    print(f"features ({len(result.features)}): {', '.join(result.features)}")
    print(f"rows train/test: {result.rows_train:,}/{result.rows_test:,}")
    print(f"base rate (held out): {result.base_rate:.4f}")
    print()
    print(f"{'metric':<16}{'logistic':>10}{'lightgbm':>10}")
    for metric in ("auc", "ks", "lift_at_10pct"):
        logistic = getattr(result.logistic_regression, metric)
        boosted = getattr(result.baseline, metric)
        print(f"{metric:<16}{logistic:>10.4f}{boosted:>10.4f}")
    print()
    for label, seconds in timings.items():
        print(f"{label:<40}{seconds:>8.2f} s")
    rate = len(big) / timings[f"score {len(big):,} rows"]
    print(f"{'scoring throughput':<40}{rate:>8,.0f} rows/s")
    print(f"mean propensity of scored rows: {np.mean(propensity):.4f}")


if __name__ == "__main__":
    main()
