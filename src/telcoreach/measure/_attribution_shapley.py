"""Shapley-value attribution: exact over channel subsets, sampled, and ordered.

The Shapley value splits a total among players by their marginal
contribution averaged over every order in which the players could join. For
attribution the players are channels and, in the data-driven form of
Dalessandro et al. (2012), the worth ``v(S)`` of a coalition ``S`` of channels
is the conversions (or conversion value) of the journeys whose set of
channels is a subset of ``S``. The credits are then never negative, sum to
the total, give equal credit to channels that play the same part and nothing
to a channel that is on no converting journey.

With ``n`` channels the exact value needs ``v`` on all ``2**n`` subsets. They
are computed at once from the worth of each exact channel set with a
subset-sum transform over bitmasks (``n * 2**n`` additions), which is quick up
to about 20 channels. Beyond the exact limit the value is estimated from
random channel orders, with a normal confidence interval.

For this worth the exact value has a closed form (Zhao, Mahboobi and Bagheri,
2018): each journey's conversions split evenly among its distinct channels.
The *ordered* Shapley value of the same paper keeps the touch order: a
channel's share of a journey is further split evenly over its touches, and
credited to the touch's position (1 for the first touch of the journey, 2 for
the second...). Summed over positions it equals the Shapley value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import comb

import numpy as np
from scipy.stats import norm

from telcoreach.errors import ConfigError
from telcoreach.measure._attribution_journeys import Journeys

__all__ = [
    "MAX_EXACT_CHANNELS",
    "ShapleyFit",
    "channel_set_masks",
    "exact_shapley",
    "ordered_shapley",
    "sampled_shapley",
    "shapley_credits",
]

logger = logging.getLogger(__name__)

#: Most channels the exact subset computation accepts (2**22 subsets).
MAX_EXACT_CHANNELS = 22


@dataclass(frozen=True)
class ShapleyFit:
    """Shapley credits of the channels, with how they were computed.

    Attributes
    ----------
    method : {"exact", "sampled"}
        Exact over all channel subsets, or estimated from random orders.
    conversions, value : ndarray of float64
        Per channel, the credited conversions and conversion value.
    permutations : int or None
        Random channel orders drawn (sampled only).
    confidence : float or None
        Coverage of the intervals (sampled only).
    conversions_interval, value_interval : ndarray of shape (channels, 2) or None
        Lower and upper confidence limits per channel (sampled only).
    """

    method: str
    conversions: np.ndarray
    value: np.ndarray
    permutations: int | None = None
    confidence: float | None = None
    conversions_interval: np.ndarray | None = None
    value_interval: np.ndarray | None = None


def shapley_credits(
    journeys: Journeys,
    *,
    max_exact_channels: int = 15,
    permutations: int = 1_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ShapleyFit:
    """Return Shapley credits: exact up to a number of channels, sampled beyond.

    Parameters
    ----------
    journeys : Journeys
        The journeys.
    max_exact_channels : int
        Largest channel count computed exactly (at most 22); above it the
        value is estimated from ``permutations`` random channel orders.
    permutations : int
        Random channel orders of the sampled estimate.
    confidence : float
        Coverage of the sampled estimate's intervals, in ``(0, 1)``.
    seed : int
        Seed of the random orders, so a re-run gives the same figures.

    Returns
    -------
    ShapleyFit

    Raises
    ------
    ConfigError
        If a parameter is outside its range.
    """
    if not 0 <= max_exact_channels <= MAX_EXACT_CHANNELS:
        raise ConfigError(
            f"expected shapley max_exact_channels between 0 and "
            f"{MAX_EXACT_CHANNELS}, got {max_exact_channels}: above "
            f"{MAX_EXACT_CHANNELS} the 2**n subsets do not fit in memory"
        )
    worth = np.column_stack([journeys.conversions, journeys.value])
    n_channels = len(journeys.channels)
    if n_channels <= max_exact_channels:
        masks = channel_set_masks(journeys)
        credits = exact_shapley(masks, worth, n_channels)
        return ShapleyFit("exact", credits[:, 0], credits[:, 1])

    mean, interval = sampled_shapley(
        journeys, worth, permutations=permutations, confidence=confidence, seed=seed
    )
    return ShapleyFit(
        "sampled",
        mean[:, 0],
        mean[:, 1],
        permutations=permutations,
        confidence=confidence,
        conversions_interval=interval[:, 0, :],
        value_interval=interval[:, 1, :],
    )


def channel_set_masks(journeys: Journeys) -> np.ndarray:
    """Return each journey's set of channels as a bitmask (bit ``c``: channel ``c``)."""
    if len(journeys.channels) > 62:
        raise ConfigError(
            f"expected at most 62 channels for bitmask channel sets, found "
            f"{len(journeys.channels)}: use the sampled Shapley estimate"
        )
    bits = np.left_shift(np.int64(1), journeys.touch_channel.astype(np.int64))
    return np.bitwise_or.reduceat(bits, journeys.offsets[:-1])


