"""One row per subscriber: static traits plus behaviour from cells and DPI.

Everything here is an Ibis expression over the lake and runs on whichever
backend the :class:`~telcoreach.engine.Engine` opened. The one sequential scan
SQL cannot express, stay-point detection, runs in a compiled kernel on the
ordered cell positions (see :mod:`telcoreach.features._staypoints`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telcoreach.config import ProfileConfig
from telcoreach.engine import Engine
from telcoreach.features._staypoints import detect_staypoints
from telcoreach.geo import EARTH_RADIUS_M

__all__ = [
    "ProfileSummary",
    "build_profiles",
    "cell_dwell",
    "home_cells",
    "located_events",
    "school_zone_cells",
    "work_cells",
]

logger = logging.getLogger(__name__)

_KM_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180 / 1000

#: Order of a subscriber's events; the cell breaks ties of equal times so that
#: every run gives the same lag, lead and stay points.
_EVENT_ORDER = ("event_time", "cell_id")

#: Profile columns computed from DPI sessions, with their types.
_DPI_COLUMNS = {
    "dpi_sessions": "int64",
    "k12_app_count": "int64",
    "tutoring_searches": "int64",
    "bytes_total": "int64",
    "online_min_per_day": "float64",
    "online_min_per_day_home": "float64",
    "online_min_per_day_work": "float64",
    "online_min_per_day_school_zone": "float64",
    "days_near_school": "int64",
}


@dataclass
class ProfileSummary:
    """What ``profile`` built."""

    subscribers: int
    events: int
    events_on_unknown_cells: int
    home_cells_found: int
    work_cells_found: int
    stay_points: int
    subway_commuters: int
    excluded_without_consent: int
    seconds: float
    stages_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        return {
            "subscribers": self.subscribers,
            "events": self.events,
            "events_on_unknown_cells": self.events_on_unknown_cells,
            "home_cells_found": self.home_cells_found,
            "work_cells_found": self.work_cells_found,
            "stay_points": self.stay_points,
            "subway_commuters": self.subway_commuters,
            "excluded_without_consent": self.excluded_without_consent,
            "seconds": round(self.seconds, 2),
            "stages_s": {k: round(v, 2) for k, v in self.stages_s.items()},
        }


def _distance_km(lat1, lon1, lat2, lon2) -> ir.FloatingValue:
    """Equirectangular distance in km (accurate within a city)."""
    mean_lat = ((lat1 + lat2) / 2).radians()
    dx = (lon2 - lon1) * mean_lat.cos() * _KM_PER_DEGREE
    dy = (lat2 - lat1) * _KM_PER_DEGREE
    return (dx * dx + dy * dy).sqrt()


def _attach(left: ir.Table, right: ir.Table, key: str = "subscriber") -> ir.Table:
    """Left-join ``right`` on ``key`` keeping a single key column."""
    joined = left.left_join(right, key)
    return joined.drop(f"{key}_right") if f"{key}_right" in joined.columns else joined


def located_events(
    signalling: ir.Table, cells: ir.Table, pingpong_window_s: float
) -> ir.Table:
    """Return events joined to their cell's position, ping-pong filtered.

    A ping-pong is a handset bouncing A -> B -> A between neighbouring cells
    while standing still. When the cell before and after an event are the
    same and at most ``pingpong_window_s`` apart, the event is moved back to
    that cell, so dwell and stay points are not split by radio noise.
    """
    events = signalling.select("subscriber", "event_time", "cell_id").join(
        cells.select("cell_id", "lat", "lon", "cell_type"), "cell_id"
    )
    window = ibis.window(group_by="subscriber", order_by=_EVENT_ORDER)
    events = events.mutate(
        _prev_cell=events.cell_id.lag().over(window),
        _next_cell=events.cell_id.lead().over(window),
        _prev_lat=events.lat.lag().over(window),
        _prev_lon=events.lon.lag().over(window),
        _prev_type=events.cell_type.lag().over(window),
        _prev_time=events.event_time.lag().over(window),
        next_event_time=events.event_time.lead().over(window),
    )
    span_s = events.next_event_time.epoch_seconds() - events._prev_time.epoch_seconds()
    bounce = (
        (events._prev_cell == events._next_cell)
        & (events.cell_id != events._prev_cell)
        & (span_s <= pingpong_window_s)
        & (events.cell_type != "subway")
    ).fill_null(False)
    return events.select(
        "subscriber",
        "event_time",
        cell_id=bounce.ifelse(events._prev_cell, events.cell_id),
        lat=bounce.ifelse(events._prev_lat, events.lat),
        lon=bounce.ifelse(events._prev_lon, events.lon),
        cell_type=bounce.ifelse(events._prev_type, events.cell_type),
        next_event_time=events.next_event_time,
    )


def cell_dwell(events: ir.Table, max_dwell_min: float) -> ir.Table:
    """Return each event with the time spent on its cell until the next event.

    A gap longer than ``max_dwell_min`` (the phone was off or silent) counts
    as ``max_dwell_min``; the last event of a subscriber counts zero, since
    nothing is known after it. Uses ``next_event_time`` when the events
    carry it (as :func:`located_events` gives), saving a second sort.
    """
    if "next_event_time" in events.columns:
        next_time = events.next_event_time
    else:
        window = ibis.window(group_by="subscriber", order_by=_EVENT_ORDER)
        next_time = events.event_time.lead().over(window)
    gap_s = next_time.epoch_seconds() - events.event_time.epoch_seconds()
    cap_s = max_dwell_min * 60
    # Spark SQL reads the literal 7200.0 as a DECIMAL; least(bigint, decimal)
    # would make dwell a decimal there. A double first argument keeps it double.
    dwell_s = ibis.least(gap_s.fill_null(0).cast("float64"), cap_s)
    return events.mutate(
        dwell_s=dwell_s,
        hour=events.event_time.hour(),
        weekday=events.event_time.day_of_week.index() < 5,
        day=events.event_time.date(),
    )


def _in_hours(hour: ir.IntegerValue, hours: tuple[int, int]) -> ir.BooleanValue:
    start, end = hours
    if start <= end:
        return (hour >= start) & (hour < end)
    return (hour >= start) | (hour < end)


def _top_cell(dwell: ir.Table, name: str) -> ir.Table:
    """Return per subscriber the cell with the most dwell."""
    per_cell = dwell.group_by(["subscriber", "cell_id"]).aggregate(
        seconds=dwell.dwell_s.sum(), lat=dwell.lat.first(), lon=dwell.lon.first()
    )
    rank = ibis.row_number().over(
        group_by="subscriber",
        order_by=[ibis.desc(per_cell.seconds), per_cell.cell_id],
    )
    best = per_cell.mutate(_rank=rank).filter(lambda t: t._rank == 0)
    return best.select(
        "subscriber",
        **{
            f"{name}_cell": best.cell_id,
            f"{name}_lat": best.lat,
            f"{name}_lon": best.lon,
            f"{name}_dwell_h": best.seconds / 3600,
        },
    )


def home_cells(dwell: ir.Table, night_hours: tuple[int, int]) -> ir.Table:
    """Return each subscriber's home cell: the most night-time dwell."""
    night = dwell.filter(_in_hours(dwell.hour, night_hours))
    return _top_cell(night, "home")


