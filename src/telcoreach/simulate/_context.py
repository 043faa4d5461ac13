"""Context tables of the simulated city: hourly weather and a past campaign."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from telcoreach.simulate._population import Population

__all__ = ["CAMPAIGN_CHANNELS", "campaign_outcomes", "weather"]

#: Mean air temperature in Beijing per month, °C (January first).
_MONTHLY_MEAN_C = (-3.0, 0.0, 7.0, 14.0, 20.0, 25.0, 27.0, 26.0, 21.0, 14.0, 5.0, -1.0)
_DAILY_SWING_C = 5.0
_RAIN_COOLING_C = 2.0
CAMPAIGN_CHANNELS: tuple[str, ...] = ("sms", "push", "call")
_CHANNEL_SHARES = (0.5, 0.3, 0.2)
CONTACTED_SHARE = 0.3
#: The past campaign ran over five days, this many days before the simulation.
_CAMPAIGN_DAYS_BEFORE = 21


def weather(rng: np.random.Generator, start: dt.date, days: int) -> pa.Table:
    """Return hourly weather for the simulated days with a few rainy spells.

    Temperature follows the month's mean with a daily swing (coolest at
    05:00, warmest at 15:00), day-to-day drift and cooling under rain. About
    one spell of 3 to 8 rainy hours falls per three days.
    """
    hours = 24 * days
    hour_of_day = np.arange(hours) % 24
    swing = -np.cos((hour_of_day - 5) / 24 * 2 * np.pi) * _DAILY_SWING_C
    drift = np.repeat(np.cumsum(rng.normal(0.0, 1.5, size=days)), 24)

    precipitation_mm = np.zeros(hours)
    for _ in range(max(1, round(days / 3))):
        first = int(rng.integers(0, hours))
        length = int(rng.integers(3, 9))
        spell = slice(first, min(first + length, hours))
        size = spell.stop - spell.start
        precipitation_mm[spell] = np.round(rng.gamma(2.0, 0.8, size=size), 1) + 0.1
    raining = precipitation_mm > 0
    temperature_c = (
        _MONTHLY_MEAN_C[start.month - 1]
        + swing
        + drift
        - _RAIN_COOLING_C * raining
        + rng.normal(0.0, 0.5, size=hours)
    )
    first_hour = np.datetime64(start, "s")
    return pa.table(
        {
            "observed_at": pa.array(
                first_hour + np.arange(hours) * np.timedelta64(1, "h")
            ),
            "place": pa.array(["beijing"] * hours, pa.string()),
            "precipitation_mm": pa.array(precipitation_mm),
            "temperature_c": pa.array(np.round(temperature_c, 1)),
        }
    )


def campaign_outcomes(
    rng: np.random.Generator, population: Population, start: dt.date
) -> pa.Table:
    """Return a past campaign: about 30 % of subscribers contacted once each.

    Contacts are spread over five days three weeks before the simulation,
    between 09:00 and 20:00, by SMS, push or call; each converts with the
    person's true propensity.
    """
    count = population.count
    contacted = np.sort(
        rng.choice(count, size=round(CONTACTED_SHARE * count), replace=False)
    )
    size = len(contacted)
    first_day = np.datetime64(start - dt.timedelta(days=_CAMPAIGN_DAYS_BEFORE), "s")
    offset_s = rng.integers(0, 5, size=size) * 86_400 + rng.integers(
        9 * 3_600, 20 * 3_600, size=size
    )
    contacted_at = first_day + offset_s.astype("timedelta64[s]")
    channel = rng.choice(len(CAMPAIGN_CHANNELS), size=size, p=_CHANNEL_SHARES)
    converted = rng.random(size) < population.propensity[contacted]
    order = np.argsort(contacted_at, kind="stable")
    campaign_id = (
        f"cmp-{start - dt.timedelta(days=_CAMPAIGN_DAYS_BEFORE):%Y%m}-family-k12"
    )
    return pa.table(
        {
            "msisdn": population.msisdn.take(pa.array(contacted[order])),
            "campaign_id": pa.array([campaign_id] * size, pa.string()),
            "contacted_at": pa.array(contacted_at[order]),
            "channel": pa.array(
                np.array(CAMPAIGN_CHANNELS, object)[channel[order]], pa.string()
            ),
            "converted": pa.array(converted[order]),
        }
    )
