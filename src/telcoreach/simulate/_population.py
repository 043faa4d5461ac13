"""The simulated subscribers: who they are, where they live and what they use.

Every trait a profile can later see (age band, handset, K12 apps, tutoring
searches, time online near schools, subway commuting) is drawn here once per
person, together with the hidden truth it is meant to reveal: the persona,
the tier a perfect segmentation would give and the true propensity to buy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.spatial import cKDTree

from telcoreach.ingest.adapters._talkingdata import TalkingDataDistributions
from telcoreach.simulate._apps import AppCatalogue
from telcoreach.simulate._city import HOME_DISTRICTS, WORK_DISTRICTS, City
from telcoreach.simulate._ids import (
    imei_numbers,
    tac_table,
    unique_imsis,
    unique_msisdns,
)

__all__ = ["PERSONAS", "TIERS", "Population", "build_population"]

logger = logging.getLogger(__name__)

PERSONAS: tuple[str, ...] = ("student", "parent", "worker", "non_worker")
STUDENT, PARENT, WORKER, NON_WORKER = range(4)
#: Share of each persona; other adults split 78 % workers, 22 % without work.
PERSONA_SHARES = np.array([0.08, 0.15, 0.77 * 0.78, 0.77 * 0.22])
#: Tier a perfect segmentation gives each persona.
TIERS: tuple[str, ...] = (
    "student",
    "high-potential parent",
    "low priority",
    "low priority",
)

#: Subway commuting: who is eligible and how many of them ride.
SUBWAY_STATION_REACH_M = 1_500.0
SUBWAY_MIN_TRIP_M = 4_000.0
SUBWAY_RIDER_SHARE = 0.4
MAX_ROUTE_STATIONS = 8
_ROUTE_CORRIDORS_M = (1_000.0, 2_000.0)
#: Longest home-work distance; farther draws are pulled towards home.
MAX_WORK_DISTANCE_M = 30_000.0
#: Parents with a workplace; the others stay in their neighbourhood.
PARENT_WORKING_SHARE = 0.8

#: Confusers that keep the tier rules honest.
LIGHT_PARENT_SHARE = 0.03
QUIET_STUDENT_SHARE = 0.03
CASUAL_K12_SHARE = 0.12
ONE_SEARCH_SHARE = 0.06
TUTOR_SHARE = 0.003
HEAVY_HOME_SHARE = 0.1
MAX_K12_APPS = 7
#: Heavy home users live at least this far from every school.
HEAVY_HOME_SCHOOL_MARGIN_M = 800.0

#: Mean online minutes per day behind the true propensity.
BASE_ONLINE_MIN = 75.0
HEAVY_HOME_EXTRA_MIN = 180.0
STUDY_EXTRA_MIN = 230.0 * 5 / 7
#: Base rate of buying the offer among all subscribers.
BASE_RATE = 0.10

_PLANS = (
    "4G-38",
    "4G-58",
    "5G-128",
    "5G-198",
    "5G-298",
    "family-5G-238",
    "student-4G-28",
)
_PLAN_MIX = np.array(
    [
        [0.2, 0.0, 0.1, 0.0, 0.0, 0.0, 0.7],
        [0.0, 0.1, 0.3, 0.2, 0.05, 0.35, 0.0],
        [0.15, 0.2, 0.35, 0.2, 0.1, 0.0, 0.0],
        [0.15, 0.2, 0.35, 0.2, 0.1, 0.0, 0.0],
    ]
)
#: Effect of the age band on the log-odds of buying.
_AGE_EFFECT = {
    "<18": -0.3,
    "18-24": -0.2,
    "25-34": 0.1,
    "35-44": 0.3,
    "45-54": 0.0,
    "55+": -0.4,
}


@dataclass
class Population:
    """Subscribers as arrays, one row per person.

    ``work_cell`` is the school for students and -1 for people without a
    workplace. ``route`` holds the subway cells of a rider's commute, padded
    with -1. ``k12_apps`` holds app indices, padded with -1. The scheduled
    sessions guarantee each K12 app and each tutoring search is seen once
    during the simulated days.
    """

    count: int
    msisdn: pa.Array
    imsi: pa.Array
    imei: pa.Array
    persona: np.ndarray
    subscribers: pa.Table
    home_cell: np.ndarray
    work_cell: np.ndarray
    commute_s: np.ndarray
    subway: np.ndarray
    route: np.ndarray
    route_length: np.ndarray
    k12_apps: np.ndarray
    k12_count: np.ndarray
    heavy_home: np.ndarray
    studious: np.ndarray
    mix_row: np.ndarray
    k12_session_person: np.ndarray
    k12_session_app: np.ndarray
    k12_session_day: np.ndarray
    search_person: np.ndarray
    search_day: np.ndarray
    propensity: np.ndarray
    tac: pa.Table

    def ground_truth(self, city: City) -> pa.Table:
        """Return the hidden truth table (one row per subscriber)."""
        cell_ids = city.cells["cell_id"]
        work = pc.if_else(
            pa.array(self.work_cell >= 0),
            cell_ids.take(pa.array(np.maximum(self.work_cell, 0))),
            pa.scalar(None, pa.string()),
        )
        return pa.table(
            {
                "msisdn": self.msisdn,
                "persona": pa.array(
                    np.array(PERSONAS, object)[self.persona], pa.string()
                ),
                "home_cell": cell_ids.take(pa.array(self.home_cell)),
                "work_cell": work,
                "tier": pa.array(np.array(TIERS, object)[self.persona], pa.string()),
                "propensity": pa.array(np.round(self.propensity, 6)),
                "subway_commuter": pa.array(self.subway),
            }
        )


def _nearest(xy_from: np.ndarray, xy_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distance_m, index = cKDTree(xy_to).query(xy_from)
    return index, distance_m


def subway_routes(
    city: City, home_cell: np.ndarray, work_cell: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the subway cells of each home-work ride, ordered from home.

    The ride enters at the station nearest home, leaves at the one nearest
    work and passes the stations within a corridor of the straight line
    between them, ordered by their projection on it (at most six in between,
    evenly spread). Rides with fewer than three stations get length 0.
    """
    count = len(home_cell)
    route = np.full((count, MAX_ROUTE_STATIONS), -1, dtype=np.int32)
    length = np.zeros(count, dtype=np.int64)
    if count == 0:
        return route, length
    entry, _ = _nearest(city.cell_xy[home_cell], city.station_xy)
    exit_, _ = _nearest(city.cell_xy[work_cell], city.station_xy)
    start = city.station_xy[entry]
    segment = city.station_xy[exit_] - start
    segment_m2 = np.maximum((segment**2).sum(axis=1), 1.0)
    inner = MAX_ROUTE_STATIONS - 2
    for first in range(0, count, 20_000):
        rows = slice(first, min(first + 20_000, count))
        relative = city.station_xy[None, :, :] - start[rows, None, :]
        along = (relative * segment[rows, None, :]).sum(axis=2) / segment_m2[rows, None]
        foot = start[rows, None, :] + along[:, :, None] * segment[rows, None, :]
        across_m = np.hypot(*(city.station_xy[None] - foot).transpose(2, 0, 1))
        chosen = np.zeros(along.shape, dtype=bool)
        found = np.zeros(along.shape[0], dtype=np.int64)
        for corridor_m in _ROUTE_CORRIDORS_M:
            candidates = (along > 0.02) & (along < 0.98) & (across_m <= corridor_m)
            widen = found == 0
            chosen[widen] = candidates[widen]
            found = chosen.sum(axis=1)
        key = np.where(chosen, along, np.inf)
        order = np.argsort(key, axis=1)
        slots = np.arange(inner)
        spread = np.floor((slots[None, :] + 0.5) * found[:, None] / inner).astype(int)
        pick = np.where(found[:, None] > inner, spread, slots[None, :])
        valid = slots[None, :] < np.minimum(found, inner)[:, None]
        station = np.take_along_axis(
            order, np.minimum(pick, order.shape[1] - 1), axis=1
        )
        cells = np.where(valid, city.station_cells[station], -1)
        n_inner = valid.sum(axis=1)
        block = route[rows]
        block[:, 0] = city.station_cells[entry[rows]]
        # Inner stations shift right by one; the exit follows the last of them.
        block[:, 1 : inner + 1] = cells
        block[np.arange(len(n_inner)), n_inner + 1] = city.station_cells[exit_[rows]]
        length[rows] = n_inner + 2
    distinct_ends = entry != exit_
    too_short = (length < 3) | ~distinct_ends
    route[too_short] = -1
    length[too_short] = 0
    return route, length


