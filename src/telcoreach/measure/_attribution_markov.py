"""Markov-chain removal effects, solved exactly as an absorbing chain.

The journeys are read as walks of a Markov chain that starts in ``(start)``,
moves through channel *states* and ends in one of two absorbing states,
``(conversion)`` or ``(null)`` (gave up). For a chain of order ``k`` a state
is the window of the last ``k`` channels touched, so the next step may depend
on the ``k`` channels before it. Transition probabilities are the observed
transition counts divided by each state's outgoing count, with each path
weighted by the journeys it stands for.

The *removal effect* of a channel is the share of conversions the chain loses
when every state that holds the channel is removed (walks that would enter it
end in ``(null)``): ``1 - P(conversion | channel removed) / P(conversion)``.
Each channel's credit is its removal effect divided by the sum over channels,
times the total conversions. The conversion-value version weights each
conversion by the mean value of the conversions that ended in the same state.

This follows the method of the R and Python package ChannelAttribution
(Altomare and Loris): paths start at ``(start)``, windows of ``k`` touches
(the whole path when it is shorter) are the states, a window equal to the one
before it is merged into it (so a repeated channel adds no self-transition),
and the same removal effects and value weighting. ChannelAttribution
estimates ``P(conversion)`` by simulating walks; here the absorption
probabilities come from one sparse linear solve per channel,
``(I - Q) x = r``, where ``Q`` holds the transitions between transient
states and ``r`` the one-step probability (or expected value) of converting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order
from scipy.sparse.linalg import splu
from threadpoolctl import ThreadpoolController

from telcoreach.errors import ConfigError
from telcoreach.measure._attribution_journeys import Journeys

__all__ = ["MarkovFit", "absorption_probabilities", "markov_removal_effects"]

logger = logging.getLogger(__name__)

#: Largest transient chain solved with a dense LU factorisation.
_DENSE_MAX_STATES = 400
#: Largest window code space mapped to states with a lookup table, not a sort.
_LOOKUP_MAX_CODES = 1 << 24
#: Row sums of ``Q`` below ``1 - _EXIT_TOLERANCE`` count as able to leave.
_EXIT_TOLERANCE = 1e-12


@dataclass(frozen=True)
class MarkovFit:
    """Removal effects and credits of one Markov chain attribution.

    Attributes
    ----------
    order : int
        Channels per state.
    n_states : int
        Transient states, ``(start)`` included.
    conversion_probability : float
        Probability that a walk from ``(start)`` converts.
    removal_effect_conversions, removal_effect_value : ndarray of float64
        Per channel, the share of conversions (of conversion value) lost when
        the channel is removed, in ``[0, 1]``.
    conversions, value : ndarray of float64
        Per channel, the credited conversions and conversion value.
    """

    order: int
    n_states: int
    conversion_probability: float
    removal_effect_conversions: np.ndarray
    removal_effect_value: np.ndarray
    conversions: np.ndarray
    value: np.ndarray


def markov_removal_effects(journeys: Journeys, order: int = 1) -> MarkovFit:
    """Return the removal effects and credits of a Markov chain of an order.

    Parameters
    ----------
    journeys : Journeys
        The journeys, aggregated or not.
    order : int
        Channels per state, 1 to 4.

    Returns
    -------
    MarkovFit

    Raises
    ------
    ConfigError
        If ``order`` is not 1 to 4.

    Notes
    -----
    A channel that appears on no converting journey gets no credit even when
    the chain gives it a removal effect (it can lead to a state that later
    converts); the other channels' credits are scaled to keep the total.
    ChannelAttribution would credit it; the two agree whenever every channel
    appears on some converting journey.
    """
    if order not in (1, 2, 3, 4):
        raise ConfigError(
            f"expected a Markov order of 1 to 4, got {order}: higher orders need "
            "far more journeys than a campaign has to estimate their transitions"
        )
    state_of_step, journey_of_step, members = _chain_states(journeys, order)
    n_states = members.shape[0]
    weights = journeys.conversions + journeys.nulls

    # Steps: (start) or the previous state -> state; the last state of each
    # journey then moves to (conversion) or (null).
    first_step = np.ones(len(state_of_step), dtype=bool)
    first_step[1:] = journey_of_step[1:] != journey_of_step[:-1]
    from_state = np.where(first_step, 0, np.roll(state_of_step, 1))
    last_step = np.ones(len(state_of_step), dtype=bool)
    last_step[:-1] = first_step[1:]
    last_state = state_of_step[last_step]
    step_weight = weights[journey_of_step]

    def per_state(state: np.ndarray, amount: np.ndarray) -> np.ndarray:
        return np.bincount(state, weights=amount, minlength=n_states)

    converted = per_state(last_state, journeys.conversions)
    out_count = per_state(from_state, step_weight) + per_state(last_state, weights)
    inverse_out = np.divide(
        1.0, out_count, out=np.zeros_like(out_count), where=out_count > 0
    )
    if n_states <= _DENSE_MAX_STATES:
        counts = np.bincount(
            from_state * n_states + state_of_step,
            weights=step_weight,
            minlength=n_states * n_states,
        ).reshape(n_states, n_states)
        transient = counts * inverse_out[:, None]
    else:
        counts = sp.csr_matrix(
            (step_weight, (from_state, state_of_step)), shape=(n_states, n_states)
        )
        transient = (sp.diags(inverse_out) @ counts).tocsr()
    converts = converted * inverse_out
    # Expected value collected on the step into (conversion): value of the
    # conversions that ended in the state over the state's outgoing count.
    value_reward = per_state(last_state, journeys.value) * inverse_out

    rewards = np.column_stack([converts, value_reward])
    # One BLAS thread: the dense systems are small and threads only contend.
    with _blas_controller().limit(limits=1, user_api="blas"):
        base, lost = _solve_removals(transient, rewards, members)

    removal = np.divide(lost, base, out=np.zeros_like(lost), where=base > 0)
    credited = _credits_from_removal(journeys, removal)
    logger.info(
        "markov order %d: %d states, P(conversion) %.6f",
        order,
        n_states,
        base[0],
    )
    return MarkovFit(
        order=order,
        n_states=n_states,
        conversion_probability=float(base[0]),
        removal_effect_conversions=removal[:, 0],
        removal_effect_value=removal[:, 1],
        conversions=credited[:, 0],
        value=credited[:, 1],
    )


def absorption_probabilities(
    transient: sp.spmatrix | np.ndarray, rewards: np.ndarray
) -> np.ndarray:
    """Return the expected absorbed reward of walks from every transient state.

    Solves ``(I - Q) x = r`` for an absorbing Markov chain whose transitions
    between transient states are ``Q`` (rows may sum to less than 1; the rest
    is absorbed) and whose one-step reward of being absorbed is ``r``. With
    ``r`` the one-step probability of reaching one absorbing state, ``x`` is
    the probability of ending there.

    Parameters
    ----------
    transient : ndarray or sparse matrix, shape (states, states)
        Transition probabilities between transient states.
    rewards : ndarray, shape (states,) or (states, columns)
        One-step rewards, one column per quantity.

    Returns
    -------
    ndarray, the shape of ``rewards``
        ``x``. States that cannot reach absorption (a closed loop, which
        would make ``I - Q`` singular) get 0 and the system is solved on the
        states that can.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    n_states = transient.shape[0]
    result = np.zeros_like(rewards)
    if n_states == 0:
        return result

    dense = not sp.issparse(transient)
    row_sums = np.asarray(transient.sum(axis=1)).ravel()
    solvable = _can_reach(transient, row_sums < 1.0 - _EXIT_TOLERANCE)
    if not solvable.all():
        logger.debug("%d states never leave a closed loop", int((~solvable).sum()))
    index = np.flatnonzero(solvable)
    if len(index) == 0:
        return result

    if dense:
        system = np.eye(len(index)) - transient[np.ix_(index, index)]
        result[index] = np.linalg.solve(system, rewards[index])
    else:
        subchain = transient.tocsr()[index][:, index]
        system = (sp.identity(len(index), format="csc") - subchain).tocsc()
        result[index] = splu(system, permc_spec="MMD_AT_PLUS_A").solve(rewards[index])
    return result


