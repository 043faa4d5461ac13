"""Write a synthetic Beijing in the carrier formats, with its hidden truth."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from telcoreach.errors import ConfigError, DataSourceError
from telcoreach.ingest.adapters._talkingdata import talkingdata_distributions
from telcoreach.simulate._apps import AppCatalogue
from telcoreach.simulate._city import City, build_city
from telcoreach.simulate._context import campaign_outcomes, weather
from telcoreach.simulate._dirty import DEFECTS, DefectPlan, plan_defects
from telcoreach.simulate._mobility import (
    DAY_S,
    EVENT_TYPES,
    DayPlan,
    plan_day,
    signalling_events,
    sort_unique,
)
from telcoreach.simulate._mr import measurement_reports
from telcoreach.simulate._population import PERSONAS, Population, build_population
from telcoreach.simulate._sessions import dpi_sessions
from telcoreach.simulate._tables import (
    DPI_REQUIRED,
    SIGNALLING_REQUIRED,
    dpi_table,
    signalling_table,
    write_table,
)

__all__ = ["SimulationSummary", "simulate_city"]

logger = logging.getLogger(__name__)

DATA_ENV = "TELCOREACH_DATA"
FORMATS = ("csv", "parquet")
MAX_SUBSCRIBERS = 1_000_000
MAX_DIRTY_RATE = 0.2
_TOP_FILES = ("cells", "pois", "subscribers", "campaign_outcomes", "weather")
_TRUTH_FILES = ("ground_truth", "tac_table")
_NOTES = (
    "schools and malls are synthetic (named 'synthetic school/mall NNNN'): no "
    "licensed list of Beijing school or mall positions is public",
    "cells are the real Beijing base stations and subway stations, filled in "
    "with H3 virtual cells where base stations are sparse; location area "
    "codes are synthetic (a 0.1 degree grid, 4000 for the subway)",
    "truth/ holds the hidden ground truth and the synthetic TAC table; do not "
    "ingest it",
)


@dataclass
class SimulationSummary:
    """What :func:`simulate_city` wrote.

    Attributes
    ----------
    out_dir : str
        Folder of the simulated city.
    rows : dict of str to int
        Rows written per record kind (and ``ground_truth``), defects included.
    files : dict of str to list of str
        Paths written per record kind.
    dirty : dict of str to dict of str to int
        Defects injected per event kind (``signalling``, ``dpi``), by defect.
    late_batch : dict or None
        ``{"events", "from_day", "to_day"}`` of the late delivery, if any.
    delivery_delay_h : dict of str to float
        Hours after the end of its day that each daily file of a kind
        "arrived" (its modification time); in a dirty city one source is late.
    personas : dict of str to int
        Subscribers per hidden persona.
    seconds : float
        Wall time of the simulation, files included.
    """

    out_dir: str
    subscribers: int
    days: int
    seed: int
    start_date: str
    fmt: str
    events_per_day: float
    dirty_rate: float
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    dirty: dict[str, dict[str, int]] = field(default_factory=dict)
    late_batch: dict[str, Any] | None = None
    delivery_delay_h: dict[str, float] = field(default_factory=dict)
    personas: dict[str, int] = field(default_factory=dict)
    subway_commuters: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=lambda: list(_NOTES))

    @property
    def events(self) -> int:
        """Signalling events written, defects included."""
        return self.rows.get("signalling", 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-serialisable dict."""
        summary = asdict(self)
        summary["seconds"] = round(self.seconds, 2)
        summary["events_per_second"] = (
            round(self.events / self.seconds) if self.seconds else None
        )
        return summary