def work_cells(
    dwell: ir.Table,
    work_hours: tuple[int, int],
    homes: ir.Table,
    min_hours: float = 4.0,
) -> ir.Table:
    """Return each subscriber's work cell: the most weekday day-time dwell.

    Day-time dwell on the home cell does not count, and a subscriber with
    fewer than ``min_hours`` of day-time dwell elsewhere has no work cell.
    """
    day = dwell.filter(dwell.weekday & _in_hours(dwell.hour, work_hours))
    day = _attach(day, homes.select("subscriber", "home_cell"))
    day = day.filter(day.home_cell.isnull() | (day.cell_id != day.home_cell))
    best = _top_cell(day.drop("home_cell"), "work")
    return best.filter(best.work_dwell_h >= min_hours)


def radius_of_gyration(events: ir.Table) -> ir.Table:
    """Return each subscriber's radius of gyration in km over their events."""
    centre = events.group_by("subscriber").aggregate(
        _clat=events.lat.mean(), _clon=events.lon.mean()
    )
    joined = events.join(centre, "subscriber")
    distance = _distance_km(joined.lat, joined.lon, joined._clat, joined._clon)
    return joined.group_by("subscriber").aggregate(
        radius_of_gyration_km=(distance * distance).mean().sqrt()
    )


def school_zone_cells(cells: ir.Table, pois: ir.Table, zone_m: float) -> ir.Table:
    """Return the ids of cells whose centre is within ``zone_m`` of a school."""
    schools = pois.filter(pois.poi_type == "school").select(
        _slat=pois.lat, _slon=pois.lon
    )
    lat_margin = zone_m / 1000 / _KM_PER_DEGREE
    pairs = cells.select("cell_id", "lat", "lon").cross_join(schools)
    near = pairs.filter(
        ((pairs.lat - pairs._slat).abs() <= lat_margin)
        & (
            _distance_km(pairs.lat, pairs.lon, pairs._slat, pairs._slon) * 1000
            <= zone_m
        )
    )
    return near.select("cell_id").distinct()


