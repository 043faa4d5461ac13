"""Ingest: validate, pseudonymise and commit batches of records into the lake."""

from telcoreach.ingest._batch import (
    IngestSummary,
    ProgressCallback,
    SourceChunks,
    file_sources,
    ingest_batch,
    table_source,
)
from telcoreach.ingest._sources import (
    ADAPTERS,
    DATA_ENV,
    city_cell_layer,
    default_data_dir,
    open_sources,
)
from telcoreach.ingest._validate import QUARANTINE_SCHEMA, validate_chunk

__all__ = [
    "ADAPTERS",
    "DATA_ENV",
    "QUARANTINE_SCHEMA",
    "IngestSummary",
    "ProgressCallback",
    "SourceChunks",
    "city_cell_layer",
    "default_data_dir",
    "file_sources",
    "ingest_batch",
    "open_sources",
    "table_source",
    "validate_chunk",
]
