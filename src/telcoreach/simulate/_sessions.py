"""Daily DPI sessions of the simulated subscribers.

Everyone has about 15 ordinary sessions a day, drawn with an evening-heavy
diurnal rate, an app category by persona and an app by popularity (K12 apps
only from the person's own set). On top come the sessions that make the
tiers visible, and their confusers:

- each K12 app a person has is used at least once during the simulation,
  and each scheduled tutoring search happens on its day;
- studious students spend four or five long sessions in the evening at
  school (evening self-study), over 150 minutes a school day;
- heavy home users (adults living away from schools) spend three or four
  long sessions at home every evening.

A session's cell is where the person is when it starts.
"""

from __future__ import annotations

import numpy as np

from telcoreach.simulate._apps import (
    EVERYDAY_SEARCHES,
    TUTORING_SEARCHES,
    AppCatalogue,
)
from telcoreach.simulate._city import City
from telcoreach.simulate._mobility import (
    DAY_S,
    DayPlan,
    EventArrays,
    locate,
    times_by_hour,
)
from telcoreach.simulate._population import STUDENT, Population

__all__ = ["SEARCH_TERMS", "dpi_sessions"]

#: Search terms: index < len(TUTORING_SEARCHES) is a tutoring search.
SEARCH_TERMS: tuple[str, ...] = TUTORING_SEARCHES + EVERYDAY_SEARCHES
_HOUR_S = 3_600
_SESSION_HOURLY = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.0]
    + [0.8] * 3
    + [1.2, 1.2]
    + [0.8] * 4
    + [1.6] * 5
    + [0.8]
)
_MEDIAN_SESSION_S = 180.0
_MAX_SESSION_S = 5_400
_EVERYDAY_SEARCH_SHARE = 0.5
_STUDY_START_S = 16 * _HOUR_S
_STUDY_SESSIONS = (4, 6)
_STUDY_MINUTES = (40, 65)
_HEAVY_SESSIONS = (3, 5)
_HEAVY_MINUTES = (40, 80)
_HEAVY_WINDOW_S = (20.75 * _HOUR_S, 23.25 * _HOUR_S)
#: Categories of study-hall and heavy-home sessions: k12, video, social, games.
_LONG_SESSION_CATEGORIES = ("k12_education", "video", "social", "games")
_STUDY_MIX = np.array([0.4, 0.3, 0.2, 0.1])
_HEAVY_MIX = np.array([0.0, 0.5, 0.25, 0.25])


def _sessions(person, start_s, duration_s, app, search=None) -> EventArrays:
    count = len(person)
    return EventArrays(
        {
            "person": np.asarray(person, dtype=np.int32),
            "start_s": np.asarray(start_s, dtype=np.int64),
            "duration_s": np.asarray(duration_s, dtype=np.int64),
            "app": np.asarray(app, dtype=np.int16),
            "search": (
                np.full(count, -1, dtype=np.int16)
                if search is None
                else np.asarray(search, dtype=np.int16)
            ),
        }
    )


def _own_k12_app(
    rng: np.random.Generator, population: Population, person: np.ndarray
) -> np.ndarray:
    """Return one of each person's own K12 apps (all must have at least one)."""
    slot = (rng.random(len(person)) * population.k12_count[person]).astype(np.int64)
    return population.k12_apps[person, slot]


def _ordinary(
    rng: np.random.Generator,
    population: Population,
    catalogue: AppCatalogue,
    sessions_per_day: float,
) -> EventArrays:
    per_person = rng.poisson(sessions_per_day, size=population.count)
    person = np.repeat(np.arange(population.count), per_person)
    start_s = times_by_hour(rng, len(person), _SESSION_HOURLY)
    duration_s = np.clip(
        rng.lognormal(np.log(_MEDIAN_SESSION_S), 1.0, size=len(person)),
        5,
        _MAX_SESSION_S,
    )

    mix = catalogue.category_mix[population.mix_row[person]].copy()
    mix[population.k12_count[person] == 0, catalogue.k12_category] = 0.0
    cdf = np.cumsum(mix, axis=1)
    u = rng.random(len(person)) * cdf[:, -1]
    category = np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)
    app = catalogue.draw_apps(rng, category)
    k12 = category == catalogue.k12_category
    app[k12] = _own_k12_app(rng, population, person[k12])

    search = np.full(len(person), -1, dtype=np.int64)
    searching = (category == catalogue.search_category) & (
        rng.random(len(person)) < _EVERYDAY_SEARCH_SHARE
    )
    search[searching] = len(TUTORING_SEARCHES) + rng.integers(
        0, len(EVERYDAY_SEARCHES), size=int(searching.sum())
    )
    return _sessions(person, start_s, duration_s, app, search)


