"""Attribution on 10 million touches: exact Markov and Shapley against peers.

Run ``.venv/bin/python benchmarks/attribution.py [data_dir] [touches]``.

The ChannelAttribution journeys (10,000 paths over 12 channels) are resampled
into about 10 million touches: journeys are drawn with the paths' observed
frequencies, each converts with its path's conversion rate and carries its
path's mean conversion value. The draw is then aggregated back to distinct
paths with counts, the input every tool below reads, and telcoreach also runs
once on the 10 million touches one journey at a time.

Printed: seconds of telcoreach's exact order-1 Markov and exact Shapley, of
the ``ChannelAttribution`` package's order-1 Markov (its default simulation)
and of ``mta``'s Markov and Shapley, where those packages are installed; how
far the figures agree; and the two targets: exact Markov no slower than
ChannelAttribution's default, and the whole run at least 10 times faster
than ``mta``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from telcoreach.measure._attribution import attribute
from telcoreach.measure._attribution_journeys import Journeys

ROOT = Path(__file__).resolve().parents[1]
TOUCHES = 10_000_000


def _resample(paths: pd.DataFrame, touches: int, seed: int = 0):
    """Return resampled journeys: aggregated paths and the per-journey arrays."""
    rng = np.random.default_rng(seed)
    people = (paths["total_conversions"] + paths["total_null"]).to_numpy(float)
    lengths = paths["path"].str.count(">").to_numpy() + 1
    mean_length = (people * lengths).sum() / people.sum()
    n_journeys = int(touches / mean_length)

    drawn = rng.choice(len(paths), size=n_journeys, p=people / people.sum())
    rate = paths["total_conversions"].to_numpy(float) / people
    converted = rng.random(n_journeys) < rate[drawn]
    value_each = np.divide(
        paths["total_conversion_value"].to_numpy(float),
        paths["total_conversions"].to_numpy(float),
        out=np.zeros(len(paths)),
        where=paths["total_conversions"].to_numpy() > 0,
    )
    conversions = np.bincount(drawn, weights=converted, minlength=len(paths))
    nulls = np.bincount(drawn, weights=~converted, minlength=len(paths))
    aggregated = pd.DataFrame(
        {
            "path": paths["path"],
            "total_conversions": conversions.astype(np.int64),
            "total_conversion_value": conversions * value_each,
            "total_null": nulls.astype(np.int64),
        }
    )
    aggregated = aggregated[(conversions + nulls) > 0]
    aggregated = aggregated.groupby("path", as_index=False).sum()

    # One journey per draw, its touches copied from its path.
    template = Journeys.from_paths(paths)
    path_lengths = template.lengths[drawn]
    offsets = np.zeros(n_journeys + 1, dtype=np.int64)
    np.cumsum(path_lengths, out=offsets[1:])
    source = np.repeat(template.offsets[:-1][drawn] - offsets[:-1], path_lengths)
    touch_channel = template.touch_channel[np.arange(offsets[-1]) + source]
    per_journey = Journeys(
        channels=template.channels,
        offsets=offsets,
        touch_channel=touch_channel,
        conversions=converted.astype(np.float64),
        value=np.where(converted, value_each[drawn], 0.0),
        nulls=(~converted).astype(np.float64),
    )
    return aggregated, per_journey


def _timed(timings: dict, label: str, action):
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        value = action()
    timings[label] = time.perf_counter() - started
    return value


def main() -> None:
    """Print timings and agreement of exact Markov and Shapley with peers."""
    default = os.environ.get("TELCOREACH_DATA", ROOT.parent / "shared" / "datasets")
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else default)
    touches = int(float(sys.argv[2])) if len(sys.argv) > 2 else TOUCHES
    source = data_dir / "5-attribution" / "channelattribution_Data.csv"
    paths = pd.read_csv(source, sep=";")

    aggregated, per_journey = _resample(paths, touches)
    print(
        f"input: {per_journey.n_touches:,} touches in {per_journey.n_journeys:,} "
        f"journeys ({per_journey.total_conversions:,.0f} conversions), "
        f"{len(aggregated):,} distinct paths, {len(per_journey.channels)} channels"
    )

    timings: dict[str, float] = {}
    journeys = _timed(
        timings, "telcoreach parse paths", lambda: Journeys.from_paths(aggregated)
    )
    ours = _timed(
        timings,
        "telcoreach markov_1 (exact)",
        lambda: attribute(journeys, ["markov_1"]),
    )
    shapley = _timed(
        timings, "telcoreach shapley (exact)", lambda: attribute(journeys, ["shapley"])
    )
    _timed(
        timings,
        f"telcoreach markov_1 + shapley, {per_journey.n_touches:,} touches",
        lambda: attribute(per_journey, ["markov_1", "shapley"]),
    )
    ours_total = sum(
        timings[label]
        for label in (
            "telcoreach parse paths",
            "telcoreach markov_1 (exact)",
            "telcoreach shapley (exact)",
        )
    )

    ours_effects = pd.DataFrame(ours.to_dict()["removal_effects"]["markov_1"])
    ours_effects = ours_effects.set_index("channel")["conversions"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ca = importlib.import_module("ChannelAttribution")
    except ImportError:
        ca = None
        print("ChannelAttribution not installed: skipped")
    if ca is not None:
        theirs = _timed(
            timings,
            "ChannelAttribution markov order 1 (simulation)",
            lambda: ca.markov_model(
                aggregated,
                "path",
                "total_conversions",
                var_value="total_conversion_value",
                var_null="total_null",
                out_more=True,
                verbose=0,
                flg_pro=False,
            ),
        )
        ca_effects = theirs["removal_effects"].set_index("channel_name")
        gap = (ours_effects - ca_effects["removal_effects_conversion"]).abs().max()
        print(f"largest removal-effect gap, exact vs ChannelAttribution: {gap:.4f}")

    try:
        mta = importlib.import_module("mta")
    except ImportError:
        mta = None
        print("mta not installed: skipped")
    if mta is not None:
        mta_input = aggregated[["path", "total_conversions", "total_null"]]
        model = _timed(timings, "mta load", lambda: mta.MTA(data=mta_input.copy()))
        _timed(timings, "mta markov (analytic)", lambda: model.markov(sim=False))
        _timed(timings, "mta shapley", lambda: model.shapley())
        mta_shapley = pd.Series(model.attribution["shapley"])
        ours_share = _shares(shapley, "shapley")
        gap = (ours_share - mta_shapley.reindex(ours_share.index)).abs().max()
        print(f"largest Shapley share gap, telcoreach vs mta: {gap:.6f}")

    print()
    width = max(map(len, timings))
    for label, seconds in timings.items():
        print(f"{label:<{width}}  {seconds:8.3f} s")
    print()
    print(f"telcoreach whole run (parse + markov_1 + shapley): {ours_total:.3f} s")
    if ca is not None:
        ca_seconds = timings["ChannelAttribution markov order 1 (simulation)"]
        exact = timings["telcoreach markov_1 (exact)"]
        verdict = "met" if exact <= ca_seconds else "MISSED"
        print(
            f"target exact Markov <= ChannelAttribution default: {exact:.3f} s vs "
            f"{ca_seconds:.3f} s -> {verdict}"
        )
    if mta is not None:
        mta_seconds = sum(v for k, v in timings.items() if k.startswith("mta"))
        speedup = mta_seconds / ours_total
        verdict = "met" if speedup >= 10 else "MISSED"
        print(
            f"target whole run >= 10x faster than mta: {mta_seconds:.3f} s / "
            f"{ours_total:.3f} s = {speedup:.1f}x -> {verdict}"
        )


def _shares(result, model: str) -> pd.Series:
    rows = result.to_frame()
    credits = rows[rows["model"] == model].set_index("channel")["conversions"]
    return credits / credits.sum()


if __name__ == "__main__":
    main()