def _band_gender(
    rng: np.random.Generator,
    persona: np.ndarray,
    distributions: TalkingDataDistributions,
) -> tuple[np.ndarray, np.ndarray]:
    """Return age band and gender per person, by persona and TalkingData."""
    table = distributions.age_gender
    bands = table["age_band"].to_numpy(zero_copy_only=False)
    genders = table["gender"].to_numpy(zero_copy_only=False)
    share = table["share"].to_numpy()
    count = len(persona)
    age_band = np.empty(count, dtype=object)
    gender = np.empty(count, dtype=object)

    adults = np.flatnonzero(persona >= WORKER)
    adult_rows = np.flatnonzero(bands != "<18")
    weights = share[adult_rows] / share[adult_rows].sum()
    pick = adult_rows[rng.choice(len(adult_rows), size=len(adults), p=weights)]
    age_band[adults] = bands[pick]
    gender[adults] = genders[pick]

    chosen_bands = {
        STUDENT: (("<18", "18-24"), (0.85, 0.15)),
        PARENT: (("25-34", "35-44", "45-54"), (0.2, 0.7, 0.1)),
    }
    for code, (options, probabilities) in chosen_bands.items():
        members = np.flatnonzero(persona == code)
        option = rng.choice(len(options), size=len(members), p=probabilities)
        age_band[members] = np.array(options, dtype=object)[option]
        female_share = np.array(
            [
                share[(bands == b) & (genders == "F")].sum() / share[bands == b].sum()
                for b in options
            ]
        )
        female = rng.random(len(members)) < female_share[option]
        gender[members] = np.where(female, "F", "M")
    return age_band, gender


