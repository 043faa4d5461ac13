"""Typed exceptions raised by telcoreach.

Every error message says what was expected, what was found and how to fix it.
The command-line interface turns these into a one-line message and a non-zero
exit status; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConsentError",
    "CryptoError",
    "DataSourceError",
    "EngineError",
    "ModelError",
    "PrivacyError",
    "PsiError",
    "QualityGateError",
    "RuleError",
    "SchemaError",
    "TelcoreachError",
    "WorkspaceError",
]


class TelcoreachError(Exception):
    """Base class of every error telcoreach raises on purpose."""


class ConfigError(TelcoreachError):
    """A configuration file or option has a wrong key, type or value."""


class WorkspaceError(TelcoreachError):
    """The workspace folder is missing, incomplete or unusable."""


class SchemaError(TelcoreachError):
    """Input data does not have the columns or types its record kind requires."""


class DataSourceError(TelcoreachError):
    """An input file or public data set cannot be found or read."""


class QualityGateError(TelcoreachError):
    """A data-quality gate at level ``error`` failed.

    ``summary`` holds what the run did before it stopped, when a run stopped.
    """

    summary: dict | None = None


class RuleError(TelcoreachError):
    """A tier, trigger or quality rule cannot be parsed or names an unknown column."""


class ConsentError(TelcoreachError):
    """An action would reach a subscriber without consent for its purpose."""


class PrivacyError(TelcoreachError):
    """An output would break a privacy guarantee (k-anonymity, raw identifiers)."""


class CryptoError(TelcoreachError):
    """A key, ciphertext, signature or key-agreement message is malformed or forged."""


class PsiError(TelcoreachError):
    """A PSI session failed: peer unreachable or silent, or speaks another protocol."""


class EngineError(TelcoreachError):
    """The batch engine (DuckDB or PySpark) cannot be opened or fails."""


class ModelError(TelcoreachError):
    """A model cannot be trained, found in the registry or applied."""