def _scheduled(
    rng: np.random.Generator,
    population: Population,
    catalogue: AppCatalogue,
    day: int,
) -> list[EventArrays]:
    """Return today's guaranteed K12 sessions and tutoring searches."""
    today = population.k12_session_day == day
    person = population.k12_session_person[today]
    k12 = _sessions(
        person,
        rng.integers(18 * _HOUR_S, 22 * _HOUR_S + 1_800, size=len(person)),
        np.clip(rng.lognormal(np.log(600), 0.6, size=len(person)), 60, _MAX_SESSION_S),
        population.k12_session_app[today],
    )

    person = population.search_person[population.search_day == day]
    engines = catalogue.search_apps
    searches = _sessions(
        person,
        rng.integers(19 * _HOUR_S, 23 * _HOUR_S, size=len(person)),
        np.clip(rng.lognormal(np.log(120), 0.5, size=len(person)), 10, 1_800),
        engines[(rng.random(len(person)) < 0.2).astype(np.int64)],
        rng.integers(0, len(TUTORING_SEARCHES), size=len(person)),
    )
    return [k12, searches]


def _long_sessions(
    rng: np.random.Generator,
    population: Population,
    catalogue: AppCatalogue,
    person_of_block: np.ndarray,
    sessions: tuple[int, int],
    minutes: tuple[int, int],
    window_start_s: np.ndarray,
    window_end_s: np.ndarray,
    mix: np.ndarray,
) -> EventArrays:
    """Return blocks of long sessions spread evenly over each person's window."""
    per_person = rng.integers(*sessions, size=len(person_of_block))
    person = np.repeat(person_of_block, per_person)
    first = np.repeat(np.cumsum(per_person) - per_person, per_person)
    step = np.arange(len(person)) - first
    total = np.repeat(per_person, per_person)
    low = np.repeat(window_start_s, per_person)
    span = np.repeat(window_end_s - window_start_s, per_person)
    start_s = low + (span * (step + rng.random(len(person)) * 0.3) / total).astype(
        np.int64
    )
    duration_s = rng.integers(minutes[0] * 60, minutes[1] * 60 + 1, size=len(person))

    weights = np.tile(mix, (len(person), 1))
    weights[population.k12_count[person] == 0, 0] = 0.0
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(person)) * cdf[:, -1]
    choice = np.minimum((cdf < u[:, None]).sum(axis=1), len(mix) - 1)
    category = np.array(
        [list(catalogue.categories).index(c) for c in _LONG_SESSION_CATEGORIES]
    )[choice]
    app = catalogue.draw_apps(rng, category)
    k12 = choice == 0
    app[k12] = _own_k12_app(rng, population, person[k12])
    return _sessions(person, start_s, duration_s, app)


def dpi_sessions(
    rng: np.random.Generator,
    city: City,
    population: Population,
    catalogue: AppCatalogue,
    plan: DayPlan,
    day: int,
    sessions_per_day: float,
) -> EventArrays:
    """Return one day of DPI sessions with the cell where each one starts.

    Columns: ``person``, ``start_s`` (seconds of the day), ``duration_s``,
    ``app`` (catalogue index), ``search`` (index into :data:`SEARCH_TERMS`,
    -1 for none), ``bytes_up``, ``bytes_down``, ``cell``.
    """
    parts = [_ordinary(rng, population, catalogue, sessions_per_day)]
    parts += _scheduled(rng, population, catalogue, day)

    at_school = plan.commuting & (population.persona == STUDENT) & population.studious
    students = np.flatnonzero(at_school)
    parts.append(
        _long_sessions(
            rng,
            population,
            catalogue,
            students,
            _STUDY_SESSIONS,
            _STUDY_MINUTES,
            np.full(len(students), _STUDY_START_S),
            plan.depart_s[students] - _STUDY_MINUTES[1] * 60,
            _STUDY_MIX,
        )
    )
    heavy = np.flatnonzero(population.heavy_home)
    parts.append(
        _long_sessions(
            rng,
            population,
            catalogue,
            heavy,
            _HEAVY_SESSIONS,
            _HEAVY_MINUTES,
            np.full(len(heavy), _HEAVY_WINDOW_S[0]),
            np.full(len(heavy), _HEAVY_WINDOW_S[1]),
            _HEAVY_MIX,
        )
    )
    sessions = EventArrays.concat(parts)
    start_s = np.clip(sessions.columns["start_s"], 0, DAY_S - 1)
    sessions.columns["start_s"] = start_s
    cell, _ = locate(city, population, plan, sessions.columns["person"], start_s)
    sessions.columns["cell"] = cell.astype(np.int32)

    # Apps transfer in bursts: on average a third of the session at full rate.
    count = len(start_s)
    rate_b_s = catalogue.rate_kb_s[sessions.columns["app"]] * 1_024 / 3
    bytes_down = sessions.columns["duration_s"] * rate_b_s
    bytes_down = bytes_down * rng.lognormal(0.0, 0.5, size=count)
    sessions.columns["bytes_down"] = bytes_down.astype(np.int64) + 1_000
    uplink_share = rng.uniform(0.03, 0.15, size=count)
    sessions.columns["bytes_up"] = (bytes_down * uplink_share).astype(np.int64) + 500
    return sessions