def _check_arguments(
    subscribers: int,
    days: int,
    start_date: str,
    events_per_day: float,
    sessions_per_day: float,
    dirty_rate: float,
    fmt: str,
) -> dt.date:
    """Return the start date after checking every argument."""
    checks = (
        (
            "subscribers",
            subscribers,
            1 <= subscribers <= MAX_SUBSCRIBERS,
            f"a whole number from 1 to {MAX_SUBSCRIBERS:,}",
        ),
        ("days", days, 1 <= days <= 366, "a whole number from 1 to 366"),
        (
            "events_per_day",
            events_per_day,
            1 <= events_per_day <= 1_000,
            "a number from 1 to 1000",
        ),
        (
            "sessions_per_day",
            sessions_per_day,
            0 <= sessions_per_day <= 500,
            "a number from 0 to 500",
        ),
        (
            "dirty_rate",
            dirty_rate,
            0 <= dirty_rate <= MAX_DIRTY_RATE,
            f"a share from 0 to {MAX_DIRTY_RATE}",
        ),
        ("fmt", fmt, fmt in FORMATS, f"one of {', '.join(FORMATS)}"),
    )
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(
                f"simulate_city: {name} must be {expected}, found {value!r}"
            )
    try:
        return dt.date.fromisoformat(start_date)
    except (TypeError, ValueError):
        raise ConfigError(
            f"simulate_city: start_date must be a date as YYYY-MM-DD, "
            f"found {start_date!r}"
        ) from None


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is None:
        from_env = os.environ.get(DATA_ENV)
        if not from_env:
            raise DataSourceError(
                "simulate_city needs the public data sets (Beijing cells, subway "
                f"stations, TalkingData); found neither data_dir nor ${DATA_ENV}. "
                f"Pass data_dir or set {DATA_ENV} (e.g. ../shared/datasets)"
            )
        data_dir = from_env
    path = Path(data_dir)
    if not path.is_dir():
        raise DataSourceError(
            f"expected the folder of the public data sets at {path}, found no "
            f"such folder; pass data_dir or set {DATA_ENV}"
        )
    return path


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """Create the output folders; clear an earlier simulation if allowed."""
    earlier = [
        path
        for pattern in (
            "*.csv",
            "*.parquet",
            "signalling/*",
            "dpi/*",
            "truth/*",
            "measurement_reports/*",
        )
        for path in out_dir.glob(pattern)
        if path.is_file()
        and (
            path.parent.name in ("signalling", "dpi", "truth", "measurement_reports")
            or path.stem in _TOP_FILES
        )
    ]
    if earlier and not overwrite:
        raise ConfigError(
            f"simulate_city: expected an empty output folder, found "
            f"{len(earlier)} files of an earlier simulation in {out_dir}; pass "
            "overwrite=True (--overwrite) or choose another folder"
        )
    for path in earlier:
        path.unlink()
    for folder in ("signalling", "dpi", "truth"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)


@dataclass
class _Day:
    """One simulated day, ready to write."""

    signalling: pa.Table
    dpi: pa.Table
    late: pa.Table | None
    defects: dict[str, dict[str, int]]
    plan: DayPlan | None = None


def _simulate_day(
    seeds: np.random.SeedSequence,
    day: int,
    date: dt.date,
    city: City,
    population: Population,
    catalogue: AppCatalogue,
    events_per_day: float,
    sessions_per_day: float,
    dirty_rate: float,
    late: bool,
) -> _Day:
    """Return a day's signalling and DPI tables, and its late events if asked.

    Each step draws from its own stream, so the clean events of a day do not
    depend on ``dirty_rate``.
    """
    plan_rng, signalling_rng, dpi_rng, signalling_dirt, dpi_dirt = (
        np.random.default_rng(s) for s in seeds.spawn(5)
    )
    day_epoch_s = int(np.datetime64(date, "s").astype(np.int64))
    plan = plan_day(plan_rng, city, population, weekday=date.weekday() < 5)

    events = signalling_events(signalling_rng, city, population, plan, events_per_day)
    events = sort_unique(
        events,
        [
            ("time_s", DAY_S),
            ("person", population.count),
            ("cell", city.cell_count),
            ("event_type", len(EVENT_TYPES)),
        ],
    )
    late_table = None
    if late:
        # The latest events of the day miss the day's delivery.
        first_late = len(events) - round(dirty_rate * len(events))
        late_table = signalling_table(
            signalling_dirt,
            city,
            population,
            events.take(slice(first_late, None)),
            day_epoch_s,
            DefectPlan.clean(len(events) - first_late),
        )
        events = events.take(slice(0, first_late))
    signalling_defects = plan_defects(
        signalling_dirt, len(events), dirty_rate, len(SIGNALLING_REQUIRED)
    )
    signalling = signalling_table(
        signalling_dirt, city, population, events, day_epoch_s, signalling_defects
    )

    sessions = dpi_sessions(
        dpi_rng, city, population, catalogue, plan, day, sessions_per_day
    )
    sessions = sort_unique(
        sessions,
        [
            ("start_s", DAY_S),
            ("person", population.count),
            ("app", len(catalogue.names)),
        ],
    )
    dpi_defects = plan_defects(dpi_dirt, len(sessions), dirty_rate, len(DPI_REQUIRED))
    dpi = dpi_table(
        dpi_dirt, city, population, catalogue, sessions, day_epoch_s, dpi_defects
    )
    return _Day(
        signalling=signalling,
        dpi=dpi,
        late=late_table,
        defects={"signalling": signalling_defects.counts, "dpi": dpi_defects.counts},
        plan=plan,
    )