def subway_ride_table(dwell: ir.Table, config: ProfileConfig) -> ir.Table:
    """Return one row per subway ride: subscriber, start, end, stations.

    A ride is a run of consecutive events on subway cells, no more than
    ``max_station_gap_min`` apart, touching at least ``min_stations``
    distinct stations.
    """
    settings = config.subway
    window = ibis.window(group_by="subscriber", order_by=_EVENT_ORDER)
    on_subway = dwell.cell_type == "subway"
    gap_s = dwell.event_time.epoch_seconds() - (
        dwell.event_time.lag().over(window).epoch_seconds()
    )
    previous_subway = (dwell.cell_type.lag().over(window) == "subway").fill_null(False)
    starts = on_subway & (
        ~previous_subway | (gap_s > settings.max_station_gap_min * 60)
    )
    marked = dwell.mutate(_start=starts.cast("int64"), _subway=on_subway)
    running = ibis.cumulative_window(group_by="subscriber", order_by=_EVENT_ORDER)
    marked = marked.mutate(_ride=marked._start.sum().over(running))
    rides = (
        marked.filter(marked._subway)
        .group_by(["subscriber", "_ride"])
        .aggregate(
            started_at=lambda t: t.event_time.min(),
            finished_at=lambda t: t.event_time.max(),
            stations=lambda t: t.cell_id.nunique(),
            weekday=lambda t: t.weekday.max(),
            day=lambda t: t.day.min(),
        )
    )
    return rides.filter(rides.stations >= settings.min_stations).drop("_ride")


def subway_rides(dwell: ir.Table, config: ProfileConfig) -> ir.Table:
    """Return per subscriber the weekday subway rides and the commuter flag.

    A commuter rides on at least ``min_weekday_trips`` weekday trips spread
    over two or more days.
    """
    rides = subway_ride_table(dwell, config)
    weekday_rides = rides.filter(rides.weekday)
    per_subscriber = weekday_rides.group_by("subscriber").aggregate(
        subway_trips_weekday=weekday_rides.count(),
        _ride_days=weekday_rides.day.nunique(),
    )
    return per_subscriber.select(
        "subscriber",
        "subway_trips_weekday",
        subway_commuter=(
            (per_subscriber.subway_trips_weekday >= config.subway.min_weekday_trips)
            & (per_subscriber._ride_days >= 2)
        ),
    )


def _column_name(category: str) -> str:
    slug = re.sub(r"[^0-9a-z]+", "_", category.lower()).strip("_") or "other"
    return f"sessions_{slug}"


