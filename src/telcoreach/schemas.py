"""Record kinds a carrier holds, declared once and used everywhere.

Ingest validates against these declarations, the simulator writes them, the
documentation in ``docs/data-model.md`` is generated from them and the tests
read them. Adding a field is one edit here.

Glossary
--------
MSISDN
    The subscriber's phone number (in China 11 digits starting ``1[3-9]``).
IMSI
    International Mobile Subscriber Identity, the SIM's id (15 digits, ``460``
    is China's mobile country code).
IMEI
    International Mobile Equipment Identity, the handset's id (15 digits, the
    last one a Luhn check digit). Its first 8 digits, the TAC (type allocation
    code), identify the device model and are not personal.
LAC / TAC (area)
    Location or tracking area code: a group of cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from telcoreach.errors import SchemaError

__all__ = [
    "ID_PATTERNS",
    "KINDS",
    "MR_NEIGHBOURS",
    "Field",
    "RecordSchema",
    "schema_for",
]

FieldType = Literal["string", "int64", "float64", "bool", "timestamp"]
IdentifierKind = Literal["msisdn", "imsi", "imei"]

#: Regular expressions a well-formed raw identifier must match in carrier data.
ID_PATTERNS: dict[str, str] = {
    "msisdn": r"^(?:\+?86)?1[3-9][0-9]{9}$",
    "imsi": r"^460[0-9]{12}$",
    "imei": r"^[0-9]{15}$",
}


@dataclass(frozen=True)
class Field:
    """One column of a record kind.

    Parameters
    ----------
    name : str
        Column name in the input file.
    dtype : {"string", "int64", "float64", "bool", "timestamp"}
        Type the value must parse to.
    required : bool
        Whether an empty value sends the row to quarantine.
    description : str
        What the value means, with its unit.
    identifier : {"msisdn", "imsi", "imei"} or None
        Personal identifier replaced by a keyed token at ingest.
    allowed : tuple of str, optional
        Closed set of accepted values.
    minimum, maximum : float, optional
        Inclusive numeric range.
    free_text : bool
        Text typed or sent by a person (search terms, hosts): personal data
        in it (mobile numbers, ID-card and bank-card numbers, IMSIs, IMEIs)
        is masked at ingest (docs/deidentification.md).
    """

    name: str
    dtype: FieldType
    required: bool = True
    description: str = ""
    identifier: IdentifierKind | None = None
    allowed: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    free_text: bool = False

    @property
    def stored_as(self) -> str:
        """Column name in the lake: identifiers are stored as token columns."""
        if self.identifier == "msisdn":
            return "subscriber"
        if self.identifier is not None:
            return f"{self.name}_token"
        return self.name


@dataclass(frozen=True)
class RecordSchema:
    """A record kind: its fields, its event-time column and its key.

    Parameters
    ----------
    kind : str
        Name used on the command line and as the lake folder.
    description : str
        One sentence on what a row is.
    fields : tuple of Field
        Columns in input order.
    time_field : str or None
        Column whose day partitions the lake; ``None`` for reference tables,
        which are partitioned by the day they were ingested.
    key : tuple of str
        Input columns that identify a record; a second row with the same key
        in a batch is a duplicate.
    """

    kind: str
    description: str
    fields: tuple[Field, ...]
    time_field: str | None
    key: tuple[str, ...]
    derived: tuple[str, ...] = field(default=())

    def field(self, name: str) -> Field:
        """Return the field called ``name``."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise SchemaError(
            f"record kind {self.kind!r} has no field {name!r}; "
            f"expected one of {', '.join(self.field_names)}"
        )

    @property
    def field_names(self) -> tuple[str, ...]:
        """Input column names in order."""
        return tuple(f.name for f in self.fields)

    @property
    def identifiers(self) -> tuple[Field, ...]:
        """Fields that hold personal identifiers."""
        return tuple(f for f in self.fields if f.identifier is not None)

    @property
    def stored_key(self) -> tuple[str, ...]:
        """Key columns as named in the lake."""
        return tuple(self.field(name).stored_as for name in self.key)


