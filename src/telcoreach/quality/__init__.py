"""Data quality: validators at ingest, gates on the lake, history of figures.

Raw identifiers exist only while ingest reads a file, so their validators
(MSISDN format, IMSI country code and length, IMEI Luhn digit) run there and
their counts are stored with the batch; the lake is then checked table by
table in one aggregate query each (missing values, unknown cells and TACs,
future times), identities are compared across channels, and every figure is
stored in the warehouse table ``quality_results`` with its batch. Gates set
in the workspace configuration (``quality:``) decide what fails; a failed
``error`` gate stops ``telcoreach run`` before profiling.
"""

from telcoreach.quality._arrival import delay_quantile_s, file_day
from telcoreach.quality._history import robust_z
from telcoreach.quality._results import QualityResult
from telcoreach.quality._run import (
    RESULTS_TABLE,
    gate_error,
    quality_history,
    run_quality,
    stored_failures,
)
from telcoreach.quality._validators import (
    identifier_counts,
    imei_luhn_valid,
    imsi_length_valid,
    imsi_mcc_valid,
    msisdn_valid,
)

__all__ = [
    "RESULTS_TABLE",
    "QualityResult",
    "delay_quantile_s",
    "file_day",
    "gate_error",
    "identifier_counts",
    "imei_luhn_valid",
    "imsi_length_valid",
    "imsi_mcc_valid",
    "msisdn_valid",
    "quality_history",
    "robust_z",
    "run_quality",
    "stored_failures",
]