def simulate_city(
    out_dir: str | Path,
    subscribers: int = 20_000,
    days: int = 7,
    seed: int = 0,
    start_date: str = "2026-11-02",
    events_per_day: float = 50,
    dirty_rate: float = 0.0,
    data_dir: str | Path | None = None,
    fmt: str = "csv",
    *,
    sessions_per_day: float = 15,
    overwrite: bool = False,
    measurement_reports_per_day: float = 0,
) -> SimulationSummary:
    """Write a synthetic Beijing in the carrier formats and return what was written.

    The city uses the real Beijing cell layer and subway stations, and
    subscribers whose age, gender and handset follow the TalkingData
    distributions. It writes, under ``out_dir``:

    - ``cells``, ``pois``, ``subscribers``, ``campaign_outcomes`` and
      ``weather`` tables;
    - ``signalling/<YYYY-MM-DD>`` and ``dpi/<YYYY-MM-DD>``, one file per
      day, as a carrier delivers daily batches;
    - ``truth/ground_truth`` (persona, true home and work cells, true tier,
      true propensity, subway commuting) and ``truth/tac_table``, kept apart
      because a pipeline must never read them.

    Columns are the input field names of :mod:`telcoreach.schemas`; times
    are local (UTC+8) ``YYYY-MM-DD HH:MM:SS``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write; created if missing.
    subscribers : int
        Number of people, 1 to 1,000,000.
    days : int
        Number of simulated days from ``start_date``.
    seed : int
        Seed of every random draw: the same arguments give the same bytes.
    start_date : str
        First day, ``YYYY-MM-DD`` (2026-11-02 is a Monday).
    events_per_day : float
        Mean signalling events per person and day.
    dirty_rate : float
        Share of rows of each daily event file given each defect (missing
        required field, exact duplicate, malformed MSISDN, unknown cell id);
        with two days or more, the same share of one day's latest signalling
        events is delivered in the next day's file. 0 writes clean data.
    data_dir : str or Path, optional
        Root of the public data sets; defaults to ``$TELCOREACH_DATA``.
    fmt : {"csv", "parquet"}
        File format.
    sessions_per_day : float
        Mean ordinary DPI sessions per person and day.
    overwrite : bool
        Replace the files of an earlier simulation in ``out_dir``.
    measurement_reports_per_day : float
        Mean radio measurement reports per person and day, written to
        ``measurement_reports/<YYYY-MM-DD>`` with their true positions in
        ``truth/measurement_positions`` (see :mod:`telcoreach.simulate._mr`).
        0 (the default) writes none; other outputs do not depend on it.

    Returns
    -------
    SimulationSummary
        Rows and paths per record kind, defects injected, seconds taken.

    Raises
    ------
    ConfigError
        If an argument is out of range, or ``out_dir`` holds an earlier
        simulation and ``overwrite`` is false.
    DataSourceError
        If the public data sets cannot be found.

    Notes
    -----
    Schools and malls are synthetic (no licensed list of their positions in
    Beijing is public). True tiers follow the personas; the confusers (a few
    parents with three K12 apps or no tutoring search, quiet students, adults
    with one or two K12 apps or one tutoring search, a few private tutors)
    keep the rules ``k12_app_count > 3 and tutoring_searches >= 1`` (parent)
    and ``online_min_per_day_school_zone > 120`` (student) close to, but not
    exactly, the truth.

    Examples
    --------
    >>> summary = simulate_city("city", subscribers=300, days=2)  # doctest: +SKIP
    >>> summary.rows["signalling"] > 0  # doctest: +SKIP
    True
    """
    started = time.perf_counter()
    start = _check_arguments(
        subscribers, days, start_date, events_per_day, sessions_per_day, dirty_rate, fmt
    )
    if not 0 <= measurement_reports_per_day <= 500:
        raise ConfigError(
            "simulate_city: measurement_reports_per_day must be a number from 0 "
            f"to 500, found {measurement_reports_per_day!r}"
        )
    data_path = _resolve_data_dir(data_dir)
    out = Path(out_dir)
    _prepare(out, overwrite)

    streams = np.random.SeedSequence(seed).spawn(5 + days)
    city_rng, people_rng, campaign_rng, weather_rng, late_rng = (
        np.random.default_rng(s) for s in streams[:5]
    )
    catalogue = AppCatalogue()
    city = build_city(data_path, city_rng, subscribers)
    distributions = talkingdata_distributions(data_path)
    population = build_population(
        people_rng, subscribers, days, city, distributions, catalogue
    )

    summary = SimulationSummary(
        out_dir=str(out),
        subscribers=subscribers,
        days=days,
        seed=seed,
        start_date=start.isoformat(),
        fmt=fmt,
        events_per_day=events_per_day,
        dirty_rate=dirty_rate,
        personas={
            name: int((population.persona == code).sum())
            for code, name in enumerate(PERSONAS)
        },
        subway_commuters=int(population.subway.sum()),
    )
    files = summary.files
    rows = summary.rows

    def record(kind: str, table: pa.Table, path: Path) -> Path:
        written = write_table(table, path, fmt)
        files.setdefault(kind, []).append(str(written))
        rows[kind] = rows.get(kind, 0) + table.num_rows
        return written

    summary.delivery_delay_h = {
        "signalling": ON_TIME_DELIVERY_H,
        "dpi": LATE_DELIVERY_H if dirty_rate > 0 else ON_TIME_DELIVERY_H,
    }

    record("cells", city.cells, out / "cells")
    record("pois", city.pois, out / "pois")
    record("subscribers", population.subscribers, out / "subscribers")
    record(
        "ground_truth", population.ground_truth(city), out / "truth" / "ground_truth"
    )
    write_table(population.tac, out / "truth" / "tac_table", fmt)

    late_day = (
        int(late_rng.integers(0, days - 1)) if dirty_rate > 0 and days > 1 else -1
    )
    summary.dirty = {kind: dict.fromkeys(DEFECTS, 0) for kind in ("signalling", "dpi")}
    carried: pa.Table | None = None
    measurement_truth: list[pa.Table] = []
    # Files are written in a second thread while the next day is simulated.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future | None = None
        for day in range(days):
            date = start + dt.timedelta(days=day)
            simulated = _simulate_day(
                streams[5 + day],
                day,
                date,
                city,
                population,
                catalogue,
                events_per_day,
                sessions_per_day,
                dirty_rate,
                late=day == late_day,
            )
            signalling = simulated.signalling
            if carried is not None:
                signalling = pa.concat_tables([signalling, carried])
            carried = simulated.late
            if carried is not None:
                summary.late_batch = {
                    "events": carried.num_rows,
                    "from_day": date.isoformat(),
                    "to_day": (date + dt.timedelta(days=1)).isoformat(),
                }
            for kind, counts in simulated.defects.items():
                for defect, count in counts.items():
                    summary.dirty[kind][defect] += count
            if measurement_reports_per_day > 0:
                measurement_truth.append(
                    _write_measurements(
                        record,
                        seed,
                        day,
                        date,
                        city,
                        population,
                        simulated.plan,
                        measurement_reports_per_day,
                        out,
                    )
                )

            if pending is not None:
                pending.result()
            pending = writer.submit(
                _write_day,
                record,
                {"signalling": signalling, "dpi": simulated.dpi},
                out,
                date,
                summary.delivery_delay_h,
            )
            logger.info(
                "simulated %s: %d signalling events, %d DPI sessions",
                date.isoformat(),
                signalling.num_rows,
                simulated.dpi.num_rows,
            )
        if pending is not None:
            pending.result()

    record(
        "campaign_outcomes",
        campaign_outcomes(campaign_rng, population, start),
        out / "campaign_outcomes",
    )
    record("weather", weather(weather_rng, start, days), out / "weather")
    if measurement_truth:
        record(
            "measurement_positions",
            pa.concat_tables(measurement_truth),
            out / "truth" / "measurement_positions",
        )
    summary.seconds = time.perf_counter() - started
    logger.info(
        "simulated %d subscribers over %d days in %.1f s: %d signalling events",
        subscribers,
        days,
        summary.seconds,
        summary.events,
    )
    return summary