_MSISDN = Field(
    "msisdn",
    "string",
    description="Subscriber phone number (MSISDN); stored only as the token "
    "column `subscriber`",
    identifier="msisdn",
)
_IMSI = Field(
    "imsi",
    "string",
    required=False,
    description="SIM identity (IMSI, 15 digits, MCC 460); stored only as `imsi_token`",
    identifier="imsi",
)
_IMEI = Field(
    "imei",
    "string",
    required=False,
    description="Handset identity (IMEI, 15 digits); stored as `imei_token`, "
    "its 8-digit TAC kept in `tac`",
    identifier="imei",
)
_LAT = Field(
    "lat", "float64", minimum=-90, maximum=90, description="Latitude, WGS-84 degrees"
)
_LON = Field(
    "lon",
    "float64",
    minimum=-180,
    maximum=180,
    description="Longitude, WGS-84 degrees",
)
_CELL_TYPES = ("macro", "micro", "indoor", "subway", "virtual")
_EVENT_TYPES = (
    "attach",
    "detach",
    "handover",
    "location_update",
    "periodic_update",
    "call",
    "sms",
    "data",
    "paging",
)
_AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
#: Neighbour cells a measurement report carries, strongest first (``nc1``...).
MR_NEIGHBOURS = 6
#: RSRP reporting range of 3GPP TS 36.133 (extended), dBm.
_RSRP_MIN_DBM, _RSRP_MAX_DBM = -156.0, -31.0


def _neighbour_fields() -> tuple[Field, ...]:
    """Return the optional cell and RSRP columns of neighbours 1 to 6."""
    fields: list[Field] = []
    for number in range(1, MR_NEIGHBOURS + 1):
        fields += [
            Field(
                f"nc{number}_cell_id",
                "string",
                required=False,
                description=f"Neighbour cell {number} (by falling RSRP)",
            ),
            Field(
                f"nc{number}_rsrp_dbm",
                "float64",
                required=False,
                minimum=_RSRP_MIN_DBM,
                maximum=_RSRP_MAX_DBM,
                description=f"RSRP of neighbour cell {number}, dBm",
            ),
        ]
    return tuple(fields)


