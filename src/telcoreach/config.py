"""Workspace configuration, validated with pydantic.

A wrong key or value is reported with its dotted path, the expected type and
the value found, e.g. ``profile.school_zone_m: expected a number, found 'far'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from telcoreach.errors import ConfigError

__all__ = [
    "AudienceConfig",
    "Config",
    "EngineConfig",
    "ModelConfig",
    "PrivacyConfig",
    "ProfileConfig",
    "SourceConfig",
    "StayPointConfig",
    "SubwayConfig",
    "load_config",
    "write_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    """Which batch engine runs the Ibis expressions."""

    name: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[2]"
    threads: int = Field(default=2, ge=1)
    memory_limit: str = Field(
        default="8GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )


class StayPointConfig(_Strict):
    """Stay-point detection over cell positions."""

    dist_m: float = Field(default=600.0, gt=0)
    time_min: float = Field(default=20.0, gt=0)
    gap_min: float = Field(default=120.0, gt=0)


class SubwayConfig(_Strict):
    """What counts as a subway ride and a subway commuter."""

    min_stations: int = Field(default=3, ge=2)
    max_station_gap_min: float = Field(default=10.0, gt=0)
    min_weekday_trips: int = Field(default=3, ge=1)


class ProfileConfig(_Strict):
    """Parameters of the subscriber profile."""

    night_hours: tuple[int, int] = (21, 7)
    work_hours: tuple[int, int] = (9, 17)
    max_dwell_min: float = Field(default=120.0, gt=0)
    pingpong_window_s: float = Field(default=300.0, ge=0)
    school_zone_m: float = Field(default=500.0, gt=0)
    k12_category: str = "k12_education"
    tutoring_keywords: tuple[str, ...] = (
        "家教",
        "辅导",
        "补习",
        "课外班",
        "tutor",
        "tutoring",
        "homework help",
    )
    require_consent: bool = True
    staypoints: StayPointConfig = StayPointConfig()
    subway: SubwayConfig = SubwayConfig()

    @field_validator("night_hours", "work_hours")
    @classmethod
    def _hours_in_day(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(0 <= hour <= 24 for hour in value):
            raise ValueError(f"hours must be between 0 and 24, found {value}")
        return value


class ModelConfig(_Strict):
    """Which outcomes and features train the propensity model."""

    name: str = "propensity"
    features: Literal["profile", "partner_customers"] = "profile"
    campaign_id: str | None = None
    test_size: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 0
    baseline: Literal["lightgbm", "none"] = "lightgbm"


class PrivacyConfig(_Strict):
    """Privacy safeguards on every export."""

    k_anonymity: int = Field(default=10, ge=2)
    quasi_identifiers: tuple[str, ...] = ("age_band", "gender")


class AudienceConfig(_Strict):
    """Defaults of the audience export."""

    segment: str = "high-potential parent"
    top: int = Field(default=1000, ge=1)
    purpose: str = "marketing"


class SourceConfig(_Strict):
    """One input of a ``telcoreach run``: a record kind read by an adapter."""

    kind: str
    adapter: Literal[
        "csv",
        "parquet",
        "geolife",
        "beijing_cells",
        "subway",
        "talkingdata",
        "bank_marketing",
        "weather",
    ] = "csv"
    paths: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)


class Config(_Strict):
    """The whole workspace configuration (``config.yaml``)."""

    city: str = "beijing"
    description: str = ""
    data_dir: str | None = None
    engine: EngineConfig = EngineConfig()
    profile: ProfileConfig = ProfileConfig()
    segments: str = "rules.yaml"
    model: ModelConfig = ModelConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    audience: AudienceConfig = AudienceConfig()
    sources: tuple[SourceConfig, ...] = ()


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    found = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key (found {found!r}); check its spelling"
    return f"{path}: {error['msg'].lower()}, found {found!r}"


def parse_config(data: Any, origin: str) -> Config:
    """Validate a mapping as a :class:`Config`, with readable errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings, found {type(data).__name__}"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        lines = "\n  ".join(_describe(item) for item in error.errors())
        raise ConfigError(
            f"{origin} is not a valid configuration:\n  {lines}"
        ) from None


def load_config(path: Path) -> Config:
    """Read and validate a YAML configuration file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found; create a workspace with "
            "`telcoreach init DIR` or pass --config"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return parse_config(data, str(path))


def write_config(config: Config, path: Path) -> None:
    """Write ``config`` as YAML."""
    data = config.model_dump(mode="json", exclude_defaults=False)
    path.write_text(
        "# telcoreach workspace configuration (see docs/configuration.md)\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
