"""The synthetic city: formats, identifiers, defects, determinism and truth.

Every expectation is checked on the written files with pandas and plain
Python (an independent Luhn check, brute-force distances), never with the
simulator's own helpers.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from telcoreach.errors import ConfigError
from telcoreach.geo import haversine_m
from telcoreach.schemas import ID_PATTERNS, schema_for
from telcoreach.simulate import simulate_city

pytestmark = pytest.mark.realdata

TUTORING_TERMS = ("家教", "辅导", "补习", "课外班", "tutor")


def _read_days(folder: Path) -> pd.DataFrame:
    frames = [
        pd.read_csv(path, dtype=str, keep_default_na=False).assign(file=path.stem)
        for path in sorted(folder.glob("*.csv"))
    ]
    return pd.concat(frames, ignore_index=True)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _luhn_valid(number: str) -> bool:
    """Check a Luhn number the textbook way: from the right, double every second."""
    total = 0
    for position, character in enumerate(reversed(number)):
        digit = int(character)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@pytest.fixture(scope="module")
def small_city(datasets_dir, tmp_path_factory):
    """300 subscribers over two days, clean."""
    out = tmp_path_factory.mktemp("small")
    summary = simulate_city(out, subscribers=300, days=2, seed=3, data_dir=datasets_dir)
    return out, summary


@pytest.fixture(scope="module")
def dirty_city(datasets_dir, tmp_path_factory):
    """400 subscribers over three days with 2 % of each defect."""
    out = tmp_path_factory.mktemp("dirty")
    summary = simulate_city(
        out, subscribers=400, days=3, seed=5, dirty_rate=0.02, data_dir=datasets_dir
    )
    return out, summary


@pytest.fixture(scope="module")
def week_city(datasets_dir, tmp_path_factory):
    """1,500 subscribers over a week, read back with pandas."""
    out = tmp_path_factory.mktemp("week")
    summary = simulate_city(
        out, subscribers=1_500, days=7, seed=11, data_dir=datasets_dir
    )
    signalling = _read_days(out / "signalling")
    signalling["time"] = pd.to_datetime(signalling["event_time"])
    dpi = _read_days(out / "dpi")
    truth = pd.read_csv(out / "truth" / "ground_truth.csv", dtype={"msisdn": str})
    cells = pd.read_csv(out / "cells.csv")
    pois = pd.read_csv(out / "pois.csv")
    return {
        "summary": summary,
        "signalling": signalling,
        "dpi": dpi,
        "truth": truth,
        "cells": cells,
        "pois": pois,
        "out": out,
    }


def test_small_city_takes_seconds(small_city):
    _, summary = small_city

    assert summary.rows["signalling"] > 20_000
    assert summary.seconds < 20


def test_same_seed_writes_same_bytes(datasets_dir, tmp_path, dirty_city):
    out, summary = dirty_city

    again = simulate_city(
        tmp_path,
        subscribers=400,
        days=3,
        seed=5,
        dirty_rate=0.02,
        data_dir=datasets_dir,
    )

    assert again.rows == summary.rows
    assert _digests(tmp_path) == _digests(out)


def test_other_seed_writes_other_events(datasets_dir, tmp_path, small_city):
    out, _ = small_city

    simulate_city(tmp_path, subscribers=300, days=2, seed=4, data_dir=datasets_dir)

    first, second = _digests(out), _digests(tmp_path)
    for name in ("subscribers.csv", "signalling/2026-11-02.csv", "dpi/2026-11-03.csv"):
        assert first[name] != second[name]
    # The cell layer is the real one, whatever the seed.
    assert first["cells.csv"] == second["cells.csv"]


def test_files_have_the_input_columns_of_their_kind(small_city):
    out, summary = small_city

    for kind in ("cells", "pois", "subscribers", "campaign_outcomes", "weather"):
        header = pd.read_csv(out / f"{kind}.csv", nrows=0).columns.tolist()
        assert header == list(schema_for(kind).field_names), kind
    for kind in ("signalling", "dpi"):
        for path in summary.files[kind]:
            header = pd.read_csv(path, nrows=0).columns.tolist()
            assert header == list(schema_for(kind).field_names), path


def test_one_event_file_per_day(small_city):
    out, summary = small_city

    assert sorted(p.name for p in (out / "signalling").iterdir()) == [
        "2026-11-02.csv",
        "2026-11-03.csv",
    ]
    assert len(summary.files["dpi"]) == 2
    day = pd.read_csv(out / "signalling" / "2026-11-03.csv", dtype=str)
    assert day["event_time"].str.match(r"^2026-11-03 \d\d:\d\d:\d\d$").all()


def test_identifiers_are_well_formed_and_distinct(small_city):
    out, _ = small_city
    subscribers = pd.read_csv(out / "subscribers.csv", dtype=str)

    for kind in ("msisdn", "imsi", "imei"):
        assert subscribers[kind].str.match(ID_PATTERNS[kind]).all(), kind
        assert subscribers[kind].is_unique, kind
    assert subscribers["msisdn"].str.len().eq(11).all()
    assert all(_luhn_valid(imei) for imei in subscribers["imei"])


def test_luhn_reference_accepts_a_published_imei():
    # The example IMEI of the GSMA/Wikipedia article on IMEI check digits.
    assert _luhn_valid("490154203237518")
    assert not _luhn_valid("490154203237519")


def test_imei_tac_names_the_subscribers_handset(small_city):
    out, _ = small_city
    subscribers = pd.read_csv(out / "subscribers.csv", dtype=str)
    tacs = pd.read_csv(out / "truth" / "tac_table.csv", dtype=str)

    joined = subscribers.assign(tac=subscribers["imei"].str[:8]).merge(
        tacs, on="tac", suffixes=("", "_of_tac")
    )

    assert len(joined) == len(subscribers)
    assert (joined["device_model"] == joined["device_model_of_tac"]).all()
    assert tacs["tac"].is_unique


def test_clean_city_has_no_defects(small_city):
    out, summary = small_city
    signalling = _read_days(out / "signalling")
    cells = set(pd.read_csv(out / "cells.csv", usecols=["cell_id"])["cell_id"])

    assert not signalling.drop(columns="file").duplicated().any()
    assert signalling["msisdn"].str.match(ID_PATTERNS["msisdn"]).all()
    assert signalling["cell_id"].isin(cells).all()
    assert summary.late_batch is None
    assert set(summary.dirty["signalling"].values()) == {0}


@pytest.mark.parametrize("kind", ["signalling", "dpi"])
def test_injected_defects_match_the_summary(dirty_city, kind):
    out, summary = dirty_city
    rows = _read_days(out / kind)
    required = [f.name for f in schema_for(kind).fields if f.required]
    cells = set(pd.read_csv(out / "cells.csv", usecols=["cell_id"])["cell_id"])
    expected = summary.dirty[kind]

    missing = rows[required].eq("").any(axis=1)
    # Emptying a field can make two rows equal by chance: count copies of
    # complete rows only, as ingest sends incomplete rows to quarantine first.
    duplicates = rows[~missing].drop(columns="file").duplicated()
    present = rows["msisdn"].ne("")
    malformed = present & ~rows["msisdn"].str.match(ID_PATTERNS["msisdn"])
    unknown = rows["cell_id"].ne("") & ~rows["cell_id"].isin(cells)

    assert int(missing.sum()) == expected["missing_required"]
    assert int(duplicates.sum()) == expected["duplicates"]
    assert int(malformed.sum()) == expected["malformed_ids"]
    assert int(unknown.sum()) == expected["unknown_cells"]
    # Each defect hits about 2 % of the clean rows.
    clean_rows = summary.rows[kind] - expected["duplicates"]
    assert expected["missing_required"] == pytest.approx(0.02 * clean_rows, rel=0.01)


def test_late_batch_arrives_in_the_next_days_file(dirty_city):
    out, summary = dirty_city
    late = summary.late_batch
    next_day = pd.read_csv(out / "signalling" / f"{late['to_day']}.csv", dtype=str)

    from_previous_day = next_day["event_time"].str.startswith(
        late["from_day"], na=False
    )

    assert late["events"] > 0
    assert int(from_previous_day.sum()) == late["events"]
    # The late events are the last ones of their day.
    earlier = pd.read_csv(out / "signalling" / f"{late['from_day']}.csv", dtype=str)
    assert next_day.loc[from_previous_day, "event_time"].min() >= (
        earlier["event_time"].dropna().max()
    )


def test_parquet_format_writes_the_same_rows(datasets_dir, tmp_path, small_city):
    _, csv_summary = small_city

    summary = simulate_city(
        tmp_path, subscribers=300, days=2, seed=3, data_dir=datasets_dir, fmt="parquet"
    )

    assert summary.rows == csv_summary.rows
    frame = pd.read_parquet(summary.files["signalling"][0])
    assert frame.columns.tolist() == list(schema_for("signalling").field_names)
    assert len(frame) == len(pd.read_csv(csv_summary.files["signalling"][0]))


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("dirty_rate", 0.5),
        ("fmt", "xml"),
        ("start_date", "02/11/2026"),
        ("subscribers", 0),
    ],
)
def test_bad_arguments_are_rejected(datasets_dir, tmp_path, argument, value):
    with pytest.raises(ConfigError, match=argument):
        simulate_city(tmp_path, **{argument: value}, data_dir=datasets_dir)


def test_earlier_simulation_is_kept_unless_overwrite(datasets_dir, tmp_path):
    simulate_city(tmp_path, subscribers=50, days=1, data_dir=datasets_dir)

    with pytest.raises(ConfigError, match="overwrite"):
        simulate_city(tmp_path, subscribers=50, days=1, data_dir=datasets_dir)
    summary = simulate_city(
        tmp_path, subscribers=50, days=1, seed=1, data_dir=datasets_dir, overwrite=True
    )
    assert summary.rows["subscribers"] == 50


def test_ground_truth_cells_exist_and_homes_are_not_underground(week_city):
    truth, cells, pois = week_city["truth"], week_city["cells"], week_city["pois"]
    cell_type = cells.set_index("cell_id")["cell_type"]

    assert truth["home_cell"].isin(cell_type.index).all()
    assert not (cell_type[truth["home_cell"]] == "subway").any()
    workers = truth.dropna(subset=["work_cell"])
    assert workers["work_cell"].isin(cell_type.index).all()
    # A student's workplace is a school: its cell centre is a school POI.
    schools = pois[pois["poi_type"] == "school"]
    school_points = set(
        zip(schools["lat"].round(6), schools["lon"].round(6), strict=True)
    )
    students = truth[truth["persona"] == "student"].merge(
        cells, left_on="work_cell", right_on="cell_id"
    )
    assert len(students) == (truth["persona"] == "student").sum()
    assert all(
        point in school_points
        for point in zip(
            students["lat"].round(6), students["lon"].round(6), strict=True
        )
    )


def test_personas_have_the_requested_shares(week_city):
    shares = week_city["truth"]["persona"].value_counts(normalize=True)

    assert shares["student"] == pytest.approx(0.08, abs=0.025)
    assert shares["parent"] == pytest.approx(0.15, abs=0.03)
    assert set(week_city["truth"]["tier"]) == {
        "high-potential parent",
        "student",
        "low priority",
    }


def test_signalling_rate_is_about_the_requested_events_per_day(week_city):
    per_person_day = len(week_city["signalling"]) / (1_500 * 7)

    assert per_person_day == pytest.approx(50, rel=0.05)


def test_primary_home_cell_holds_most_night_events(week_city):
    signalling, truth = week_city["signalling"], week_city["truth"]
    hour = signalling["time"].dt.hour
    night = signalling[(hour >= 21) | (hour < 7)]

    counts = night.groupby(["msisdn", "cell_id"]).size()
    top = counts.groupby(level="msisdn").idxmax().map(lambda pair: pair[1])
    share_top = (
        counts.groupby(level="msisdn").max() / counts.groupby(level="msisdn").sum()
    )

    home = truth.set_index("msisdn")["home_cell"]
    assert (top.reindex(home.index) == home).mean() >= 0.99
    assert share_top.median() > 0.5


def test_pingpong_events_return_to_the_serving_cell_within_minutes(week_city):
    signalling = week_city["signalling"].sort_values(["msisdn", "time"])
    previous = signalling.groupby("msisdn")["cell_id"].shift(1)
    following = signalling.groupby("msisdn")["cell_id"].shift(-1)
    gap_s = (
        signalling.groupby("msisdn")["time"].shift(-1) - signalling["time"]
    ).dt.total_seconds()

    bounce = (previous == following) & (signalling["cell_id"] != previous)
    quick = bounce & (gap_s <= 300)

    share = quick.sum() / len(signalling)
    assert 0.08 < share < 0.25


def test_subway_riders_pass_at_least_three_stations_in_order(week_city):
    signalling, truth, cells = (
        week_city["signalling"],
        week_city["truth"],
        week_city["cells"],
    )
    position = cells.set_index("cell_id")[["lat", "lon"]]
    underground = signalling[signalling["cell_id"].str.startswith("sub-")]
    riders = set(truth.loc[truth["subway_commuter"], "msisdn"])

    assert set(underground["msisdn"]) == riders
    morning = underground[
        (underground["time"].dt.hour < 10) & (underground["time"].dt.dayofweek < 5)
    ].sort_values(["msisdn", "time"])
    ride = morning["msisdn"] + morning["time"].dt.date.astype(str)
    moved = morning["cell_id"] != morning.groupby(ride)["cell_id"].shift()
    stops = morning[moved].assign(ride=ride[moved])
    stops = stops.join(position, on="cell_id")
    stops["x"] = stops["lon"] * np.cos(np.radians(39.9))
    stops["y"] = stops["lat"]

    by_ride = stops.groupby("ride")
    assert (by_ride["cell_id"].nunique() >= 3).all()
    # Stations follow each other along the line from entry to exit.
    first_x, first_y = by_ride["x"].transform("first"), by_ride["y"].transform("first")
    last_x, last_y = by_ride["x"].transform("last"), by_ride["y"].transform("last")
    stops["along"] = (stops["x"] - first_x) * (last_x - first_x) + (
        stops["y"] - first_y
    ) * (last_y - first_y)
    steps = stops.groupby("ride")["along"].diff().dropna()
    assert len(steps) > 100
    assert (steps > 0).all()


def test_riders_live_and_work_near_stations_far_apart(week_city):
    truth, cells, pois = week_city["truth"], week_city["cells"], week_city["pois"]
    riders = truth[truth["subway_commuter"]]
    position = cells.set_index("cell_id")[["lat", "lon"]]
    stations = pois[pois["poi_type"] == "subway_station"]

    home = position.loc[riders["home_cell"]].to_numpy()
    work = position.loc[riders["work_cell"]].to_numpy()

    def nearest_station_m(points):
        return haversine_m(
            points[:, :1], points[:, 1:], stations["lat"].values, stations["lon"].values
        ).min(axis=1)

    assert len(riders) > 50
    assert (haversine_m(home[:, 0], home[:, 1], work[:, 0], work[:, 1]) > 3_950).all()
    assert (nearest_station_m(home) < 1_520).all()
    assert (nearest_station_m(work) < 1_520).all()


def _profile(week_city) -> pd.DataFrame:
    """Compute the three profile features the tier rules read, with pandas."""
    dpi, truth, cells, pois = (
        week_city["dpi"],
        week_city["truth"],
        week_city["cells"],
        week_city["pois"],
    )
    k12 = (
        dpi[dpi["app_category"] == "k12_education"]
        .groupby("msisdn")["app_name"]
        .nunique()
        .rename("k12_app_count")
    )
    tutoring = dpi["search_keywords"].str.contains("|".join(TUTORING_TERMS))
    searches = dpi[tutoring].groupby("msisdn").size().rename("tutoring_searches")

    schools = pois[pois["poi_type"] == "school"]
    school_m = haversine_m(
        cells["lat"].values[:, None],
        cells["lon"].values[:, None],
        schools["lat"].values[None, :],
        schools["lon"].values[None, :],
    ).min(axis=1)
    zone = set(cells.loc[school_m <= 500, "cell_id"])
    minutes = (
        pd.to_datetime(dpi["end_time"]) - pd.to_datetime(dpi["start_time"])
    ).dt.total_seconds() / 60
    in_zone = dpi["cell_id"].isin(zone)
    online = (minutes[in_zone].groupby(dpi.loc[in_zone, "msisdn"]).sum() / 7).rename(
        "online_min_per_day_school_zone"
    )

    profile = truth.set_index("msisdn").join([k12, searches, online])
    return profile.fillna(
        {
            "k12_app_count": 0,
            "tutoring_searches": 0,
            "online_min_per_day_school_zone": 0,
        }
    )


def test_tier_rules_recover_the_true_tiers(week_city):
    profile = _profile(week_city)
    parent_rule = (profile["k12_app_count"] > 3) & (profile["tutoring_searches"] >= 1)
    student_rule = profile["online_min_per_day_school_zone"] > 120

    for rule, tier in (
        (parent_rule, "high-potential parent"),
        (student_rule, "student"),
    ):
        truly = profile["tier"] == tier
        precision = (rule & truly).sum() / rule.sum()
        recall = (rule & truly).sum() / truly.sum()
        assert precision >= 0.95, tier
        assert recall >= 0.95, tier


def test_tier_rules_are_not_the_persona_label(week_city):
    profile = _profile(week_city)
    parent_rule = (profile["k12_app_count"] > 3) & (profile["tutoring_searches"] >= 1)
    others = profile[profile["persona"] != "parent"]

    # Some parents slip through the rule, and some non-parents look like one.
    assert (~parent_rule[profile["persona"] == "parent"]).sum() > 0
    assert (others["k12_app_count"].between(1, 2)).sum() > 0
    assert (others["tutoring_searches"] == 1).sum() > 0


def test_some_adults_near_schools_or_online_a_lot_are_not_students(week_city):
    profile = _profile(week_city)
    dpi = week_city["dpi"]
    minutes = (
        pd.to_datetime(dpi["end_time"]) - pd.to_datetime(dpi["start_time"])
    ).dt.total_seconds() / 60
    online_per_day = minutes.groupby(dpi["msisdn"]).sum() / 7
    adults = profile[profile["persona"] != "student"]

    assert (adults["online_min_per_day_school_zone"] > 20).sum() > 0
    assert (online_per_day.reindex(adults.index) > 200).sum() > 0


def test_campaign_contacts_a_third_and_converts_at_the_true_propensity(week_city):
    outcomes = pd.read_csv(
        week_city["out"] / "campaign_outcomes.csv", dtype={"msisdn": str}
    )
    truth = week_city["truth"].set_index("msisdn")

    assert len(outcomes) == 450
    assert outcomes["msisdn"].is_unique
    assert set(outcomes["channel"]) <= {"sms", "push", "call"}
    expected = truth.loc[outcomes["msisdn"], "propensity"].mean()
    assert outcomes["converted"].mean() == pytest.approx(expected, abs=0.05)
    assert truth["propensity"].mean() == pytest.approx(0.10, abs=0.01)


def test_weather_is_hourly_with_some_rain(week_city):
    weather = pd.read_csv(week_city["out"] / "weather.csv")

    assert len(weather) == 7 * 24
    assert pd.to_datetime(weather["observed_at"]).diff().dropna().eq("1h").all()
    assert (weather["precipitation_mm"] > 0).sum() >= 3


def test_synthetic_schools_and_malls_scale_with_subscribers(week_city):
    pois = week_city["pois"]
    kinds = pois["poi_type"].value_counts()

    assert kinds["subway_station"] == 364
    assert kinds["school"] == 50
    assert kinds["mall"] == 20
    assert (
        pois.loc[pois["poi_type"] == "school", "name"].str.startswith("synthetic").all()
    )


def test_summary_dict_counts_rows_and_files(small_city):
    _, summary = small_city

    summary_dict = summary.to_dict()

    assert summary_dict["rows"]["subscribers"] == 300
    assert summary_dict["rows"]["signalling"] == summary.events
    assert len(summary_dict["files"]["signalling"]) == 2
    assert sum(summary_dict["personas"].values()) == 300
    assert re.match(r"^\d+(\.\d+)?$", str(summary_dict["seconds"]))