KINDS: dict[str, RecordSchema] = {
    schema.kind: schema
    for schema in (
        RecordSchema(
            "signalling",
            "One control-plane event of a subscriber on a cell (attach, "
            "handover, periodic location update, call, SMS).",
            (
                _MSISDN,
                _IMSI,
                _IMEI,
                Field("event_time", "timestamp", description="Event time (UTC+8)"),
                Field(
                    "lac",
                    "int64",
                    required=False,
                    minimum=0,
                    description="Location/tracking area code",
                ),
                Field("cell_id", "string", description="Serving cell id"),
                Field(
                    "event_type",
                    "string",
                    allowed=_EVENT_TYPES,
                    description="Signalling procedure",
                ),
            ),
            time_field="event_time",
            key=("msisdn", "event_time", "cell_id", "event_type"),
            derived=("tac",),
        ),
        RecordSchema(
            "dpi",
            "One user-plane session seen by deep packet inspection: which app, "
            "which search keywords, how many bytes, on which cell.",
            (
                _MSISDN,
                Field("start_time", "timestamp", description="Session start"),
                Field("end_time", "timestamp", description="Session end"),
                Field("app_name", "string", description="Application name"),
                Field(
                    "app_category",
                    "string",
                    description="Application category, e.g. k12_education",
                ),
                Field(
                    "search_keywords",
                    "string",
                    required=False,
                    description="Search terms typed in the session; personal "
                    "data in them is masked",
                    free_text=True,
                ),
                Field("bytes_up", "int64", minimum=0, description="Uplink bytes"),
                Field("bytes_down", "int64", minimum=0, description="Downlink bytes"),
                Field(
                    "host",
                    "string",
                    required=False,
                    description="Server host",
                    free_text=True,
                ),
                Field(
                    "cell_id",
                    "string",
                    required=False,
                    description="Cell serving the session",
                ),
            ),
            time_field="start_time",
            key=("msisdn", "start_time", "app_name", "host"),
        ),
        RecordSchema(
            "subscribers",
            "One subscriber's static traits and consent flags.",
            (
                _MSISDN,
                _IMSI,
                _IMEI,
                Field(
                    "age_band",
                    "string",
                    required=False,
                    allowed=_AGE_BANDS,
                    description="Age band",
                ),
                Field(
                    "gender",
                    "string",
                    required=False,
                    allowed=("M", "F", "U"),
                    description="Gender as registered",
                ),
                Field("plan", "string", required=False, description="Tariff plan"),
                Field(
                    "device_brand",
                    "string",
                    required=False,
                    description="Handset brand",
                ),
                Field(
                    "device_model",
                    "string",
                    required=False,
                    description="Handset model",
                ),
                Field(
                    "tenure_months",
                    "int64",
                    required=False,
                    minimum=0,
                    description="Months since the contract started",
                ),
                Field(
                    "consent_marketing",
                    "bool",
                    description="Consented to marketing contact",
                ),
                Field(
                    "consent_profiling",
                    "bool",
                    description="Consented to behavioural profiling",
                ),
                Field(
                    "opted_out",
                    "bool",
                    required=False,
                    description="Asked not to receive marketing",
                ),
            ),
            time_field=None,
            key=("msisdn",),
            derived=("tac",),
        ),
        RecordSchema(
            "cells",
            "One radio cell with its position and kind.",
            (
                Field("cell_id", "string", description="Cell id"),
                Field(
                    "lac",
                    "int64",
                    required=False,
                    minimum=0,
                    description="Location/tracking area code",
                ),
                _LAT,
                _LON,
                Field(
                    "radius_m",
                    "float64",
                    minimum=0,
                    description="Coverage radius in metres",
                ),
                Field(
                    "cell_type",
                    "string",
                    allowed=_CELL_TYPES,
                    description="macro, micro, indoor, subway or virtual (a "
                    "grid cell standing in where real cells are unknown)",
                ),
            ),
            time_field=None,
            key=("cell_id",),
        ),
        RecordSchema(
            "pois",
            "One point of interest: a school, a mall or a subway station.",
            (
                Field("poi_id", "string", description="POI id"),
                Field("name", "string", required=False, description="Name"),
                Field(
                    "poi_type",
                    "string",
                    allowed=("school", "mall", "subway_station", "office"),
                    description="Kind of place",
                ),
                _LAT,
                _LON,
            ),
            time_field=None,
            key=("poi_id",),
        ),
        RecordSchema(
            "weather",
            "One hourly weather observation at a place.",
            (
                Field("observed_at", "timestamp", description="Hour observed"),
                Field("place", "string", description="Station or district"),
                Field(
                    "precipitation_mm",
                    "float64",
                    required=False,
                    minimum=0,
                    description="Precipitation in the hour, mm",
                ),
                Field(
                    "temperature_c",
                    "float64",
                    required=False,
                    description="Air temperature, °C",
                ),
            ),
            time_field="observed_at",
            key=("observed_at", "place"),
        ),
        RecordSchema(
            "campaign_outcomes",
            "One contact of a subscriber in a campaign and whether it converted.",
            (
                _MSISDN,
                Field("campaign_id", "string", description="Campaign id"),
                Field("contacted_at", "timestamp", description="Contact time"),
                Field(
                    "channel",
                    "string",
                    allowed=("sms", "email", "push", "call", "cellular", "telephone"),
                    description="Channel used",
                ),
                Field("converted", "bool", description="Bought the offer"),
            ),
            time_field="contacted_at",
            key=("msisdn", "campaign_id", "contacted_at"),
        ),
        RecordSchema(
            "partner_customers",
            "One customer of an enterprise partner with the partner's own "
            "attributes (layout of the UCI bank-marketing data).",
            (
                _MSISDN,
                Field("age", "int64", minimum=0, maximum=120, description="Age"),
                Field("job", "string", required=False, description="Occupation"),
                Field(
                    "marital", "string", required=False, description="Marital status"
                ),
                Field("education", "string", required=False, description="Education"),
                Field(
                    "credit_default",
                    "string",
                    required=False,
                    description="Has credit in default",
                ),
                Field(
                    "housing",
                    "string",
                    required=False,
                    description="Has a housing loan",
                ),
                Field(
                    "loan", "string", required=False, description="Has a personal loan"
                ),
                Field(
                    "campaign",
                    "int64",
                    required=False,
                    minimum=0,
                    description="Contacts in this campaign",
                ),
                Field(
                    "pdays",
                    "int64",
                    required=False,
                    description="Days since the previous campaign (999: none)",
                ),
                Field(
                    "previous",
                    "int64",
                    required=False,
                    minimum=0,
                    description="Contacts before this campaign",
                ),
                Field(
                    "poutcome",
                    "string",
                    required=False,
                    description="Outcome of the previous campaign",
                ),
                Field(
                    "emp_var_rate",
                    "float64",
                    required=False,
                    description="Employment variation rate (quarterly)",
                ),
                Field(
                    "cons_price_idx",
                    "float64",
                    required=False,
                    description="Consumer price index (monthly)",
                ),
                Field(
                    "cons_conf_idx",
                    "float64",
                    required=False,
                    description="Consumer confidence index (monthly)",
                ),
                Field(
                    "euribor3m",
                    "float64",
                    required=False,
                    description="Euribor 3-month rate",
                ),
                Field(
                    "nr_employed",
                    "float64",
                    required=False,
                    description="Number employed (quarterly, thousands)",
                ),
            ),
            time_field=None,
            key=("msisdn",),
        ),
        RecordSchema(
            "measurement_reports",
            "One radio measurement report (MR) of a handset: the RSRP "
            "(reference signal received power) of its serving cell and of up "
            "to six neighbour cells, strongest first, one row per report as a "
            "carrier's MR export flattens it. A position between cells is "
            "refined from it (telcoreach.features.mr_positions).",
            (
                _MSISDN,
                Field("report_time", "timestamp", description="Report time"),
                Field("serving_cell_id", "string", description="Serving cell id"),
                Field(
                    "serving_rsrp_dbm",
                    "float64",
                    minimum=_RSRP_MIN_DBM,
                    maximum=_RSRP_MAX_DBM,
                    description="RSRP of the serving cell, dBm (an MRO index "
                    "converts as index - 141)",
                ),
                *_neighbour_fields(),
            ),
            time_field="report_time",
            key=("msisdn", "report_time", "serving_cell_id"),
        ),
    )
}


