"""Multi-touch attribution: heuristics, Markov removal effects, Shapley values."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoreach.errors import ConfigError, SchemaError
from telcoreach.measure._attribution import (
    ATTRIBUTION_MODELS,
    attribute,
    read_costs,
    run_attribution,
)
from telcoreach.measure._attribution_journeys import Journeys, read_journeys
from telcoreach.measure._attribution_markov import absorption_probabilities

PATH_MODELS = [model for model in ATTRIBUTION_MODELS if model != "time_decay"]


@pytest.fixture(scope="module")
def ca_file(datasets_dir):
    return datasets_dir / "5-attribution" / "channelattribution_Data.csv"


@pytest.fixture(scope="module")
def ca_paths(ca_file) -> pd.DataFrame:
    """The ChannelAttribution journeys, one list of channels per row."""
    frame = pd.read_csv(ca_file, sep=";")
    frame["channels"] = [
        [part.strip() for part in path.split(">") if part.strip()]
        for path in frame["path"]
    ]
    return frame


@pytest.fixture(scope="module")
def ca_result(ca_file):
    return attribute(
        read_journeys(ca_file), ["first_touch", "last_touch", "linear", "markov_1"]
    )


def _credits(result, model: str, quantity: str = "conversions") -> pd.Series:
    rows = result.to_frame()
    rows = rows[rows["model"] == model]
    return rows.set_index("channel")[quantity]


def _paths(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=["path", "total_conversions", "total_conversion_value", "total_null"],
    )


# --- heuristics against a hand count -------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("model, pick", [("first_touch", 0), ("last_touch", -1)])
def test_first_and_last_touch_equal_a_hand_count(ca_paths, ca_result, model, pick):
    touch = ca_paths["channels"].map(lambda channels: channels[pick])
    expected = ca_paths.groupby(touch)[
        ["total_conversions", "total_conversion_value"]
    ].sum()

    got = _credits(ca_result, model)
    got_value = _credits(ca_result, model, "value")

    for channel in got.index:
        conversions = expected["total_conversions"].get(channel, 0)
        assert got[channel] == conversions
        value = expected["total_conversion_value"].get(channel, 0.0)
        assert got_value[channel] == pytest.approx(value, rel=1e-12, abs=1e-9)


@pytest.mark.realdata
def test_linear_gives_every_touch_an_equal_share(ca_paths, ca_result):
    touches = ca_paths.explode("channels")
    length = ca_paths["channels"].map(len).reindex(touches.index)
    touches["conversions"] = touches["total_conversions"] / length
    touches["value"] = touches["total_conversion_value"] / length
    expected = touches.groupby("channels")[["conversions", "value"]].sum()

    got = _credits(ca_result, "linear")
    got_value = _credits(ca_result, "linear", "value")

    pd.testing.assert_series_equal(
        got.sort_index(), expected["conversions"], check_names=False, rtol=1e-12
    )
    pd.testing.assert_series_equal(
        got_value.sort_index(), expected["value"], check_names=False, rtol=1e-12
    )


@pytest.mark.realdata
def test_heuristics_agree_with_channelattribution(ca_file, ca_result):
    ca = pytest.importorskip("ChannelAttribution")
    frame = pd.read_csv(ca_file, sep=";")
    theirs = ca.heuristic_models(
        frame,
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        flg_pro=False,
    ).set_index("channel_name")

    for model, column in [
        ("first_touch", "first_touch"),
        ("last_touch", "last_touch"),
        ("linear", "linear_touch"),
    ]:
        got = _credits(ca_result, model)
        expected = theirs[f"{column}_conversions"].reindex(got.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-9)


def test_position_based_gives_forty_twenty_forty_and_halves_two_touches():
    journeys = _paths(
        [("a > b > c > d", 10, 100, 0), ("c > a", 1, 0, 0), ("d", 2, 0, 0)]
    )

    result = attribute(journeys, ["position_based"])

    got = _credits(result, "position_based")
    assert got["a"] == pytest.approx(4.0 + 0.5)
    assert got["b"] == pytest.approx(1.0)
    assert got["c"] == pytest.approx(1.0 + 0.5)
    assert got["d"] == pytest.approx(4.0 + 2.0)
    assert _credits(result, "position_based", "value")["b"] == pytest.approx(10.0)


def test_position_shares_are_configurable():
    journeys = _paths([("a > b > c", 10, 0, 0)])

    result = attribute(journeys, ["position_based"], position_shares=(0.7, 0.0, 0.3))

    assert _credits(result, "position_based").to_dict() == pytest.approx(
        {"a": 7.0, "b": 0.0, "c": 3.0}
    )


# --- journeys one row per touch ------------------------------------------------


def _touches() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": ["u1", "u1", "u1", "u2", "u2", "u1", "u3"],
            "ts": [
                "2024-05-01T09:00:00+08:00",
                "2024-05-08T09:00:00+08:00",
                "2024-05-15T09:00:00+08:00",
                "2024-05-01T10:00:00+08:00",
                "2024-05-02T10:00:00+08:00",
                "2024-05-20T10:00:00+08:00",
                "2024-05-03T10:00:00+08:00",
            ],
            "channel": ["sms", "push", "sms", "push", "call", "call", "sms"],
            "converted": [0, 0, 1, 0, 0, 0, 1],
            "value": [0.0, 0.0, 30.0, 0.0, 0.0, 0.0, 10.0],
        }
    )


def test_a_conversion_ends_a_journey_and_later_touches_start_another():
    journeys = Journeys.from_touches(_touches())

    paths = [
        [journeys.channels[c] for c in journeys.touch_channel[start:end]]
        for start, end in itertools.pairwise(journeys.offsets)
    ]
    outcome = sorted(zip(map(tuple, paths), journeys.conversions, strict=True))
    assert outcome == [
        (("call",), 0.0),
        (("push", "call"), 0.0),
        (("sms",), 1.0),
        (("sms", "push", "sms"), 1.0),
    ]
    assert journeys.total_value == 40.0


def test_time_decay_halves_credit_every_half_life():
    # u1's journey: sms 14 days, push 7 days, sms 0 days before converting.
    result = attribute(_touches(), ["time_decay"], half_life_days=7.0)

    got = _credits(result, "time_decay")
    weights = {"sms_old": 0.25, "push": 0.5, "sms_last": 1.0}
    total = sum(weights.values())
    assert got["push"] == pytest.approx(0.5 / total)
    assert got["sms"] == pytest.approx((0.25 + 1.0) / total + 1.0)
    assert got["call"] == 0.0


def test_time_decay_without_timestamps_is_refused():
    with pytest.raises(SchemaError, match="timestamps"):
        attribute(_paths([("a > b", 1, 0, 0)]), ["time_decay"])


def test_read_journeys_reads_touch_files_and_path_files(tmp_path):
    touch_file = tmp_path / "touches.csv"
    _touches().to_csv(touch_file, index=False)
    path_file = tmp_path / "paths.csv"
    _paths([("sms > push", 2, 5.0, 1)]).to_csv(path_file, sep=";", index=False)

    from_touches = read_journeys(touch_file)
    from_paths = read_journeys(path_file)

    assert from_touches.n_journeys == 4
    assert from_touches.touch_age_s is not None
    assert from_paths.channels == ("push", "sms")
    assert (from_paths.total_conversions, from_paths.total_value) == (2.0, 5.0)


def test_read_journeys_names_the_expected_columns(tmp_path):
    file = tmp_path / "other.csv"
    pd.DataFrame({"who": [1], "what": ["x"]}).to_csv(file, index=False)

    with pytest.raises(SchemaError, match="path"):
        read_journeys(file)


# --- Markov removal effects ------------------------------------------------------


def _reference_markov(frame: pd.DataFrame, order: int):
    """Removal effects by plain Python windows and a dense numpy solve.

    States are the windows of ``order`` channels (the whole path when shorter),
    a window equal to the previous one merged, as ChannelAttribution builds
    them. A removed channel's states get no incoming transitions: that mass
    goes to (null).
    """
    counts: dict[tuple, dict[tuple, float]] = {}
    value_at_end: dict[tuple, float] = {}

    def add(src, dst, weight):
        counts.setdefault(src, {})
        counts[src][dst] = counts[src].get(dst, 0.0) + weight

    for path, conv, value, null in frame[
        ["path", "total_conversions", "total_conversion_value", "total_null"]
    ].itertuples(index=False):
        channels = [part.strip() for part in path.split(">") if part.strip()]
        windows = [
            tuple(channels[i : i + order])
            for i in range(max(len(channels) - order + 1, 1))
        ]
        states = [w for i, w in enumerate(windows) if i == 0 or w != windows[i - 1]]
        previous = ("(start)",)
        for state in states:
            add(previous, state, conv + null)
            previous = state
        add(previous, ("(conversion)",), conv)
        add(previous, ("(null)",), null)
        value_at_end[previous] = value_at_end.get(previous, 0.0) + value

    transient = [("(start)",), *sorted(set(counts) - {("(start)",)})]
    index = {state: i for i, state in enumerate(transient)}
    size = len(transient)
    q = np.zeros((size, size))
    to_conversion = np.zeros(size)
    value_reward = np.zeros(size)
    for src, row in counts.items():
        out = sum(row.values())
        if out == 0:
            continue
        for dst, weight in row.items():
            if dst == ("(conversion)",):
                to_conversion[index[src]] += weight / out
            elif dst != ("(null)",):
                q[index[src], index[dst]] += weight / out
        value_reward[index[src]] = value_at_end.get(src, 0.0) / out

    def absorbed(matrix):
        fundamental = np.linalg.inv(np.eye(size) - matrix)
        return fundamental[0] @ to_conversion, fundamental[0] @ value_reward

    base_conversion, base_value = absorbed(q)
    channels = sorted({c for state in transient[1:] for c in state})
    effects = {}
    for channel in channels:
        removed = q.copy()
        for state, i in index.items():
            if channel in state:
                removed[:, i] = 0.0
        conversion, value = absorbed(removed)
        effects[channel] = (1 - conversion / base_conversion, 1 - value / base_value)
    return effects


@pytest.mark.realdata
def test_order_one_removal_effects_match_an_independent_absorbing_chain(
    ca_paths, ca_result
):
    expected = _reference_markov(ca_paths, order=1)

    got = ca_result.to_dict()["removal_effects"]["markov_1"]

    for row in got:
        conversion, value = expected[row["channel"]]
        assert row["conversions"] == pytest.approx(conversion, abs=1e-6)
        assert row["value"] == pytest.approx(value, abs=1e-6)


@pytest.mark.realdata
def test_order_one_credits_are_removal_effects_scaled_to_the_totals(
    ca_paths, ca_result
):
    expected = _reference_markov(ca_paths, order=1)
    conversion_sum = sum(conversion for conversion, _ in expected.values())
    total = ca_paths["total_conversions"].sum()

    got = _credits(ca_result, "markov_1")

    for channel, (conversion, _) in expected.items():
        assert got[channel] == pytest.approx(conversion / conversion_sum * total)


@pytest.mark.realdata
def test_order_one_markov_is_within_channelattribution_simulation_noise(
    ca_file, ca_result
):
    ca = pytest.importorskip("ChannelAttribution")
    frame = pd.read_csv(ca_file, sep=";")
    theirs = ca.markov_model(
        frame,
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        var_null="total_null",
        out_more=True,
        verbose=0,
        flg_pro=False,
    )["removal_effects"].set_index("channel_name")

    got = pd.DataFrame(ca_result.to_dict()["removal_effects"]["markov_1"])
    got = got.set_index("channel")["conversions"]

    # Its walks are simulated: about 2,000 conversions per fold, so +-0.03.
    difference = (got - theirs["removal_effects_conversion"]).abs()
    assert difference.max() < 0.03


@pytest.mark.parametrize("order", [2, 3])
def test_higher_order_removal_effects_match_an_independent_absorbing_chain(order):
    rng = np.random.default_rng(order)
    letters = list("abcde")
    rows = []
    for _ in range(60):
        channels = rng.choice(letters, size=rng.integers(1, 7))
        conversions = int(rng.integers(0, 4))
        rows.append(
            (
                " > ".join(channels),
                conversions,
                conversions * float(rng.uniform(1, 9)),
                int(rng.integers(0, 6)),
            )
        )
    frame = _paths(rows)
    expected = _reference_markov(frame, order=order)

    result = attribute(frame, [f"markov_{order}"])

    for row in result.to_dict()["removal_effects"][f"markov_{order}"]:
        conversion, value = expected[row["channel"]]
        assert row["conversions"] == pytest.approx(conversion, abs=1e-9)
        assert row["value"] == pytest.approx(value, abs=1e-9)


def test_repeated_channels_do_not_change_markov_credits():
    repeated = _paths([("a > a > b", 2, 4.0, 1), ("b > b", 0, 0.0, 3), ("c", 1, 1, 1)])
    merged = _paths([("a > b", 2, 4.0, 1), ("b", 0, 0.0, 3), ("c", 1, 1, 1)])

    with_repeats = attribute(repeated, ["markov_1"]).to_frame()
    without = attribute(merged, ["markov_1"]).to_frame()

    pd.testing.assert_frame_equal(with_repeats, without, rtol=1e-12)


def test_solver_gives_zero_to_states_caught_in_a_closed_loop():
    # State 0 leaves half the time; states 1 and 2 pass a walk back and forth.
    transient = np.array([[0.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    converts = np.array([0.5, 0.0, 0.0])

    absorbed = absorption_probabilities(transient, converts)

    np.testing.assert_allclose(absorbed, [0.5, 0.0, 0.0])


# --- Shapley ----------------------------------------------------------------------


def _brute_force_shapley(sets: list[frozenset], worth: list[float], players: list):
    """Shapley values by enumerating every order of the players."""

    def v(coalition: set) -> float:
        return sum(w for s, w in zip(sets, worth, strict=True) if s <= coalition)

    values = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        joined: set = set()
        for player in order:
            before = v(joined)
            joined.add(player)
            values[player] += v(joined) - before
    return {player: total / len(orders) for player, total in values.items()}


_journey = st.tuples(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=5),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=3),
)


def _frame(journeys) -> pd.DataFrame:
    return _paths(
        [(" > ".join(ch), conv, 2.5 * conv, null) for ch, conv, null in journeys]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_journey, min_size=1, max_size=10))
def test_exact_shapley_equals_a_brute_force_and_is_efficient(journeys):
    frame = _frame(journeys)
    players = sorted({c for channels, _, _ in journeys for c in channels})
    sets = [frozenset(channels) for channels, _, _ in journeys]
    expected = _brute_force_shapley(sets, [c for _, c, _ in journeys], players)

    result = attribute(frame, ["shapley"])

    got = _credits(result, "shapley")
    for player in players:
        assert got[player] == pytest.approx(expected[player], abs=1e-9)
    assert got.sum() == pytest.approx(frame["total_conversions"].sum())
    assert _credits(result, "shapley", "value").sum() == pytest.approx(
        frame["total_conversion_value"].sum()
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(_journey, min_size=1, max_size=8))
def test_shapley_gives_equal_credit_to_channels_that_play_the_same_part(journeys):
    swap = {"a": "b", "b": "a"}
    mirrored = [
        ([swap.get(c, c) for c in ch], conv, null) for ch, conv, null in journeys
    ]

    result = attribute(_frame(journeys + mirrored), ["shapley", "ordered_shapley"])

    for model in ("shapley", "ordered_shapley"):
        got = _credits(result, model)
        if "a" in got.index:
            assert got["a"] == pytest.approx(got["b"], abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(_journey, min_size=1, max_size=8), st.integers(1, 4))
def test_shapley_gives_nothing_to_a_channel_on_no_converting_journey(journeys, nulls):
    with_idle = [*journeys, (["idle", "a"], 0, nulls), (["idle"], 0, nulls)]

    result = attribute(_frame(with_idle), ["shapley", "ordered_shapley"])

    assert _credits(result, "shapley")["idle"] == 0.0
    assert _credits(result, "ordered_shapley")["idle"] == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(_journey, min_size=1, max_size=8))
def test_ordered_shapley_positions_add_up_to_the_shapley_value(journeys):
    players = sorted({c for channels, _, _ in journeys for c in channels})
    sets = [frozenset(channels) for channels, _, _ in journeys]
    expected = _brute_force_shapley(sets, [c for _, c, _ in journeys], players)

    result = attribute(_frame(journeys), ["ordered_shapley"])

    by_channel = result.positions.groupby("channel")["conversions"].sum()
    for player in players:
        assert by_channel.get(player, 0.0) == pytest.approx(expected[player], abs=1e-9)


def test_ordered_shapley_credits_each_touch_position():
    # {a, b}: a's half splits over its two touches, at positions 1 and 3.
    result = attribute(_paths([("a > b > a", 4, 0, 0)]), ["ordered_shapley"])

    cells = {
        (row.channel, row.position): row.conversions
        for row in result.positions.itertuples()
    }
    assert cells == pytest.approx({("a", 1): 1.0, ("b", 2): 2.0, ("a", 3): 1.0})


@pytest.mark.realdata
def test_sampled_shapley_interval_covers_the_exact_value(ca_file):
    journeys = read_journeys(ca_file)
    exact = attribute(journeys, ["shapley"])

    sampled = attribute(
        journeys, ["shapley"], shapley_max_exact_channels=5, shapley_permutations=400
    )

    summary = sampled.to_dict()["shapley"]
    assert summary["method"] == "sampled"
    exact_credits = _credits(exact, "shapley")
    for interval in summary["intervals"]:
        low, high = interval["conversions_low"], interval["conversions_high"]
        width = max(high - low, 1e-9)
        assert low - width <= exact_credits[interval["channel"]] <= high + width
    assert _credits(sampled, "shapley").sum() == pytest.approx(exact_credits.sum())


# --- credits in every corner ------------------------------------------------------


def _assert_sensible(result, total_conversions: float, total_value: float):
    rows = result.to_frame()
    assert np.isfinite(rows[["conversions", "value"]].to_numpy()).all()
    assert (rows[["conversions", "value"]] >= 0).all().all()
    sums = rows.groupby("model")[["conversions", "value"]].sum()
    np.testing.assert_allclose(sums["conversions"], total_conversions, atol=1e-9)
    np.testing.assert_allclose(sums["value"], total_value, atol=1e-9)


def test_only_non_converting_journeys_credit_nothing():
    journeys = _paths([("a > b", 0, 0, 5), ("b", 0, 0, 2), ("c > a > c", 0, 0, 1)])

    result = attribute(journeys, PATH_MODELS)

    _assert_sensible(result, 0.0, 0.0)
    assert result.to_dict()["markov"]["markov_1"]["conversion_probability"] == 0.0


def test_only_non_converting_touches_credit_nothing_under_time_decay():
    touches = _touches().assign(converted=0, value=0.0)

    result = attribute(touches, ["time_decay", "markov_1", "shapley"])

    _assert_sensible(result, 0.0, 0.0)


def test_one_channel_takes_all_credit():
    journeys = _paths([("sms", 3, 30.0, 7), ("sms > sms", 1, 5.0, 2)])

    result = attribute(journeys, PATH_MODELS)

    _assert_sensible(result, 4.0, 35.0)
    assert set(result.to_frame()["conversions"]) == {4.0}


def test_a_channel_only_on_non_converting_journeys_gets_nothing():
    # The chain can walk call -> sms -> (conversion), so call has a removal
    # effect; it still converted nobody.
    journeys = _paths(
        [("call > sms", 0, 0.0, 4), ("sms", 3, 12.0, 1), ("push", 1, 2, 0)]
    )

    result = attribute(journeys, PATH_MODELS)

    _assert_sensible(result, 4.0, 14.0)
    assert (
        (result.to_frame().query("channel == 'call'")[["conversions", "value"]] == 0)
        .all()
        .all()
    )
    effects = result.to_dict()["removal_effects"]["markov_1"]
    assert next(r for r in effects if r["channel"] == "call")["conversions"] > 0


def test_repeated_channels_keep_credits_sensible():
    journeys = _paths(
        [("a > a > a", 2, 6.0, 1), ("a > b > b > a", 1, 1.0, 3), ("b > b", 0, 0.0, 2)]
    )

    result = attribute(journeys, [*PATH_MODELS])

    _assert_sensible(result, 3.0, 7.0)


def test_journeys_without_channels_are_dropped():
    journeys = _paths([("", 5, 10.0, 1), ("a", 1, 1.0, 1)])

    result = attribute(journeys, ["linear", "markov_1", "shapley"])

    _assert_sensible(result, 1.0, 1.0)


def test_journeys_without_any_channel_are_refused():
    with pytest.raises(SchemaError, match="at least one journey"):
        attribute(_paths([("", 5, 10.0, 1), (" > ", 1, 0.0, 0)]), ["linear"])


@pytest.mark.realdata
def test_every_model_sums_to_the_totals_on_real_journeys(ca_file):
    journeys = read_journeys(ca_file)

    result = attribute(journeys, ["position_based", "markov_2", "shapley"])

    _assert_sensible(result, journeys.total_conversions, journeys.total_value)


def test_reruns_give_identical_credits():
    rng = np.random.default_rng(3)
    frame = _paths(
        [
            (" > ".join(rng.choice(list("abcdefg"), size=rng.integers(1, 6))), c, c, 2)
            for c in rng.integers(0, 3, size=40)
        ]
    )
    options = {"shapley_max_exact_channels": 3, "shapley_permutations": 50}

    first = attribute(frame, PATH_MODELS, **options).to_dict()
    second = attribute(frame, PATH_MODELS, **options).to_dict()

    assert first == second


# --- costs, options and the CLI entry point ---------------------------------------


def test_costs_give_cost_per_conversion_per_channel_and_model():
    journeys = _paths([("sms > push", 2, 0.0, 1), ("push", 2, 0.0, 0)])

    result = attribute(
        journeys, ["last_touch"], costs={"sms": 50.0, "push": 80.0, "call": 10.0}
    )

    rows = {row["channel"]: row for row in result.to_rows()}
    assert rows["push"]["cost_per_conversion_yuan"] == pytest.approx(80.0 / 4)
    assert rows["sms"]["cost_per_conversion_yuan"] is None
    assert rows["call"]["conversions"] == 0.0
    assert rows["call"]["cost_yuan"] == 10.0


@pytest.mark.parametrize(
    "options",
    [
        {"models": ["last_click"]},
        {"models": ["linear"], "position_shares": (0.5, 0.5, 0.5)},
        {"models": ["linear"], "half_life_days": 0.0},
        {"models": ["linear"], "costs": {"sms": -1}},
        {"models": ["shapley"], "shapley_max_exact_channels": 40},
    ],
)
def test_invalid_options_are_refused_with_a_config_error(options):
    with pytest.raises(ConfigError):
        attribute(_paths([("sms", 1, 0, 0)]), **options)


def test_read_costs_reads_csv_and_yaml(tmp_path):
    csv_file = tmp_path / "costs.csv"
    csv_file.write_text("channel,cost_yuan\nsms,120\npush,30.5\n", encoding="utf-8")
    yaml_file = tmp_path / "costs.yaml"
    yaml_file.write_text("sms: 120\npush: 30.5\n", encoding="utf-8")

    assert read_costs(csv_file) == {"sms": 120.0, "push": 30.5}
    assert read_costs(yaml_file) == {"sms": 120.0, "push": 30.5}


def test_run_attribution_returns_rows_and_writes_the_summary(tmp_path):
    journeys_file = tmp_path / "paths.csv"
    _paths([("sms > push", 2, 5.0, 1), ("call", 1, 2.0, 4)]).to_csv(
        journeys_file, sep=";", index=False
    )
    costs_file = tmp_path / "costs.csv"
    costs_file.write_text("channel,cost_yuan\nsms,10\n", encoding="utf-8")
    out = tmp_path / "out" / "attribution.json"

    summary = run_attribution(journeys_file, ["linear", "markov"], costs_file, out)

    assert {row["model"] for row in summary["rows"]} == {"linear", "markov_1"}
    assert set(summary["rows"][0]) >= {"model", "channel", "conversions", "value"}
    assert json.loads(out.read_text(encoding="utf-8"))["rows"] == summary["rows"]
    assert math.isclose(sum(r["conversions"] for r in summary["rows"]), 6.0)