def dpi_features(
    dpi: ir.Table,
    config: ProfileConfig,
    homes: ir.Table,
    works: ir.Table,
    school_cells: ir.Table,
    active_days: ir.Table,
) -> ir.Table:
    """Return app usage, searches and online minutes by place per subscriber."""
    keywords = "|".join(re.escape(k.lower()) for k in config.tutoring_keywords)
    minutes = (
        (dpi.end_time.epoch_seconds() - dpi.start_time.epoch_seconds()) / 60
    ).clip(lower=0, upper=24 * 60)
    sessions = dpi.mutate(
        _minutes=minutes,
        _tutoring=dpi.search_keywords.lower().re_search(keywords).fill_null(False),
        _k12=dpi.app_category == config.k12_category,
        _school=dpi.cell_id.isin(school_cells.cell_id),
    )
    sessions = _attach(sessions, homes.select("subscriber", "home_cell"))
    sessions = _attach(sessions, works.select("subscriber", "work_cell"))
    at_home = (sessions.cell_id == sessions.home_cell).fill_null(False)
    at_work = (sessions.cell_id == sessions.work_cell).fill_null(False)
    usage = sessions.group_by("subscriber").aggregate(
        dpi_sessions=sessions.count(),
        k12_app_count=sessions.app_name.nunique(where=sessions._k12),
        tutoring_searches=sessions._tutoring.sum().cast("int64"),
        _online_min=sessions._minutes.sum(),
        _home_min=sessions._minutes.sum(where=at_home),
        _work_min=sessions._minutes.sum(where=at_work),
        _school_min=sessions._minutes.sum(where=sessions._school.fill_null(False)),
        bytes_total=(sessions.bytes_up + sessions.bytes_down).sum(),
    )
    usage = _attach(usage, active_days)
    days = ibis.greatest(usage.active_days.fill_null(1), 1)
    usage = usage.select(
        "subscriber",
        "dpi_sessions",
        "k12_app_count",
        "tutoring_searches",
        "bytes_total",
        online_min_per_day=usage._online_min / days,
        online_min_per_day_home=usage._home_min.fill_null(0) / days,
        online_min_per_day_work=usage._work_min.fill_null(0) / days,
        online_min_per_day_school_zone=usage._school_min.fill_null(0) / days,
    )

    by_category = dpi.group_by(["subscriber", "app_category"]).aggregate(_n=dpi.count())
    categories = sorted(
        c
        for c in dpi.select("app_category")
        .distinct()
        .to_pyarrow()["app_category"]
        .to_pylist()
        if c is not None
    )
    counts = [
        by_category._n.sum(where=by_category.app_category == category).name(
            _column_name(category)
        )
        for category in categories
    ]
    if counts:
        wide = by_category.group_by("subscriber").aggregate(counts)
        usage = _attach(usage, wide)
    return usage


#: Positions fetched per batch for the stay-point kernel; bounds its memory.
_STAYPOINT_BATCH_ROWS = 2_000_000


def _staypoint_counts(
    engine: Engine, events: ir.Table, config: ProfileConfig
) -> tuple[pa.Table, pa.Table]:
    """Run the stay-point kernel on ordered positions; return stays and counts.

    Positions stream from the engine in batches ordered by subscriber; the
    last subscriber of a batch waits for the next one, so each subscriber's
    positions reach the kernel whole and memory stays bounded by the batch.
    """
    ordered = events.select("subscriber", "event_time", "lat", "lon", "cell_id")
    ordered = ordered.order_by(["subscriber", *_EVENT_ORDER])
    settings = config.staypoints

    def detect(positions: pa.Table, offset: int) -> pa.Table:
        stays = detect_staypoints(
            positions.column("subscriber"),
            positions.column("event_time"),
            positions.column("lat"),
            positions.column("lon"),
            dist_m=settings.dist_m,
            time_min=settings.time_min,
            gap_min=settings.gap_min,
        )
        for name in ("first_row", "last_row"):
            rows = pc.add(stays.column(name), offset)
            stays = stays.set_column(stays.schema.get_field_index(name), name, rows)
        return stays

    parts: list[pa.Table] = []
    pending: pa.Table | None = None
    offset = 0
    for batch in engine.to_pyarrow_batches(ordered, rows=_STAYPOINT_BATCH_ROWS):
        fetched = pa.Table.from_batches([batch]).select(ordered.columns)
        table = fetched if pending is None else pa.concat_tables([pending, fetched])
        if table.num_rows == 0:
            continue
        users = table.column("subscriber")
        last = pc.equal(users, users[-1]).to_numpy(zero_copy_only=False)
        held = int(np.argmax(last))
        if held:
            parts.append(detect(table.slice(0, held), offset))
            offset += held
        pending = table.slice(held)
    if pending is not None and pending.num_rows:
        parts.append(detect(pending, offset))
    if not parts:
        parts.append(detect(ordered.schema().to_pyarrow().empty_table(), 0))
    stays = pa.concat_tables(parts)
    stays = stays.rename_columns(
        ["subscriber" if c == "user_id" else c for c in stays.column_names]
    )
    counts = stays.group_by("subscriber").aggregate([("subscriber", "count")])
    counts = counts.rename_columns(["subscriber", "n_stay_points"])
    return stays, counts