#: Hours after the end of its (Beijing) day that a daily file is delivered.
ON_TIME_DELIVERY_H = 0.25
#: How late the late source of a dirty city delivers.
LATE_DELIVERY_H = 12.0
_BEIJING_UTC_OFFSET = dt.timedelta(hours=8)


def _write_day(
    record,
    tables: dict[str, pa.Table],
    out: Path,
    date: dt.date,
    delay_h: dict[str, float],
) -> None:
    """Write one day's event files, stamped with the time they were delivered.

    A file's modification time stands for its arrival, which the freshness
    check compares with the events inside.
    """
    day_end_utc = (
        dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), dt.UTC)
        - _BEIJING_UTC_OFFSET
    )
    for kind, table in tables.items():
        path = record(kind, table, out / kind / date.isoformat())
        arrived = (day_end_utc + dt.timedelta(hours=delay_h[kind])).timestamp()
        os.utime(path, (arrived, arrived))


#: Tag of the random stream of measurement reports, apart from the others.
_MR_STREAM = 0x4D52


def _write_measurements(
    record,
    seed: int,
    day: int,
    date: dt.date,
    city: City,
    population: Population,
    plan: DayPlan,
    reports_per_day: float,
    out: Path,
) -> pa.Table:
    """Write one day of measurement reports; return their true positions."""
    rng = np.random.default_rng([seed, _MR_STREAM, day])
    day_epoch_s = int(np.datetime64(date, "s").astype(np.int64))
    measured = measurement_reports(
        rng, city, population, plan, day_epoch_s, reports_per_day
    )
    (out / "measurement_reports").mkdir(exist_ok=True)
    record(
        "measurement_reports",
        measured.reports,
        out / "measurement_reports" / date.isoformat(),
    )
    return measured.truth