def _k12_portfolio(
    rng: np.random.Generator,
    persona: np.ndarray,
    days: int,
    catalogue: AppCatalogue,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each person's K12 apps, their number and tutoring searches.

    Parents have 4 to 7 K12 apps and search for tutoring about three times a
    week, except light parents (3 apps, or no search). Students have up to
    3 apps. A few other adults have 1 or 2 apps, a few private tutors 4 or 5
    apps and a search or two, and a few non-parents search once.
    """
    count = len(persona)
    k12_count = np.zeros(count, dtype=np.int64)
    weekly_searches = np.zeros(count)
    u = rng.random((4, count))

    student = persona == STUDENT
    k12_count[student] = rng.choice(4, size=student.sum(), p=[0.2, 0.3, 0.3, 0.2])

    parent = persona == PARENT
    k12_count[parent] = rng.integers(4, 8, size=parent.sum())
    weekly_searches[parent] = 3.0
    light = parent & (u[0] < LIGHT_PARENT_SHARE)
    few_apps = light & (u[1] < 0.5)
    k12_count[few_apps] = 3
    weekly_searches[light & ~few_apps] = 0.0

    adult = persona >= WORKER
    casual = adult & (u[2] < CASUAL_K12_SHARE)
    k12_count[casual] = rng.integers(1, 3, size=casual.sum())
    tutor = adult & (u[2] >= 1 - TUTOR_SHARE)
    k12_count[tutor] = rng.integers(4, 6, size=tutor.sum())
    one_search = ~parent & (u[3] < ONE_SEARCH_SHARE)

    searches = np.where(
        weekly_searches > 0,
        np.maximum(1, rng.poisson(weekly_searches * days / 7)),
        0,
    )
    searches = searches + one_search + tutor * rng.integers(1, 3, size=count)

    # Draw each set without replacement, favouring popular apps (Gumbel top-k).
    popularity = catalogue.popularity[catalogue.k12_apps]
    keys = np.log(popularity)[None, :] + rng.gumbel(size=(count, len(popularity)))
    ranked = catalogue.k12_apps[np.argsort(-keys, axis=1)]
    slots = np.arange(MAX_K12_APPS)[None, :]
    k12_apps = np.where(slots < k12_count[:, None], ranked[:, :MAX_K12_APPS], -1)
    return k12_apps.astype(np.int16), k12_count, searches


def _calibrated_propensity(score: np.ndarray) -> np.ndarray:
    """Return ``sigmoid(score + b)`` with ``b`` set so the mean is the base rate."""
    low, high = -15.0, 15.0
    for _ in range(60):
        middle = (low + high) / 2
        mean = np.mean(1 / (1 + np.exp(-(score + middle))))
        low, high = (middle, high) if mean < BASE_RATE else (low, middle)
    return 1 / (1 + np.exp(-(score + (low + high) / 2)))


def build_population(
    rng: np.random.Generator,
    count: int,
    days: int,
    city: City,
    distributions: TalkingDataDistributions,
    catalogue: AppCatalogue,
) -> Population:
    """Return ``count`` simulated subscribers of ``city``."""
    persona = rng.choice(len(PERSONAS), size=count, p=PERSONA_SHARES).astype(np.int8)
    age_band, gender = _band_gender(rng, persona, distributions)

    devices = distributions.devices
    model_index = rng.choice(
        devices.num_rows, size=count, p=devices["share"].to_numpy()
    )
    tacs = tac_table(devices.num_rows)
    msisdn = unique_msisdns(rng, count)
    imsi = unique_imsis(rng, count)
    imei = imei_numbers(rng, tacs[model_index])

    plan = np.array(_PLANS, dtype=object)[
        (rng.random(count)[:, None] > np.cumsum(_PLAN_MIX[persona], axis=1)).sum(axis=1)
    ]
    tenure_months = np.where(
        persona == STUDENT,
        rng.integers(1, 73, size=count),
        np.minimum(300, 1 + rng.exponential(60.0, size=count)).astype(np.int64),
    )
    minor = age_band == "<18"
    consent_marketing = rng.random(count) < np.where(minor, 0.1, 0.72)
    consent_profiling = rng.random(count) < np.where(minor, 0.3, 0.85)
    opted_out = rng.random(count) < 0.04

    home_lat, home_lon = city.sample_points(rng, count, HOME_DISTRICTS)
    home_cell = city.locate_surface(home_lat, home_lon)

    work_cell = np.full(count, -1, dtype=np.int64)
    has_work = (persona == WORKER) | (
        (persona == PARENT) & (rng.random(count) < PARENT_WORKING_SHARE)
    )
    workers = np.flatnonzero(has_work)
    work_lat, work_lon = city.sample_points(rng, len(workers), WORK_DISTRICTS)
    home_xy = city.cell_xy[home_cell[workers]]
    work_xy = city.project(work_lat, work_lon)
    offset = work_xy - home_xy
    distance_m = np.hypot(*offset.T)
    pull = np.minimum(1.0, MAX_WORK_DISTANCE_M / np.maximum(distance_m, 1.0))
    target_xy = home_xy + offset * pull[:, None]
    work_cell[workers] = city.locate_xy(target_xy)

    students = np.flatnonzero(persona == STUDENT)
    k_nearest = min(3, len(city.school_cells))
    _, nearest_schools = cKDTree(city.cell_xy[city.school_cells]).query(
        city.cell_xy[home_cell[students]], k=k_nearest
    )
    nearest_schools = np.asarray(nearest_schools).reshape(len(students), k_nearest)
    pick = rng.integers(0, k_nearest, size=len(students))
    work_cell[students] = city.school_cells[
        nearest_schools[np.arange(len(students)), pick]
    ]

    commute_m = np.where(
        work_cell >= 0, city.distance_m(home_cell, np.maximum(work_cell, 0)), 0.0
    )
    _, home_station_m = _nearest(city.cell_xy[home_cell], city.station_xy)
    _, work_station_m = _nearest(
        city.cell_xy[np.maximum(work_cell, 0)], city.station_xy
    )
    eligible = (
        has_work
        & (commute_m > SUBWAY_MIN_TRIP_M)
        & (home_station_m <= SUBWAY_STATION_REACH_M)
        & (work_station_m <= SUBWAY_STATION_REACH_M)
    )
    riders = np.flatnonzero(eligible & (rng.random(count) < SUBWAY_RIDER_SHARE))
    route = np.full((count, MAX_ROUTE_STATIONS), -1, dtype=np.int32)
    route_length = np.zeros(count, dtype=np.int64)
    route[riders], route_length[riders] = subway_routes(
        city, home_cell[riders], work_cell[riders]
    )
    subway = route_length >= 3

    # Door to door: subway at 30 km/h plus 10 minutes of walking, surface
    # at 22 km/h plus 5 minutes, a student walking or cycling at 15 km/h.
    speed_m_s = np.where(
        subway, 30 / 3.6, np.where(persona == STUDENT, 15 / 3.6, 22 / 3.6)
    )
    overhead_s = np.where(subway, 600, 300)
    commute_s = np.where(work_cell >= 0, overhead_s + commute_m / speed_m_s, 0).astype(
        np.int64
    )
    commute_s = np.minimum(commute_s, np.where(persona == STUDENT, 3_300, 5_400))

    k12_apps, k12_count, searches = _k12_portfolio(rng, persona, days, catalogue)
    search_person = np.repeat(np.arange(count), searches)
    search_day = rng.integers(0, days, size=len(search_person))

    holder, slot = np.nonzero(k12_apps >= 0)
    k12_session_app = k12_apps[holder, slot]
    k12_session_day = rng.integers(0, days, size=len(holder))

    adult = persona >= PARENT
    far_from_school = city.school_distance_m[home_cell] > HEAVY_HOME_SCHOOL_MARGIN_M
    heavy_home = adult & far_from_school & (rng.random(count) < HEAVY_HOME_SHARE)
    studious = (persona == STUDENT) & (rng.random(count) >= QUIET_STUDENT_SHARE)

    online_min = (
        BASE_ONLINE_MIN + HEAVY_HOME_EXTRA_MIN * heavy_home + STUDY_EXTRA_MIN * studious
    )
    band_index = pc.index_in(pa.array(age_band), value_set=pa.array(list(_AGE_EFFECT)))
    age_effect = np.array(list(_AGE_EFFECT.values()))[band_index.to_numpy()]
    score = (
        1.4 * (persona == PARENT)
        + 0.3 * (persona == STUDENT)
        + 0.18 * k12_count
        + 0.2 * np.log1p(tenure_months / 12)
        + age_effect
        + 0.004 * online_min
        + 0.3 * subway
        + rng.normal(0.0, 0.6, size=count)
    )
    propensity = _calibrated_propensity(score)

    model_names = devices.select(["device_brand", "device_model"]).take(
        pa.array(model_index)
    )
    subscribers = pa.table(
        {
            "msisdn": msisdn,
            "imsi": imsi,
            "imei": imei,
            "age_band": pa.array(age_band, pa.string()),
            "gender": pa.array(gender, pa.string()),
            "plan": pa.array(plan, pa.string()),
            "device_brand": model_names["device_brand"],
            "device_model": model_names["device_model"],
            "tenure_months": pa.array(tenure_months, pa.int64()),
            "consent_marketing": pa.array(consent_marketing),
            "consent_profiling": pa.array(consent_profiling),
            "opted_out": pa.array(opted_out),
        }
    )
    tac = pa.table(
        {
            "tac": pa.array(tacs).cast(pa.string()),
            "device_brand": devices["device_brand"],
            "device_model": devices["device_model"],
        }
    )
    logger.info(
        "population: %d subscribers (%s), %d subway riders",
        count,
        ", ".join(
            f"{name} {int((persona == code).sum())}"
            for code, name in enumerate(PERSONAS)
        ),
        int(subway.sum()),
    )
    return Population(
        count=count,
        msisdn=msisdn,
        imsi=imsi,
        imei=imei,
        persona=persona,
        subscribers=subscribers,
        home_cell=home_cell,
        work_cell=work_cell,
        commute_s=commute_s,
        subway=subway,
        route=route,
        route_length=route_length,
        k12_apps=k12_apps,
        k12_count=k12_count,
        heavy_home=heavy_home,
        studious=studious,
        mix_row=np.minimum(persona, 2).astype(np.int64),
        k12_session_person=holder,
        k12_session_app=k12_session_app,
        k12_session_day=k12_session_day,
        search_person=search_person,
        search_day=search_day,
        propensity=propensity,
        tac=tac,
    )
