"""Workspace configuration, validated with pydantic.

A wrong key or value is reported with its dotted path, the expected type and
the value found, e.g. ``profile.school_zone_m: expected a number, found 'far'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from telcoreach.errors import ConfigError

__all__ = [
    "AudienceConfig",
    "Config",
    "EngineConfig",
    "FetchConfig",
    "ModelConfig",
    "PrivacyConfig",
    "ProfileConfig",
    "QualityConfig",
    "QualityGate",
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


class HierarchyConfig(_Strict):
    """Coarser versions of one quasi-identifier, level by level, before ``*``."""

    #: Categorical: value -> coarser value, one mapping per level.
    levels: tuple[dict[str, str], ...] = ()
    #: Numeric: width of the ranges at each level, each a multiple of the last.
    bin_widths: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> HierarchyConfig:
        if self.levels and self.bin_widths:
            raise ValueError("give either levels (categorical) or bin_widths")
        widths = self.bin_widths
        if any(w <= 0 for w in widths) or any(
            widths[i + 1] % widths[i] for i in range(len(widths) - 1)
        ):
            raise ValueError(
                f"bin_widths must be positive, each a multiple of the last; "
                f"found {list(widths)}"
            )
        return self


_DEFAULT_HIERARCHIES = {
    "age_band": HierarchyConfig(
        levels=(
            {
                "<18": "<25",
                "18-24": "<25",
                "25-34": "25-44",
                "35-44": "25-44",
                "45-54": "45+",
                "55+": "45+",
            },
            {"<25": "<45", "25-44": "<45"},
        )
    ),
    "gender": HierarchyConfig(),
    "tenure_months": HierarchyConfig(bin_widths=(12.0, 60.0)),
}


class PrivacyConfig(_Strict):
    """Privacy safeguards on every export."""

    k_anonymity: int = Field(default=10, ge=2)
    quasi_identifiers: tuple[str, ...] = ("age_band", "gender")
    #: Days an old token stays resolvable after `telcoreach keys rotate`
    #: (through an SM4-GCM encrypted old -> new token map); 0 keeps no map.
    key_retention_days: int = Field(default=90, ge=0, le=3650)
    #: Fewest distinct sensitive values per group of an aggregate export.
    l_diversity: int = Field(default=2, ge=1)
    #: Column an aggregate export shows per group and must not reveal;
    #: ``propensity_band`` is derived from the model score. None: no l check.
    sensitive_attribute: str | None = "propensity_band"
    #: Largest share of rows an export may drop to reach k and l.
    max_suppression_share: float = Field(default=0.05, ge=0, lt=1)
    #: How each quasi-identifier may be coarsened; columns not named are
    #: never generalised (see docs/deidentification.md).
    hierarchies: dict[str, HierarchyConfig] = Field(
        default_factory=lambda: dict(_DEFAULT_HIERARCHIES)
    )


class AudienceConfig(_Strict):
    """Defaults of the audience export."""

    segment: str = "high-potential parent"
    top: int = Field(default=1000, ge=1)
    purpose: str = "marketing"
    #: Consent an audience member must have now (see docs/privacy.md).
    consent_purpose: str = Field(
        default="marketing_sms",
        pattern=r"^(marketing_sms|marketing_call|profiling|sharing:\S.{0,63})$",
    )


class FetchConfig(_Strict):
    """Where ``telcoreach fetch`` pulls a source's files from (docs/delivery.md).

    Secrets never live here: ``password_env`` names the environment variable
    that holds the password, ``key_file`` the path of a private key.
    """

    protocol: Literal["folder", "sftp", "http"]
    url: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str | None = None
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_file: str | None = None
    known_hosts: str | None = None
    pattern: str = "*"
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    backoff_s: float = Field(default=1.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a password does not belong in the configuration; put it in an "
                "environment variable and name that variable in password_env"
            )
        return data

    @model_validator(mode="after")
    def _protocol_fields(self) -> FetchConfig:
        needed = {
            "folder": ("path",),
            "sftp": ("host", "username"),
            "http": ("url",),
        }[self.protocol]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"protocol {self.protocol} needs {', '.join(missing)}, found none"
            )
        if self.protocol == "sftp" and not (self.password_env or self.key_file):
            raise ValueError(
                "protocol sftp needs password_env (the name of a variable holding "
                "the password) or key_file (a private key), found neither"
            )
        if self.protocol == "http" and not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"url must start with http:// or https://, found {self.url!r}"
            )
        return self


class SourceConfig(_Strict):
    """One input of a ``telcoreach run``: a record kind read by an adapter."""

    kind: str
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    fetch: FetchConfig | None = None
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


Severity = Literal["error", "warn", "off"]


class QualityGate(_Strict):
    """One quality gate: the figure a check may reach, and what failing means.

    ``threshold`` is the highest share allowed (0.05 is 5 %), except for
    ``identity`` (lowest share of one-to-one subscribers) and ``freshness``
    (highest p95 delay in hours). ``error`` stops ``telcoreach run``; ``warn``
    goes into the report; ``off`` skips the gate (the figure is still stored).
    """

    threshold: float = Field(ge=0)
    severity: Severity = "warn"


class QualityGateOverride(_Strict):
    """A per-source change of a gate; unset keys keep the workspace default."""

    threshold: float | None = Field(default=None, ge=0)
    severity: Severity | None = None


class QualityChecks(_Strict):
    """The default gate of every quality check (see ``docs/quality.md``)."""

    missing: QualityGate = QualityGate(threshold=0.05, severity="error")
    duplicates: QualityGate = QualityGate(threshold=0.01, severity="warn")
    invalid_values: QualityGate = QualityGate(threshold=0.01, severity="warn")
    malformed_ids: QualityGate = QualityGate(threshold=0.015, severity="error")
    imei_luhn: QualityGate = QualityGate(threshold=0.01, severity="warn")
    unknown_tac: QualityGate = QualityGate(threshold=0.05, severity="warn")
    unknown_cells: QualityGate = QualityGate(threshold=0.015, severity="error")
    future_times: QualityGate = QualityGate(threshold=0.001, severity="error")
    before_batch_day: QualityGate = QualityGate(threshold=0.0, severity="warn")
    identity: QualityGate = QualityGate(threshold=0.99, severity="warn")
    freshness: QualityGate = QualityGate(threshold=1.0, severity="warn")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_defaults(cls, data: Any) -> Any:
        """Let ``checks.<check>`` set threshold or severity alone."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, value in data.items():
            default = cls.model_fields.get(name)
            if isinstance(value, dict) and default is not None:
                filled[name] = {**default.default.model_dump(), **value}
        return filled

    @model_validator(mode="after")
    def _shares_within_one(self) -> QualityChecks:
        for name in type(self).model_fields:
            _check_share(name, getattr(self, name).threshold, f"checks.{name}")
        return self


