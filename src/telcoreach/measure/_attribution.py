"""Multi-touch attribution: which channel earned each conversion.

A carrier campaign reaches people through several channels (SMS, app push,
WeChat ads, outbound calls) before some of them convert. *Attribution* splits
every conversion, and its value in yuan, among the channels of the journey
that led to it. :func:`attribute` runs several models side by side on the
same journeys:

``first_touch``, ``last_touch``
    All credit to the first (last) touch of each converting journey.
``linear``
    Equal credit to every touch (a channel touched twice gets two shares).
``position_based``
    40 % to the first touch, 40 % to the last, 20 % spread over the touches
    between (shares configurable; a two-touch journey splits the end shares
    in their ratio, one touch takes all).
``time_decay``
    Credit halves for every ``half_life_days`` a touch came before the
    journey's last touch; needs touch timestamps.
``markov_1`` ... ``markov_4``
    Removal effects of a Markov chain whose states are the last 1 to 4
    channels, solved exactly (see :mod:`._attribution_markov`).
``shapley``, ``ordered_shapley``
    Data-driven Shapley value, exact over channel subsets (sampled with a
    confidence interval beyond ``shapley_max_exact_channels``), and its
    touch-order version (see :mod:`._attribution_shapley`).

Every model's credits are never negative and sum to the total conversions
and the total conversion value; a channel on no converting journey gets 0.
Given each channel's spend, the result also shows cost per conversion.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from telcoreach.errors import ConfigError, DataSourceError, SchemaError
from telcoreach.measure._attribution_journeys import Journeys, read_journeys
from telcoreach.measure._attribution_markov import markov_removal_effects
from telcoreach.measure._attribution_shapley import ordered_shapley, shapley_credits

__all__ = [
    "ATTRIBUTION_MODELS",
    "DEFAULT_ATTRIBUTION_MODELS",
    "AttributionResult",
    "attribute",
    "read_costs",
    "run_attribution",
]

logger = logging.getLogger(__name__)

#: Every model :func:`attribute` knows, in the order results list them.
ATTRIBUTION_MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "time_decay",
    "markov_1",
    "markov_2",
    "markov_3",
    "markov_4",
    "shapley",
    "ordered_shapley",
)
#: Models run when none are named (time decay needs timestamps, so it is off).
DEFAULT_ATTRIBUTION_MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "markov_1",
    "shapley",
)
_ALIASES = {"markov": "markov_1", "first": "first_touch", "last": "last_touch"}
_HEURISTICS = ("first_touch", "last_touch", "linear", "position_based", "time_decay")
_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, eq=False)
class AttributionResult:
    """Credits of every channel under every model, with the models' details.

    Attributes
    ----------
    channels : tuple of str
        Channels, sorted (those with a cost but no touch included).
    models : tuple of str
        Models run, in :data:`ATTRIBUTION_MODELS` order.
    conversions, value : dict of str to ndarray
        Per model, the conversions and conversion value credited to each
        channel (aligned with ``channels``).
    totals : dict
        ``journeys`` (people, converting or not), ``conversions``, ``value``,
        ``touches`` and ``channels`` of the input.
    costs_yuan : dict of str to float or None
        Spend per channel, when given.
    removal_effects : dict
        Per Markov model, ``{"conversions": array, "value": array}`` of removal
        effects per channel (shares in ``[0, 1]``).
    markov : dict
        Per Markov model, ``states`` and ``conversion_probability``.
    shapley : dict
        ``method`` ("exact" or "sampled"), and for a sampled estimate
        ``permutations``, ``confidence`` and per-channel ``conversions_interval``
        and ``value_interval`` arrays of shape (channels, 2).
    positions : DataFrame
        Ordered Shapley credits by ``channel`` and touch ``position``, with
        ``conversions`` and ``value`` (empty unless ordered_shapley ran).
    """

    channels: tuple[str, ...]
    models: tuple[str, ...]
    conversions: dict[str, np.ndarray]
    value: dict[str, np.ndarray]
    totals: dict[str, float]
    costs_yuan: dict[str, float] | None = None
    removal_effects: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    markov: dict[str, dict[str, float]] = field(default_factory=dict)
    shapley: dict[str, Any] = field(default_factory=dict)
    positions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_rows(self) -> list[dict[str, Any]]:
        """Return one row per model and channel.

        Each row has ``model``, ``channel``, ``conversions`` and ``value``; with
        costs also ``cost_yuan`` and ``cost_per_conversion_yuan`` (``None``
        where the channel earned no conversion).
        """
        rows = []
        for model in self.models:
            for index, channel in enumerate(self.channels):
                row: dict[str, Any] = {
                    "model": model,
                    "channel": channel,
                    "conversions": float(self.conversions[model][index]),
                    "value": float(self.value[model][index]),
                }
                if self.costs_yuan is not None:
                    cost = self.costs_yuan.get(channel, 0.0)
                    credited = row["conversions"]
                    row["cost_yuan"] = cost
                    row["cost_per_conversion_yuan"] = (
                        cost / credited if credited > 0 else None
                    )
                rows.append(row)
        return rows

    def to_frame(self) -> pd.DataFrame:
        """Return :meth:`to_rows` as a DataFrame (for tables and charts)."""
        return pd.DataFrame(self.to_rows())

    def to_dict(self) -> dict[str, Any]:
        """Return the whole result as a JSON-serialisable dict.

        Keys: ``models``, ``channels``, ``totals``, ``rows`` (:meth:`to_rows`),
        ``removal_effects`` (per Markov model, a list of ``channel``,
        ``conversions``, ``value``), ``markov``, ``shapley`` (with
        ``intervals`` per channel for a sampled estimate), ``ordered_shapley``
        (rows of ``channel``, ``position``, ``conversions``, ``value``) and
        ``costs_yuan``.
        """
        removal = {
            model: [
                {
                    "channel": channel,
                    "conversions": float(effects["conversions"][index]),
                    "value": float(effects["value"][index]),
                }
                for index, channel in enumerate(self.channels)
            ]
            for model, effects in self.removal_effects.items()
        }
        shapley = {
            key: value
            for key, value in self.shapley.items()
            if key not in ("conversions_interval", "value_interval")
        }
        if self.shapley.get("conversions_interval") is not None:
            low_high = zip(
                self.shapley["conversions_interval"],
                self.shapley["value_interval"],
                strict=True,
            )
            shapley["intervals"] = [
                {
                    "channel": channel,
                    "conversions_low": float(conversions[0]),
                    "conversions_high": float(conversions[1]),
                    "value_low": float(value[0]),
                    "value_high": float(value[1]),
                }
                for channel, (conversions, value) in zip(
                    self.channels, low_high, strict=True
                )
            ]
        return {
            "models": list(self.models),
            "channels": list(self.channels),
            "totals": dict(self.totals),
            "rows": self.to_rows(),
            "removal_effects": removal,
            "markov": {model: dict(fit) for model, fit in self.markov.items()},
            "shapley": shapley,
            "ordered_shapley": self.positions.to_dict(orient="records"),
            "costs_yuan": None if self.costs_yuan is None else dict(self.costs_yuan),
        }


def attribute(
    journeys: Journeys | pd.DataFrame,
    models: Sequence[str] = DEFAULT_ATTRIBUTION_MODELS,
    *,
    costs: Mapping[str, float] | None = None,
    position_shares: tuple[float, float, float] = (0.4, 0.2, 0.4),
    half_life_days: float = 7.0,
    shapley_max_exact_channels: int = 15,
    shapley_permutations: int = 1_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttributionResult:
    """Return each channel's credited conversions and value under each model.

    Parameters
    ----------
    journeys : Journeys or DataFrame
        Journeys, or a frame in the aggregated path layout (a ``path``
        column) or one row per touch (``user, ts, channel, converted,
        value``).
    models : sequence of str
        Names from :data:`ATTRIBUTION_MODELS` (``"markov"`` means
        ``"markov_1"``).
    costs : mapping of str to float, optional
        Spend per channel in yuan, for cost per conversion.
    position_shares : tuple of 3 floats
        Shares of the first touch, of the touches between and of the last
        touch in ``position_based``; non-negative, summing to 1.
    half_life_days : float
        Days after which a touch's ``time_decay`` weight halves.
    shapley_max_exact_channels : int
        Most channels for the exact Shapley value (at most 22); beyond it the
        value is sampled from ``shapley_permutations`` random channel orders.
    shapley_permutations : int
        Random orders of the sampled Shapley estimate.
    confidence : float
        Coverage of the sampled Shapley intervals.
    seed : int
        Seed of the random orders, so re-runs give the same credits.

    Returns
    -------
    AttributionResult

    Raises
    ------
    ConfigError
        If a model name or parameter is invalid.
    SchemaError
        If the journeys frame fits no layout or holds no journey with a
        channel, or ``time_decay`` is asked of journeys without timestamps.

    Examples
    --------
    >>> frame = pd.DataFrame({"path": ["sms > push", "push"],
    ...                       "total_conversions": [1, 1], "total_null": [0, 3]})
    >>> result = attribute(frame, ["first_touch", "last_touch"])
    >>> result.to_rows()[0]
    {'model': 'first_touch', 'channel': 'push', 'conversions': 1.0, 'value': 0.0}
    """
    chosen = _check_models(models)
    _check_position_shares(position_shares)
    if not (math.isfinite(half_life_days) and half_life_days > 0):
        raise ConfigError(
            f"expected half_life_days > 0, got {half_life_days}: give the days "
            "after which a touch counts half"
        )
    if not isinstance(journeys, Journeys):
        journeys = _journeys_from_frame(journeys)
    if journeys.n_journeys == 0:
        raise SchemaError(
            "expected at least one journey with a channel, found none: check that "
            "the path (or channel) column is filled"
        )
    if "time_decay" in chosen and journeys.touch_age_s is None:
        raise SchemaError(
            "expected touch timestamps for the time_decay model, found aggregated "
            "paths without any: give one row per touch (user, ts, channel, "
            "converted, value) or drop time_decay from the models"
        )
    cost_map = _check_costs(costs)

    conversions: dict[str, np.ndarray] = {}
    value: dict[str, np.ndarray] = {}
    removal: dict[str, dict[str, np.ndarray]] = {}
    markov: dict[str, dict[str, float]] = {}
    shapley: dict[str, Any] = {}
    positions = pd.DataFrame(columns=["channel", "position", "conversions", "value"])
    n_channels = len(journeys.channels)
    for model in chosen:
        started = time.perf_counter()
        if model in _HEURISTICS:
            share = _touch_shares(journeys, model, position_shares, half_life_days)
            credited = _credit_touches(journeys, share)
        elif model.startswith("markov_"):
            fit = markov_removal_effects(journeys, order=int(model[-1]))
            credited = np.column_stack([fit.conversions, fit.value])
            removal[model] = {
                "conversions": fit.removal_effect_conversions,
                "value": fit.removal_effect_value,
            }
            markov[model] = {
                "order": fit.order,
                "states": fit.n_states,
                "conversion_probability": fit.conversion_probability,
            }
        elif model == "shapley":
            fit = shapley_credits(
                journeys,
                max_exact_channels=shapley_max_exact_channels,
                permutations=shapley_permutations,
                confidence=confidence,
                seed=seed,
            )
            credited = np.column_stack([fit.conversions, fit.value])
            shapley = {
                "method": fit.method,
                "permutations": fit.permutations,
                "confidence": fit.confidence,
                "conversions_interval": fit.conversions_interval,
                "value_interval": fit.value_interval,
            }
        else:
            channel, position, cells = ordered_shapley(journeys)
            credited = np.column_stack(
                [
                    np.bincount(channel, weights=cells[:, k], minlength=n_channels)
                    for k in (0, 1)
                ]
            )
            positions = pd.DataFrame(
                {
                    "channel": np.asarray(journeys.channels, dtype=object)[channel],
                    "position": position.astype(int),
                    "conversions": cells[:, 0],
                    "value": cells[:, 1],
                }
            )
        conversions[model] = np.maximum(credited[:, 0], 0.0)
        value[model] = np.maximum(credited[:, 1], 0.0)
        logger.info("attribution %s took %.3f s", model, time.perf_counter() - started)

    result = AttributionResult(
        channels=journeys.channels,
        models=chosen,
        conversions=conversions,
        value=value,
        totals={
            "journeys": journeys.people,
            "conversions": journeys.total_conversions,
            "value": journeys.total_value,
            "touches": journeys.touches_represented,
            "channels": n_channels,
        },
        costs_yuan=cost_map,
        removal_effects=removal,
        markov=markov,
        shapley=shapley,
        positions=positions,
    )
    return _with_cost_only_channels(result)


def read_costs(path: str | Path) -> dict[str, float]:
    """Return the spend per channel in yuan from a CSV, JSON or YAML file.

    A CSV has the columns ``channel`` and ``cost_yuan`` (or ``cost``); a JSON
    or YAML file is one mapping of channel to yuan.

    Raises
    ------
    DataSourceError
        If the file is missing or unreadable.
    SchemaError
        If it has another layout.
    ConfigError
        If a cost is negative or not a number.
    """
    file = Path(path)
    if not file.is_file():
        raise DataSourceError(
            f"expected a costs file at {file}, found nothing there: give a CSV "
            "(channel,cost_yuan) or a JSON/YAML mapping of channel to yuan"
        )
    suffix = file.suffix.lower()
    try:
        if suffix in (".json", ".yaml", ".yml"):
            text = file.read_text(encoding="utf-8")
            mapping = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
            if not isinstance(mapping, dict):
                raise SchemaError(
                    f"expected a mapping of channel to yuan in {file}, found "
                    f"{type(mapping).__name__}: write one 'channel: yuan' per line"
                )
            return _check_costs(mapping) or {}
        frame = pd.read_csv(file)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise DataSourceError(
            f"could not read the costs file {file}: {error}"
        ) from error

    frame.columns = [str(column).strip() for column in frame.columns]
    cost_column = next((c for c in ("cost_yuan", "cost") if c in frame.columns), None)
    if "channel" not in frame.columns or cost_column is None:
        raise SchemaError(
            f"expected the columns channel and cost_yuan in {file}, found "
            f"{', '.join(frame.columns)}: rename them"
        )
    spend = frame.groupby(frame["channel"].astype(str).str.strip())[cost_column].sum()
    return _check_costs(spend.to_dict()) or {}


def run_attribution(
    path: str | Path,
    models: Sequence[str] | None = None,
    costs_path: str | Path | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Attribute the journeys in a file and return the summary the CLI prints.

    Parameters
    ----------
    path : str or Path
        Journeys file (see :func:`read_journeys`).
    models : sequence of str, optional
        Models to run; :data:`DEFAULT_ATTRIBUTION_MODELS` when omitted.
    costs_path : str or Path, optional
        Spend per channel (see :func:`read_costs`).
    out : str or Path, optional
        Where to write the result: ``.json`` (the whole summary), ``.csv`` or
        ``.parquet`` (the rows).
    **options
        Passed to :func:`attribute` (``position_shares``, ``half_life_days``,
        ``seed``...).

    Returns
    -------
    dict
        :meth:`AttributionResult.to_dict`; its ``rows`` are what ``--json``
        prints.

    Raises
    ------
    ConfigError
        If ``out`` has another suffix, or an option is invalid.
    """
    if out is not None and Path(out).suffix.lower() not in (
        ".json",
        ".csv",
        ".parquet",
    ):
        raise ConfigError(
            f"expected an output file ending in .json, .csv or .parquet, got {out}"
        )
    journeys = read_journeys(path)
    costs = read_costs(costs_path) if costs_path is not None else None
    result = attribute(
        journeys, models or DEFAULT_ATTRIBUTION_MODELS, costs=costs, **options
    )
    summary = result.to_dict()
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = target.suffix.lower()
        if suffix == ".json":
            target.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        elif suffix == ".csv":
            result.to_frame().to_csv(target, index=False)
        else:
            result.to_frame().to_parquet(target, index=False)
        logger.info("attribution written to %s", target)
    return summary


