"""Daily movement of the simulated subscribers and the signalling it produces.

Each person-day is one trip at most: home, travel, a destination (work,
school or an outing), travel back, home. Four times bound it (leave home,
arrive, depart, back home), so the place of any event follows from its time
with a few vectorised comparisons. Night (21:00-07:00) is always at home.

Signalling events are drawn at random times with a diurnal rate, then:

- at a place, about one in five lands on a neighbouring cell and a handover
  back to the serving cell follows within four minutes (ping-pong);
- while travelling, the cell follows the path: the nearest surface cell of
  the straight line, or for subway riders the station cells in ride order;
- each trip adds handovers along its path (for riders, one event at least
  every five minutes on the station being passed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telcoreach.simulate._city import HOME_DISTRICTS, City
from telcoreach.simulate._population import STUDENT, Population

__all__ = [
    "DAY_S",
    "EVENT_TYPES",
    "DayPlan",
    "EventArrays",
    "locate",
    "plan_day",
    "signalling_events",
    "sort_unique",
    "times_by_hour",
]

DAY_S = 86_400
_HOUR_S = 3_600
#: Event types drawn for events at a place; travel adds handovers.
EVENT_TYPES: tuple[str, ...] = (
    "attach",
    "periodic_update",
    "data",
    "call",
    "sms",
    "handover",
)
_BACKGROUND_TYPE_SHARES = np.array([0.02, 0.34, 0.41, 0.1, 0.1, 0.03])
_HANDOVER = EVENT_TYPES.index("handover")
#: Relative signalling rate per hour of the day (phones idle at night).
_SIGNALLING_HOURLY = np.array(
    [0.5] * 6 + [0.8, 1.0, 1.1] + [1.0] * 9 + [1.2] * 5 + [0.8]
)
PINGPONG_SHARE = 0.2
_PINGPONG_RETURN_S = (20, 240)
#: Subway riders signal at least this often; surface trips hand over per 1.5 km.
_RIDE_EVENT_GAP_S = 300
_SURFACE_HANDOVER_M = 1_500.0
_MAX_SURFACE_HANDOVERS = 12
#: Daily absence from work or school (leave, sickness).
_ABSENCE = {True: 0.02, False: 0.04}
#: Chance of an outing on a free day: weekday, weekend.
_OUTING_SHARE = (0.5, 0.65)
_OUTING_MALL_SHARE = 0.35
_MAX_OUTING_M = 25_000.0
_LATEST_RETURN_S = 20 * _HOUR_S + 1_800


@dataclass
class EventArrays:
    """Columns of a day's events as numpy arrays of equal length."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def take(self, rows: np.ndarray | slice) -> EventArrays:
        """Return the given rows."""
        return EventArrays(
            {name: values[rows] for name, values in self.columns.items()}
        )

    @staticmethod
    def concat(parts: list[EventArrays]) -> EventArrays:
        """Return the rows of ``parts`` one after the other."""
        names = parts[0].columns
        return EventArrays(
            {name: np.concatenate([p.columns[name] for p in parts]) for name in names}
        )


@dataclass
class DayPlan:
    """One day of every person: when they leave, arrive, depart, return, where.

    Times are seconds since midnight; ``DAY_S`` means "not today". People
    without a trip have all four times at ``DAY_S`` and ``dest_cell`` -1.
    """

    leave_s: np.ndarray
    arrive_s: np.ndarray
    depart_s: np.ndarray
    return_s: np.ndarray
    dest_cell: np.ndarray
    by_subway: np.ndarray
    commuting: np.ndarray

    @property
    def travelling(self) -> np.ndarray:
        """Whether each person makes a trip today."""
        return self.leave_s < DAY_S


def _uniform(rng: np.random.Generator, low, high) -> np.ndarray:
    low = np.asarray(low, dtype=float)
    high = np.maximum(np.asarray(high, dtype=float), low)
    return low + rng.random(np.broadcast(low, high).shape) * (high - low)