def _check_share(check: str, threshold: float | None, where: str) -> None:
    """Raise ValueError when a share threshold is outside [0, 1]."""
    if check != "freshness" and threshold is not None and threshold > 1:
        raise ValueError(
            f"{where}.threshold is a share between 0 and 1 (0.05 is 5 %), found "
            f"{threshold:g}; only freshness is in hours"
        )


class QualityHistoryConfig(_Strict):
    """When ``quality --history`` flags a day as a jump."""

    window_days: int = Field(default=14, ge=2)
    min_days: int = Field(default=3, ge=2)
    z: float = Field(default=3.5, gt=0)


class QualityConfig(_Strict):
    """Data-quality gates, per check and per source kind."""

    checks: QualityChecks = QualityChecks()
    sources: dict[str, dict[str, QualityGateOverride]] = Field(default_factory=dict)
    device_table: str | None = None
    conflicts_listed: int = Field(default=20, ge=0)
    history: QualityHistoryConfig = QualityHistoryConfig()

    @field_validator("sources")
    @classmethod
    def _known_checks(
        cls, value: dict[str, dict[str, QualityGateOverride]]
    ) -> dict[str, dict[str, QualityGateOverride]]:
        known = set(QualityChecks.model_fields)
        for kind, overrides in value.items():
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(
                    f"sources.{kind}: unknown check {', '.join(unknown)}; expected "
                    f"one of {', '.join(sorted(known))}"
                )
            for check, override in overrides.items():
                _check_share(check, override.threshold, f"sources.{kind}.{check}")
        return value

    def gate(self, check: str, kind: str) -> QualityGate:
        """Return the gate of ``check`` for source ``kind``, overrides applied."""
        gate = getattr(self.checks, check)
        for override in (
            _BUILT_IN_OVERRIDES.get(kind, {}).get(check),
            self.sources.get(kind, {}).get(check),
        ):
            if override is not None:
                changes = override.model_dump(exclude_none=True)
                gate = gate.model_copy(update=changes)
        return gate


#: Past campaigns and weather are not delivered as they happen: their arrival
#: delay is not a freshness problem (``quality.sources`` can turn it back on).
_BUILT_IN_OVERRIDES: dict[str, dict[str, QualityGateOverride]] = {
    kind: {"freshness": QualityGateOverride(severity="off")}
    for kind in ("campaign_outcomes", "weather")
}


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
    quality: QualityConfig = QualityConfig()


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    found = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key (found {found!r}); check its spelling"
    if error["type"] == "value_error":
        # The validator's message names what it found; echoing the whole
        # input could print a secret (a password written into the file).
        return f"{path}: {error['msg'].removeprefix('Value error, ')}"
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
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"configuration file {path} is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); save it as UTF-8, e.g. `iconv -f gbk -t utf-8`"
        ) from None
    return parse_config(data, str(path))


def write_config(config: Config, path: Path) -> None:
    """Write ``config`` as YAML."""
    data = config.model_dump(mode="json", exclude_defaults=False)
    path.write_text(
        "# telcoreach workspace configuration (see docs/configuration.md)\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