def exact_shapley(masks: np.ndarray, worth: np.ndarray, n_channels: int) -> np.ndarray:
    """Return the exact Shapley values of the data-driven attribution game.

    Parameters
    ----------
    masks : ndarray of int64, shape (journeys,)
        Each journey's channel set as a bitmask.
    worth : ndarray of float64, shape (journeys,) or (journeys, k)
        What each journey brings (conversions, value...), one column each.
    n_channels : int
        Players; bit ``c`` of a mask is channel ``c``.

    Returns
    -------
    ndarray of float64, shape (n_channels,) or (n_channels, k)
        ``phi[c] = sum over coalitions S without c of
        |S|! (n - |S| - 1)! / n! * (v(S + c) - v(S))``, with ``v(S)`` the
        worth of the journeys whose channel set is a subset of ``S``.
    """
    worth = np.asarray(worth, dtype=np.float64)
    flat = worth.ndim == 1
    worth = worth.reshape(len(worth), -1)
    n_subsets = 1 << n_channels
    coalition_worth = np.stack(
        [np.bincount(masks, weights=column, minlength=n_subsets) for column in worth.T],
        axis=1,
    )
    # Subset-sum transform: afterwards v[S] sums the worth of every T within S.
    for bit in range(n_channels):
        halves = coalition_worth.reshape(-1, 2, 1 << bit, worth.shape[1])
        halves[:, 1] += halves[:, 0]

    subset_size = np.zeros(n_subsets, dtype=np.int64)
    for bit in range(n_channels):
        subset_size += (np.arange(n_subsets) >> bit) & 1
    weight = np.array(
        [1.0 / (n_channels * comb(n_channels - 1, size)) for size in range(n_channels)]
    )

    values = np.zeros((n_channels, worth.shape[1]))
    for bit in range(n_channels):
        halves = coalition_worth.reshape(-1, 2, 1 << bit, worth.shape[1])
        gain = halves[:, 1] - halves[:, 0]
        size = subset_size.reshape(-1, 2, 1 << bit)[:, 0]
        values[bit] = np.einsum("ab,abk->k", weight[size], gain)
    return values[:, 0] if flat else values