def _check_models(models: Sequence[str]) -> tuple[str, ...]:
    if isinstance(models, str):
        models = [models]
    names = [
        _ALIASES.get(name.strip().lower(), name.strip().lower()) for name in models
    ]
    unknown = [name for name in names if name not in ATTRIBUTION_MODELS]
    if unknown or not names:
        raise ConfigError(
            f"expected attribution models among {', '.join(ATTRIBUTION_MODELS)}, "
            f"got {', '.join(map(repr, unknown)) or 'none'}: fix the model names"
        )
    return tuple(name for name in ATTRIBUTION_MODELS if name in names)


def _check_position_shares(shares: Sequence[float]) -> None:
    values = np.asarray(shares, dtype=np.float64)
    if (
        values.shape != (3,)
        or not np.isfinite(values).all()
        or (values < 0).any()
        or abs(values.sum() - 1.0) > 1e-9
    ):
        raise ConfigError(
            "expected position_shares as three shares >= 0 (first touch, touches "
            f"between, last touch) summing to 1, got {tuple(shares)}: for example "
            "(0.4, 0.2, 0.4)"
        )


def _check_costs(costs: Mapping[str, Any] | None) -> dict[str, float] | None:
    if costs is None:
        return None
    checked = {}
    for channel, cost in costs.items():
        try:
            yuan = float(cost)
        except (TypeError, ValueError):
            yuan = math.nan
        if not (math.isfinite(yuan) and yuan >= 0):
            raise ConfigError(
                f"expected a spend >= 0 yuan for every channel, got {cost!r} for "
                f"{channel!r}: fix the costs"
            )
        checked[str(channel).strip()] = yuan
    return checked