def schema_for(kind: str) -> RecordSchema:
    """Return the declared schema of record ``kind``.

    Raises
    ------
    SchemaError
        If ``kind`` is not a declared record kind.
    """
    try:
        return KINDS[kind]
    except KeyError:
        raise SchemaError(
            f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def data_model_markdown() -> str:
    """Return ``docs/data-model.md``: every record kind as a Markdown table."""
    lines = [
        "# Data model",
        "",
        "Generated from `src/telcoreach/schemas.py` by "
        "`python -m telcoreach.schemas > docs/data-model.md`; a test checks that "
        "this file matches the code.",
        "",
        "Input files are CSV (optionally gzip) or Parquet with a header naming the "
        "fields below. Timestamps are `YYYY-MM-DD HH:MM:SS` in Beijing local time "
        "(UTC+8). Identifier fields are replaced at ingest by keyed HMAC-SM3 "
        "tokens (24 characters of `a-z2-7`): the lake never holds a raw MSISDN, "
        "IMSI or IMEI. Rows that break a rule below go to the quarantine with "
        "their file, line and reason.",
        "",
        "Event kinds are partitioned by the day of their time field; reference "
        "kinds (no time field) by the day they were ingested, and readers keep "
        "the newest version of each key.",
        "",
    ]
    for schema in KINDS.values():
        lines += [
            f"## `{schema.kind}`",
            "",
            schema.description,
            "",
            f"- Partitioned by: `{schema.time_field or 'ingest day'}`",
            f"- Key (duplicates are quarantined): "
            f"{', '.join(f'`{k}`' for k in schema.key)}",
            "",
            "| field | type | required | stored as | rule | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for item in schema.fields:
            rule = []
            if item.identifier:
                rule.append(f"{item.identifier} format; tokenised")
            if item.allowed:
                rule.append("one of " + ", ".join(f"`{v}`" for v in item.allowed))
            if item.minimum is not None:
                rule.append(f">= {item.minimum:g}")
            if item.maximum is not None:
                rule.append(f"<= {item.maximum:g}")
            if item.free_text:
                rule.append("personal data masked")
            lines.append(
                f"| `{item.name}` | {item.dtype} | {'yes' if item.required else 'no'}"
                f" | `{item.stored_as}` | {'; '.join(rule)} | {item.description} |"
            )
        if schema.derived:
            lines += [
                "",
                f"Derived at ingest: {', '.join(schema.derived)} "
                "(the 8-digit TAC of the IMEI: a device model, not a person).",
            ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(data_model_markdown())
