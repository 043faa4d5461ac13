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


def check_subway_against_geolife_labels(
    engine: Engine, data_dir: Path
) -> dict[str, Any]:
    """Compare subway rides found from cells with GeoLife's transport-mode labels.

    GeoLife volunteers labelled some trips with how they travelled (walk, bus,
    subway...). A labelled subway trip counts as found when a detected ride
    overlaps it in time; a detected ride counts as right when it overlaps a
    labelled subway trip. Only labelled trips during which the person had
    signalling events are counted.
    """
    from telcoreach.features._profile import subway_ride_table
    from telcoreach.ingest.adapters import label_transport_modes, read_geolife_labels

    labels = read_geolife_labels(Path(data_dir) / "1-geolife" / "geolife_modes")
    users = sorted(set(labels["user_id"].to_pylist()))
    tokens = engine.workspace.pseudonymiser.tokenise(
        "msisdn", pa.array([f"geolife-{user}" for user in users])
    ).to_pylist()
    user_of = dict(zip(tokens, users, strict=True))

    dwell = engine.table("events_dwell")
    dwell = dwell.filter(dwell.subscriber.isin(tokens))
    events = dwell.select("subscriber", "event_time", "cell_type").to_pandas()
    events["user_id"] = events["subscriber"].map(user_of)
    moded = label_transport_modes(
        pa.Table.from_pandas(events[["user_id", "event_time", "cell_type"]]),
        labels,
        time_column="event_time",
    ).to_pandas()

    rides = subway_ride_table(dwell, engine.workspace.config.profile).to_pandas()
    rides["user_id"] = rides["subscriber"].map(user_of)
    trips = labels.to_pandas()
    trips = trips[trips["mode"] == "subway"]

    def overlaps(start, end, user, others) -> bool:
        mine = others[others["user_id"] == user]
        return bool(
            ((mine["started_at"] <= end) & (mine["finished_at"] >= start)).any()
        )

    observed = [
        trip
        for trip in trips.itertuples()
        if (
            (moded["user_id"] == trip.user_id)
            & moded["event_time"].between(trip.started_at, trip.finished_at)
        ).any()
    ]
    found = sum(
        overlaps(t.started_at, t.finished_at, t.user_id, rides) for t in observed
    )
    right = sum(
        overlaps(r.started_at, r.finished_at, r.user_id, trips)
        for r in rides.itertuples()
    )
    on_subway = moded["cell_type"] == "subway"
    labelled_subway = moded["mode"] == "subway"
    other_trips = labels.to_pandas()
    other_trips = other_trips[other_trips["mode"] != "subway"]
    wrong = sum(
        overlaps(r.started_at, r.finished_at, r.user_id, other_trips)
        for r in rides.itertuples()
    )
    return {
        "events_by_labelled_mode": {
            str(mode): int(count)
            for mode, count in moded["mode"].fillna("unlabelled").value_counts().items()
        },
        "events_on_subway_cells_by_labelled_mode": {
            str(mode): int(count)
            for mode, count in moded.loc[on_subway, "mode"]
            .fillna("unlabelled")
            .value_counts()
            .items()
        },
        "rides_overlapping_another_mode": wrong,
        "labelled_users": len(users),
        "labelled_subway_trips_with_events": len(observed),
        "labelled_subway_trips_found": found,
        "rides_detected": len(rides),
        "rides_overlapping_a_subway_label": right,
        "share_of_events_on_subway_cells_when_labelled_subway": round(
            float(on_subway[labelled_subway].mean()) if labelled_subway.any() else 0.0,
            4,
        ),
        "share_of_events_on_subway_cells_otherwise": round(
            float(on_subway[~labelled_subway].mean()), 4
        ),
    }