def build_profiles(engine: Engine, *, require_consent: bool = True) -> ProfileSummary:
    """Build the ``profiles`` table (and ``staypoints``) in the warehouse.

    Parameters
    ----------
    engine : Engine
        Engine of the workspace whose lake holds signalling, cells and
        optionally DPI, POIs and subscribers.
    require_consent : bool
        Profile only subscribers with ``consent_profiling`` true in the
        subscriber table.
    """
    started = time.perf_counter()
    stages: dict[str, float] = {}
    config = engine.workspace.config.profile

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name] = now - since
        return now

    tick = time.perf_counter()
    signalling = engine.lake("signalling")
    cells = engine.lake("cells")
    subscribers = engine.lake("subscribers") if engine.has_lake("subscribers") else None

    excluded = 0
    if require_consent and subscribers is not None:
        allowed = subscribers.filter(subscribers.consent_profiling).select("subscriber")
        total = signalling.subscriber.nunique().to_pyarrow().as_py()
        signalling = signalling.semi_join(allowed, "subscriber")
        excluded = total - signalling.subscriber.nunique().to_pyarrow().as_py()

    located = located_events(signalling, cells, config.pingpong_window_s)
    dwell = engine.save("events_dwell", cell_dwell(located, config.max_dwell_min))
    n_events = signalling.count().to_pyarrow().as_py()
    n_located = dwell.count().to_pyarrow().as_py()
    tick = lap("locate", tick)

    homes = engine.save("homes", home_cells(dwell, config.night_hours))
    works = engine.save("works", work_cells(dwell, config.work_hours, homes))
    tick = lap("home_work", tick)

    gyration = radius_of_gyration(dwell)
    rides = subway_rides(dwell, config)
    active = dwell.group_by("subscriber").aggregate(
        events=dwell.count(), active_days=dwell.day.nunique()
    )
    tick = lap("mobility", tick)

    stays, stay_counts = _staypoint_counts(engine, dwell, config)
    engine.save("staypoints", stays)
    stay_counts_table = engine.save("_staypoint_counts", stay_counts)
    tick = lap("staypoints", tick)

    profile = active
    for part in (homes, works, gyration, rides, stay_counts_table):
        profile = _attach(profile, part)
    profile = profile.mutate(
        subway_trips_weekday=profile.subway_trips_weekday.fill_null(0),
        subway_commuter=profile.subway_commuter.fill_null(False),
        n_stay_points=profile.n_stay_points.fill_null(0),
    )
    if engine.has_lake("dpi"):
        school_cells = (
            school_zone_cells(cells, engine.lake("pois"), config.school_zone_m)
            if engine.has_lake("pois")
            else cells.filter(ibis.literal(False)).select("cell_id")
        )
        school_days = (
            dwell.filter(dwell.cell_id.isin(school_cells.cell_id))
            .group_by("subscriber")
            .aggregate(days_near_school=lambda t: t.day.nunique())
        )
        usage = dpi_features(
            engine.lake("dpi"),
            config,
            homes,
            works,
            school_cells,
            active.select("subscriber", "active_days"),
        )
        profile = _fill_counts(_attach(_attach(profile, usage), school_days))
    else:
        # Without DPI these are unknown, not zero: rules on them never match.
        profile = profile.mutate(
            **{name: ibis.literal(None, dtype) for name, dtype in _DPI_COLUMNS.items()}
        )
    if subscribers is not None:
        traits = subscribers.select(
            "subscriber",
            "age_band",
            "gender",
            "plan",
            "device_brand",
            "tenure_months",
            "consent_marketing",
            "consent_profiling",
            "opted_out",
        )
        profile = _attach(profile, traits)
    profile = engine.save("profiles", profile)
    lap("assemble", tick)

    facts = profile.aggregate(
        subscribers=profile.count(),
        homes=profile.home_cell.count(),
        works=profile.work_cell.count(),
        commuters=profile.subway_commuter.sum().cast("int64"),
    ).to_pyarrow()
    summary = ProfileSummary(
        subscribers=facts["subscribers"][0].as_py(),
        events=n_events,
        events_on_unknown_cells=n_events - n_located,
        home_cells_found=facts["homes"][0].as_py(),
        work_cells_found=facts["works"][0].as_py(),
        stay_points=stays.num_rows,
        subway_commuters=facts["commuters"][0].as_py() or 0,
        excluded_without_consent=excluded,
        seconds=time.perf_counter() - started,
        stages_s=stages,
    )
    logger.info(
        "profiled %d subscribers in %.1f s", summary.subscribers, summary.seconds
    )
    return summary


def _fill_counts(profile: ir.Table) -> ir.Table:
    """Replace nulls of DPI counts with zero: no session means none."""
    fills = {
        name: 0
        for name, dtype in profile.schema().items()
        if (name in _DPI_COLUMNS or name.startswith("sessions_")) and dtype.is_numeric()
    }
    return profile.fill_null(fills)
