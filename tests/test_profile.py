"""Profiles on a small hand-made city whose answers are known."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from telcoreach.engine import Engine
from telcoreach.features import build_profiles
from telcoreach.ingest import file_sources, ingest_batch
from telcoreach.pipeline import init_workspace

CELLS = {
    # cell id: (lat, lon, type)
    "home": (39.900, 116.300, "macro"),
    "home_nb": (39.905, 116.305, "macro"),
    "work": (39.950, 116.450, "macro"),
    "s1": (39.910, 116.330, "subway"),
    "s2": (39.920, 116.360, "subway"),
    "s3": (39.930, 116.390, "subway"),
    "s4": (39.940, 116.420, "subway"),
    "school": (39.880, 116.280, "macro"),
}
ALICE, BOB = "13800000001", "13900000002"


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _alice_day(day: datetime) -> list[tuple[datetime, str]]:
    """Commuter: home at night (with ping-pong), subway s1..s4, work by day."""
    events = [(day + timedelta(hours=h), "home") for h in (0, 2, 4, 6)]
    events.append((day + timedelta(hours=3), "home_nb"))  # ping-pong between 2 and 4
    events.append((day + timedelta(hours=3, minutes=2), "home"))
    for i, cell in enumerate(("s1", "s2", "s3", "s4")):
        events.append((day + timedelta(hours=8, minutes=5 * i), cell))
    events += [(day + timedelta(hours=h), "work") for h in (9, 11, 13, 15, 16)]
    events += [(day + timedelta(hours=h), "home") for h in (19, 21, 22, 23)]
    return events


def _bob_day(day: datetime) -> list[tuple[datetime, str]]:
    """A student: home at night, at school by day, never on the subway."""
    events = [(day + timedelta(hours=h), "home_nb") for h in (0, 3, 6, 21, 23)]
    events += [(day + timedelta(hours=h), "school") for h in (8, 10, 12, 14, 16, 18)]
    return events


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    workspace = init_workspace(root / "ws")
    days = [datetime(2026, 11, 2) + timedelta(days=d) for d in range(3)]  # Mon-Wed

    signalling = [
        f"{who},,,{t:%Y-%m-%d %H:%M:%S},,{cell},periodic_update"
        for day in days
        for who, plan in ((ALICE, _alice_day), (BOB, _bob_day))
        for t, cell in plan(day)
    ]
    dpi = []
    for day in days:
        for app in ("作业帮", "猿辅导", "学而思", "小猿搜题"):
            dpi.append(
                f"{ALICE},{day:%Y-%m-%d} 20:00:00,{day:%Y-%m-%d} 20:10:00,{app},"
                f"k12_education,,10,100,h,home"
            )
        dpi.append(
            f"{ALICE},{day:%Y-%m-%d} 20:30:00,{day:%Y-%m-%d} 20:31:00,baidu,"
            f"search,小学数学家教,1,1,h,home"
        )
        dpi.append(
            f"{BOB},{day:%Y-%m-%d} 17:00:00,{day:%Y-%m-%d} 19:30:00,bilibili,"
            f"video,,1,1,h,school"
        )
    sources = {
        "cells": _csv(
            root / "cells.csv",
            "cell_id,lac,lat,lon,radius_m,cell_type",
            [f"{c},1,{lat},{lon},300,{kind}" for c, (lat, lon, kind) in CELLS.items()],
        ),
        "pois": _csv(
            root / "pois.csv",
            "poi_id,name,poi_type,lat,lon",
            ["p1,No. 1 School,school,39.8805,116.2805"],
        ),
        "subscribers": _csv(
            root / "subscribers.csv",
            "msisdn,imsi,imei,age_band,gender,plan,device_brand,device_model,"
            "tenure_months,consent_marketing,consent_profiling,opted_out",
            [
                f"{ALICE},,,35-44,F,5g,huawei,p60,40,true,true,false",
                f"{BOB},,,<18,M,4g,xiaomi,13,12,false,true,false",
            ],
        ),
        "signalling": _csv(
            root / "signalling.csv",
            "msisdn,imsi,imei,event_time,lac,cell_id,event_type",
            signalling,
        ),
        "dpi": _csv(
            root / "dpi.csv",
            "msisdn,start_time,end_time,app_name,app_category,search_keywords,"
            "bytes_up,bytes_down,host,cell_id",
            dpi,
        ),
    }
    for kind, path in sources.items():
        ingest_batch(workspace, kind, file_sources(kind, [path]))

    engine = Engine(workspace)
    summary = build_profiles(engine)
    frame = engine.table("profiles").to_pandas()
    tokens = workspace.pseudonymiser
    frame.index = frame["subscriber"].map(
        {tokens.token("msisdn", ALICE): "alice", tokens.token("msisdn", BOB): "bob"}
    )
    engine.close()
    return summary, frame


def test_home_is_the_cell_with_most_night_dwell_despite_ping_pong(profiles):
    _, frame = profiles

    assert frame.loc["alice", "home_cell"] == "home"
    assert frame.loc["bob", "home_cell"] == "home_nb"


def test_work_is_the_cell_with_most_weekday_daytime_dwell(profiles):
    _, frame = profiles

    assert frame.loc["alice", "work_cell"] == "work"
    assert frame.loc["bob", "work_cell"] == "school"


def test_subway_commuter_needs_rides_through_three_stations(profiles):
    summary, frame = profiles

    assert bool(frame.loc["alice", "subway_commuter"])
    assert frame.loc["alice", "subway_trips_weekday"] == 3
    assert not bool(frame.loc["bob", "subway_commuter"])
    assert summary.subway_commuters == 1


def test_app_search_and_school_zone_features(profiles):
    _, frame = profiles

    assert frame.loc["alice", "k12_app_count"] == 4
    assert frame.loc["alice", "tutoring_searches"] == 3
    assert frame.loc["bob", "online_min_per_day_school_zone"] == pytest.approx(150)
    assert frame.loc["bob", "days_near_school"] == 3
    assert frame.loc["alice", "online_min_per_day_home"] == pytest.approx(41)


def test_radius_of_gyration_matches_brute_force(profiles):
    _, frame = profiles
    cells = [cell for _ in range(3) for _, cell in _bob_day(datetime(2026, 11, 2))]
    lat = np.array([CELLS[c][0] for c in cells])
    lon = np.array([CELLS[c][1] for c in cells])
    km_per_degree = 6371.0088 * np.pi / 180
    dx = (lon - lon.mean()) * np.cos(np.radians((lat + lat.mean()) / 2)) * km_per_degree
    dy = (lat - lat.mean()) * km_per_degree
    expected = np.sqrt(np.mean(dx**2 + dy**2))

    assert frame.loc["bob", "radius_of_gyration_km"] == pytest.approx(
        expected, rel=1e-6
    )


def test_profile_has_one_row_per_subscriber_and_no_raw_ids(profiles):
    _, frame = profiles

    assert len(frame) == 2
    text = frame.to_csv()
    assert ALICE not in text and BOB not in text
