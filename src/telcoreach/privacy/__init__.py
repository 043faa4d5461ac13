"""Privacy: keyed pseudonymisation, audit log, identifier scanning, k-anonymity."""

from telcoreach.privacy._audit import AuditVerification, append_audit, verify_audit_log
from telcoreach.privacy._kanon import check_k_anonymity
from telcoreach.privacy._scan import (
    RAW_ID_PATTERNS,
    find_raw_identifiers,
    redact_digit_runs,
)
from telcoreach.privacy._tokens import (
    KEY_ENV,
    Pseudonymiser,
    load_or_create_key,
    normalise_identifiers,
)

__all__ = [
    "KEY_ENV",
    "RAW_ID_PATTERNS",
    "AuditVerification",
    "Pseudonymiser",
    "append_audit",
    "check_k_anonymity",
    "find_raw_identifiers",
    "load_or_create_key",
    "normalise_identifiers",
    "redact_digit_runs",
    "verify_audit_log",
]