def sampled_shapley(
    journeys: Journeys,
    worth: np.ndarray,
    *,
    permutations: int = 1_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return Shapley values estimated from random channel orders.

    In one order, a coalition's worth grows by a journey's worth exactly when
    the last of the journey's channels joins; that channel takes the
    journey's worth. Averaging over random orders estimates the Shapley value;
    each order's credits already sum to the total.

    Parameters
    ----------
    journeys : Journeys
        The journeys.
    worth : ndarray of float64, shape (journeys, k)
        What each journey brings, one column per quantity.
    permutations : int
        Random orders drawn (at least 2).
    confidence : float
        Coverage of the intervals, in ``(0, 1)``.
    seed : int
        Seed of the random orders.

    Returns
    -------
    mean : ndarray, shape (channels, k)
        Estimated Shapley values.
    interval : ndarray, shape (channels, k, 2)
        Normal confidence limits of the mean, the lower one at least 0.

    Raises
    ------
    ConfigError
        If ``permutations`` < 2 or ``confidence`` is outside ``(0, 1)``.
    """
    if permutations < 2:
        raise ConfigError(
            f"expected at least 2 shapley permutations, got {permutations}: "
            "an interval needs two draws"
        )
    if not 0.0 < confidence < 1.0:
        raise ConfigError(
            f"expected a confidence between 0 and 1 (exclusive), got {confidence}"
        )
    n_channels = len(journeys.channels)
    worth = np.asarray(worth, dtype=np.float64).reshape(journeys.n_journeys, -1)
    member_set, member_channel, set_worth = _channel_sets(journeys, worth)
    pair_worth = set_worth[member_set]
    first_member = np.r_[0, np.flatnonzero(np.diff(member_set)) + 1]
    members_per_set = np.diff(np.r_[first_member, len(member_set)])

    rng = np.random.default_rng(seed)
    draws = np.zeros((permutations, n_channels, worth.shape[1]))
    for draw in range(permutations):
        rank = rng.permutation(n_channels)
        member_rank = rank[member_channel]
        last_rank = np.maximum.reduceat(member_rank, first_member)
        # Each journey gives its worth to its member that joined last.
        winner = member_rank == np.repeat(last_rank, members_per_set)
        for column in range(worth.shape[1]):
            draws[draw, :, column] = np.bincount(
                member_channel[winner],
                weights=pair_worth[winner, column],
                minlength=n_channels,
            )

    mean = draws.mean(axis=0)
    half_width = norm.ppf(0.5 + confidence / 2) * draws.std(axis=0, ddof=1)
    half_width /= np.sqrt(permutations)
    interval = np.stack([np.maximum(mean - half_width, 0.0), mean + half_width], -1)
    logger.info(
        "shapley sampled from %d orders of %d channels", permutations, n_channels
    )
    return mean, interval


def ordered_shapley(journeys: Journeys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the ordered Shapley credits per channel and touch position.

    Parameters
    ----------
    journeys : Journeys
        The journeys.

    Returns
    -------
    channel, position : ndarray of int64
        Channel index and 1-based touch position of every non-empty cell.
    credits : ndarray of float64, shape (cells, 2)
        Conversions and conversion value credited to that channel there.
    """
    n_channels = len(journeys.channels)
    journey = journeys.journey_of_touch
    channel = journeys.touch_channel.astype(np.int64)
    key = journey * n_channels + channel
    _, pair_of_touch, touches_of_pair = np.unique(
        key, return_inverse=True, return_counts=True
    )
    distinct_channels = np.bincount(
        np.unique(key) // n_channels, minlength=journeys.n_journeys
    )
    share = 1.0 / (
        distinct_channels[journey] * touches_of_pair[pair_of_touch].astype(np.float64)
    )
    position = np.arange(journeys.n_touches) - journeys.offsets[:-1][journey] + 1

    cell = position * n_channels + channel
    cells, cell_of_touch = np.unique(cell, return_inverse=True)
    credits = np.column_stack(
        [
            np.bincount(
                cell_of_touch, weights=share * amount[journey], minlength=len(cells)
            )
            for amount in (journeys.conversions, journeys.value)
        ]
    )
    keep = credits.any(axis=1)
    cells, credits = cells[keep], credits[keep]
    return cells % n_channels, cells // n_channels, credits


def _channel_sets(
    journeys: Journeys, worth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the distinct channel sets as (set, channel) pairs and their worth.

    Journeys with the same set of channels are merged (through bitmasks when
    there are at most 62 channels; otherwise every journey is its own set).
    """
    n_channels = len(journeys.channels)
    if n_channels <= 62:
        sets, set_of_journey = np.unique(
            channel_set_masks(journeys), return_inverse=True
        )
        set_worth = np.stack(
            [
                np.bincount(set_of_journey, weights=column, minlength=len(sets))
                for column in worth.T
            ],
            axis=1,
        )
        bits = (sets[:, None] >> np.arange(n_channels)) & 1
        member_set, member_channel = np.nonzero(bits)
        return member_set, member_channel, set_worth
    key = np.unique(
        journeys.journey_of_touch * n_channels + journeys.touch_channel.astype(np.int64)
    )
    return key // n_channels, key % n_channels, worth