def plan_day(
    rng: np.random.Generator, city: City, population: Population, weekday: bool
) -> DayPlan:
    """Return the trip of every person on one day."""
    count = population.count
    persona = population.persona
    student = persona == STUDENT
    leave = np.full(count, DAY_S, dtype=np.int64)
    arrive = leave.copy()
    depart = leave.copy()
    back = leave.copy()
    dest = np.full(count, -1, dtype=np.int64)

    absence = np.where(student, _ABSENCE[True], _ABSENCE[False])
    commuting = weekday & (population.work_cell >= 0) & (rng.random(count) >= absence)
    rows = np.flatnonzero(commuting)
    travel_s = population.commute_s[rows]
    is_student = student[rows]
    # Students are at school from 08:00 to about 19:30 (evening self-study),
    # workers at work from 09:00 to 17:00 or later; nobody leaves before 07:00.
    earliest = 7 * _HOUR_S + travel_s
    arrive_lo = np.maximum(np.where(is_student, 7.5 * _HOUR_S, 8 * _HOUR_S), earliest)
    arrive_hi = np.where(is_student, 8 * _HOUR_S - 60, 9 * _HOUR_S - 60)
    arrive[rows] = _uniform(rng, arrive_lo, arrive_hi).astype(np.int64)
    leave[rows] = arrive[rows] - travel_s
    depart[rows] = np.where(
        is_student,
        _uniform(rng, 19.25 * _HOUR_S, 19.75 * _HOUR_S),
        _uniform(rng, 17 * _HOUR_S, 18.75 * _HOUR_S),
    ).astype(np.int64)
    back[rows] = depart[rows] + travel_s
    dest[rows] = population.work_cell[rows]

    free = np.flatnonzero(
        ~commuting & (rng.random(count) < _OUTING_SHARE[0 if weekday else 1])
    )
    home = population.home_cell[free]
    lat, lon = city.sample_points(rng, len(free), HOME_DISTRICTS)
    home_xy = city.cell_xy[home]
    offset = city.project(lat, lon) - home_xy
    pull = np.minimum(1.0, _MAX_OUTING_M / np.maximum(np.hypot(*offset.T), 1.0))
    outing = city.locate_xy(home_xy + offset * pull[:, None])
    mall = city.mall_cells[rng.integers(0, len(city.mall_cells), size=len(free))]
    outing = np.where(rng.random(len(free)) < _OUTING_MALL_SHARE, mall, outing)
    trip_s = (300 + city.distance_m(home, outing) / (22 / 3.6)).astype(np.int64)
    leave[free] = _uniform(rng, 9 * _HOUR_S, 15 * _HOUR_S).astype(np.int64)
    arrive[free] = leave[free] + trip_s
    stay_s = _uniform(rng, _HOUR_S, 4 * _HOUR_S).astype(np.int64)
    depart[free] = np.maximum(
        arrive[free], np.minimum(arrive[free] + stay_s, _LATEST_RETURN_S - trip_s)
    )
    back[free] = depart[free] + trip_s
    dest[free] = outing

    return DayPlan(
        leave_s=leave,
        arrive_s=arrive,
        depart_s=depart,
        return_s=back,
        dest_cell=dest,
        by_subway=commuting & population.subway,
        commuting=commuting,
    )


def times_by_hour(
    rng: np.random.Generator, count: int, hourly_rate: np.ndarray
) -> np.ndarray:
    """Return ``count`` seconds of the day drawn with a piecewise-constant rate."""
    cdf = np.concatenate([[0.0], np.cumsum(hourly_rate) / hourly_rate.sum()])
    u = rng.random(count)
    hour = np.minimum(np.searchsorted(cdf, u, side="right") - 1, 23)
    within = (u - cdf[hour]) / (cdf[hour + 1] - cdf[hour])
    return ((hour + within) * _HOUR_S).astype(np.int64).clip(0, DAY_S - 1)