def _journeys_from_frame(frame: pd.DataFrame) -> Journeys:
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"expected Journeys or a pandas DataFrame of journeys, got "
            f"{type(frame).__name__}: read the file with read_journeys"
        )
    if "path" in frame.columns:
        return Journeys.from_paths(frame)
    return Journeys.from_touches(frame)


def _touch_shares(
    journeys: Journeys,
    model: str,
    position_shares: Sequence[float],
    half_life_days: float,
) -> np.ndarray:
    """Return each touch's share of its journey under a heuristic model."""
    journey = journeys.journey_of_touch
    position = np.arange(journeys.n_touches) - journeys.offsets[:-1][journey]
    length = journeys.lengths[journey]
    first, last = position == 0, position == length - 1
    if model == "first_touch":
        return first.astype(np.float64)
    if model == "last_touch":
        return last.astype(np.float64)
    if model == "linear":
        return 1.0 / length
    if model == "position_based":
        first_share, middle_share, last_share = (float(s) for s in position_shares)
        ends = first_share + last_share
        two_first = first_share / ends if ends > 0 else 0.5
        share = np.where(
            length == 1,
            1.0,
            np.where(
                length == 2,
                np.where(first, two_first, 1.0 - two_first),
                np.where(
                    first,
                    first_share,
                    np.where(
                        last, last_share, middle_share / np.maximum(length - 2, 1)
                    ),
                ),
            ),
        )
        return share
    half_life_s = half_life_days * _SECONDS_PER_DAY
    weight = np.exp2(-np.maximum(journeys.touch_age_s, 0.0) / half_life_s)
    total = np.bincount(journey, weights=weight, minlength=journeys.n_journeys)
    return weight / total[journey]