@cache
def _blas_controller() -> ThreadpoolController:
    """Return the controller of the BLAS thread pools, found once."""
    return ThreadpoolController()


def _solve_removals(
    transient: sp.spmatrix | np.ndarray, rewards: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the absorbed rewards from (start), whole and without each channel."""
    base = absorption_probabilities(transient, rewards)[0]
    lost = np.zeros((members.shape[1], rewards.shape[1]))
    for channel in range(members.shape[1]):
        kept = np.flatnonzero(~members[:, channel])
        subchain = (
            transient[np.ix_(kept, kept)]
            if isinstance(transient, np.ndarray)
            else transient[kept][:, kept]
        )
        without = absorption_probabilities(subchain, rewards[kept])[0]
        lost[channel] = np.maximum(base - without, 0.0)

    return base, lost


def _can_reach(transient: sp.spmatrix | np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Return which states have a path of positive steps to a target state."""
    if targets.all():
        return targets
    n_states = transient.shape[0]
    step_from, step_to = transient.nonzero()
    target = np.flatnonzero(targets)
    # Search backwards from one extra node that every target steps to.
    backwards = sp.csr_matrix(
        (
            np.ones(len(step_from) + len(target)),
            (np.r_[step_to, np.full(len(target), n_states)], np.r_[step_from, target]),
        ),
        shape=(n_states + 1, n_states + 1),
    )
    reached = breadth_first_order(
        backwards, n_states, directed=True, return_predecessors=False
    )
    found = np.zeros(n_states + 1, dtype=bool)
    found[reached] = True
    return found[:n_states]


def _chain_states(
    journeys: Journeys, order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the state of every step, its journey, and each state's channels.

    State 0 is ``(start)``; a step's state is the window of ``order`` touches
    starting at it (the whole journey when shorter), windows that repeat the
    one before are dropped. ``members[s, c]`` says state ``s`` holds channel
    ``c``.
    """
    n_channels = len(journeys.channels)
    base = n_channels + 1
    channel = journeys.touch_channel.astype(np.int64) + 1
    if order == 1:
        code, journey = channel, journeys.journey_of_touch
    else:
        code, journey = _windows(journeys, channel, order, base)

    repeat = np.zeros(len(code), dtype=bool)
    repeat[1:] = (code[1:] == code[:-1]) & (journey[1:] == journey[:-1])
    code, journey = code[~repeat], journey[~repeat]

    if base**order <= _LOOKUP_MAX_CODES:
        present = np.zeros(base**order, dtype=bool)
        present[code] = True
        codes = np.flatnonzero(present)
        state = (np.cumsum(present, dtype=np.int32) - 1)[code]
    else:
        codes, state = np.unique(code, return_inverse=True)
    members = np.zeros((len(codes) + 1, n_channels), dtype=bool)
    digits = codes.copy()
    for _ in range(order):
        digit = digits % base
        has = digit > 0
        members[1:][np.flatnonzero(has), digit[has] - 1] = True
        digits //= base
    return state.astype(np.int64) + 1, journey, members


def _windows(
    journeys: Journeys, channel: np.ndarray, order: int, base: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the code of every window of ``order`` touches and its journey.

    A window's code writes its channels (1 to ``base - 1``) in base ``base``;
    a journey shorter than ``order`` is one window padded with zeros.
    """
    journey = journeys.journey_of_touch
    position = np.arange(journeys.n_touches)
    end = journeys.offsets[1:][journey]
    start = journeys.offsets[:-1][journey]
    code = np.zeros(journeys.n_touches, dtype=np.int64)
    for shift in range(order):
        ahead = np.minimum(position + shift, len(channel) - 1)
        code = code * base + np.where(position + shift < end, channel[ahead], 0)
    window = (position + order <= end) | ((end - start < order) & (position == start))
    return code[window], journey[window]


def _credits_from_removal(journeys: Journeys, removal: np.ndarray) -> np.ndarray:
    """Return credits: removal effects scaled to the totals, 0 off converting paths."""
    touched = journeys.conversions[journeys.journey_of_touch] > 0
    converting = (
        np.bincount(
            journeys.touch_channel, weights=touched, minlength=len(journeys.channels)
        )
        > 0
    )
    eligible = removal * converting[:, None]
    totals = np.array([journeys.total_conversions, journeys.total_value])
    sums = eligible.sum(axis=0)
    scale = np.divide(totals, sums, out=np.zeros(2), where=sums > 0)
    return eligible * scale