def locate(
    city: City,
    population: Population,
    plan: DayPlan,
    person: np.ndarray,
    time_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the serving cell of each (person, time) and whether it is at a place.

    A position on the way is the nearest surface cell of the straight line
    from home to the destination, or for subway riders the station of the
    route reached so far.
    """
    leave = plan.leave_s[person]
    arrive = plan.arrive_s[person]
    depart = plan.depart_s[person]
    back = plan.return_s[person]
    outbound = (time_s >= leave) & (time_s < arrive)
    inbound = (time_s >= depart) & (time_s < back)
    at_dest = (time_s >= arrive) & (time_s < depart)
    cell = np.where(at_dest, plan.dest_cell[person], population.home_cell[person])

    travel = np.flatnonzero(outbound | inbound)
    if len(travel):
        who = person[travel]
        when = time_s[travel]
        going = outbound[travel]
        progress = np.where(
            going,
            (when - leave[travel]) / np.maximum(arrive[travel] - leave[travel], 1),
            1 - (when - depart[travel]) / np.maximum(back[travel] - depart[travel], 1),
        )
        cell[travel] = path_cells(city, population, plan, who, progress)
    return cell, ~(outbound | inbound)


def path_cells(
    city: City,
    population: Population,
    plan: DayPlan,
    person: np.ndarray,
    progress: np.ndarray,
) -> np.ndarray:
    """Return the cell at ``progress`` (0 home, 1 destination) of each trip."""
    cell = np.empty(len(person), dtype=np.int64)
    riding = plan.by_subway[person]
    rider = person[riding]
    length = population.route_length[rider]
    stop = np.minimum((progress[riding] * length).astype(np.int64), length - 1)
    cell[riding] = population.route[rider, stop]

    walker = person[~riding]
    start = city.cell_xy[population.home_cell[walker]]
    end = city.cell_xy[plan.dest_cell[walker]]
    point = start + progress[~riding, None] * (end - start)
    cell[~riding] = city.locate_xy(point)
    return cell


def _trip_events(
    city: City,
    population: Population,
    plan: DayPlan,
) -> tuple[EventArrays, np.ndarray]:
    """Return the handovers along every trip and their count per person."""
    travelling = np.flatnonzero(plan.travelling)
    riding = plan.by_subway[travelling]
    travel_s = plan.arrive_s[travelling] - plan.leave_s[travelling]
    distance_m = city.distance_m(
        population.home_cell[travelling], plan.dest_cell[travelling]
    )
    per_leg = np.where(
        riding,
        np.maximum(
            population.route_length[travelling], np.ceil(travel_s / _RIDE_EVENT_GAP_S)
        ),
        np.minimum(np.round(distance_m / _SURFACE_HANDOVER_M), _MAX_SURFACE_HANDOVERS),
    ).astype(np.int64)

    counts = np.zeros(population.count, dtype=np.int64)
    counts[travelling] = 2 * per_leg
    # One row per event: outbound legs first, then inbound legs.
    leg_person = np.concatenate([travelling, travelling])
    leg_events = np.concatenate([per_leg, per_leg])
    outbound = np.repeat([True, False], len(travelling))
    person = np.repeat(leg_person, leg_events)
    going = np.repeat(outbound, leg_events)
    first = np.repeat(np.cumsum(leg_events) - leg_events, leg_events)
    step = np.arange(len(person)) - first
    total = np.repeat(leg_events, leg_events)
    if_riding = plan.by_subway[person]
    # Riders signal mid-way between stops; surface handovers at 1/(m+1)...
    fraction = np.where(if_riding, (step + 0.5) / total, (step + 1) / (total + 1))
    start = np.where(going, plan.leave_s[person], plan.depart_s[person])
    end = np.where(going, plan.arrive_s[person], plan.return_s[person])
    time_s = start + (fraction * (end - start)).astype(np.int64)
    progress = np.where(going, fraction, 1 - fraction)
    cell = path_cells(city, population, plan, person, progress)
    events = EventArrays(
        {
            "person": person.astype(np.int32),
            "time_s": time_s,
            "cell": cell.astype(np.int32),
            "event_type": np.full(len(person), _HANDOVER, dtype=np.int8),
        }
    )
    return events, counts


def signalling_events(
    rng: np.random.Generator,
    city: City,
    population: Population,
    plan: DayPlan,
    events_per_day: float,
) -> EventArrays:
    """Return one day of signalling events, about ``events_per_day`` per person."""
    trips, trip_counts = _trip_events(city, population, plan)
    # Ping-pong adds a return handover to about 20 % of the background events.
    background_rate = np.maximum(events_per_day - trip_counts, 0.3 * events_per_day) / (
        1 + PINGPONG_SHARE
    )
    per_person = rng.poisson(background_rate)
    person = np.repeat(np.arange(population.count, dtype=np.int32), per_person)
    time_s = times_by_hour(rng, len(person), _SIGNALLING_HOURLY)
    cell, at_place = locate(city, population, plan, person, time_s)
    cumulative = np.cumsum(_BACKGROUND_TYPE_SHARES)
    event_type = np.minimum(
        np.searchsorted(cumulative, rng.random(len(person)), side="right"),
        len(EVENT_TYPES) - 1,
    ).astype(np.int8)

    count_here = city.neighbour_count[cell]
    bounce = at_place & (count_here > 0) & (rng.random(len(person)) < PINGPONG_SHARE)
    rows = np.flatnonzero(bounce)
    pick = (rng.random(len(rows)) * count_here[rows]).astype(np.int64)
    serving = cell[rows]
    cell[rows] = city.neighbours[serving, pick]
    event_type[rows] = _HANDOVER
    back_s = time_s[rows] + rng.integers(*_PINGPONG_RETURN_S, size=len(rows))
    keep = back_s < DAY_S
    returns = EventArrays(
        {
            "person": person[rows][keep],
            "time_s": back_s[keep],
            "cell": serving[keep].astype(np.int32),
            "event_type": np.full(int(keep.sum()), _HANDOVER, dtype=np.int8),
        }
    )
    background = EventArrays(
        {
            "person": person,
            "time_s": time_s,
            "cell": cell.astype(np.int32),
            "event_type": event_type,
        }
    )
    return EventArrays.concat([background, trips, returns])


def sort_unique(events: EventArrays, keys: list[tuple[str, int]]) -> EventArrays:
    """Return ``events`` sorted by ``keys`` with rows of equal keys dropped.

    ``keys`` are (column, number of distinct values) pairs, most significant
    first; columns hold non-negative integers below their count. Random times
    drawn to the second can repeat a key by chance, and a repeated key would
    look like a duplicate delivery downstream, so only the first row of a key
    (in the original order) is kept.
    """
    capacity = 1
    for _, size in keys:
        capacity *= size
    if capacity >= 2**62:
        return _sort_unique_lexical(events, keys)

    key = np.zeros(len(events), dtype=np.int64)
    for name, size in keys:
        key = key * size + events.columns[name].astype(np.int64)
    if set(events.columns) == {name for name, _ in keys}:
        # The key is the whole row: sort it and decode the columns from it.
        key = np.sort(key)
        key = key[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else key
        columns = {}
        for name, size in reversed(keys):
            key, value = np.divmod(key, size)
            columns[name] = value.astype(events.columns[name].dtype)
        return EventArrays({name: columns[name] for name in events.columns})
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return events.take(order[first])


def _sort_unique_lexical(
    events: EventArrays, keys: list[tuple[str, int]]
) -> EventArrays:
    columns = [events.columns[name] for name, _ in reversed(keys)]
    order = np.lexsort(columns)
    first = np.ones(len(order), dtype=bool)
    if len(order):
        same = np.ones(len(order) - 1, dtype=bool)
        for column in columns:
            ordered = column[order]
            same &= ordered[1:] == ordered[:-1]
        first[1:] = ~same
    return events.take(order[first])