def _credit_touches(journeys: Journeys, share: np.ndarray) -> np.ndarray:
    """Return per-channel conversions and value from touch shares of journeys."""
    journey = journeys.journey_of_touch
    n_channels = len(journeys.channels)
    return np.column_stack(
        [
            np.bincount(
                journeys.touch_channel,
                weights=share * amount[journey],
                minlength=n_channels,
            )
            for amount in (journeys.conversions, journeys.value)
        ]
    )


def _with_cost_only_channels(result: AttributionResult) -> AttributionResult:
    """Return the result with channels that have a cost but no touch, at 0."""
    if not result.costs_yuan:
        return result
    extra = sorted(set(result.costs_yuan) - set(result.channels))
    if not extra:
        return result
    logger.warning("%d channels have a cost but no touch: credited 0", len(extra))
    channels = tuple(sorted((*result.channels, *extra)))
    old = {channel: index for index, channel in enumerate(result.channels)}
    take = np.array([old.get(channel, -1) for channel in channels])

    def widen(values: np.ndarray) -> np.ndarray:
        wide = np.zeros(len(channels))
        wide[take >= 0] = values[take[take >= 0]]
        return wide

    def widen_interval(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        wide = np.zeros((len(channels), 2))
        wide[take >= 0] = values[take[take >= 0]]
        return wide

    shapley = dict(result.shapley)
    for key in ("conversions_interval", "value_interval"):
        if key in shapley:
            shapley[key] = widen_interval(shapley[key])
    return AttributionResult(
        channels=channels,
        models=result.models,
        conversions={m: widen(v) for m, v in result.conversions.items()},
        value={m: widen(v) for m, v in result.value.items()},
        totals={**result.totals, "channels": len(channels)},
        costs_yuan=result.costs_yuan,
        removal_effects={
            m: {k: widen(v) for k, v in effects.items()}
            for m, effects in result.removal_effects.items()
        },
        markov=result.markov,
        shapley=shapley,
        positions=result.positions,
    )
