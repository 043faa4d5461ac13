"""The workspace: one folder that holds all state of a telcoreach deployment.

Layout::

    config.yaml         validated configuration
    key                 pseudonymisation key (mode 0600), unless $TELCOREACH_KEY
    lake/<kind>/day=YYYY-MM-DD/<batch>.parquet   ingested records
    lake/_quarantine/<kind>/<batch>.parquet      rejected rows with reasons
    lake/_manifest.json  committed batches: the lake is what this file lists
    warehouse.duckdb    derived tables (profiles, tiers, scores)
    models/ reports/ exports/
    audit.log           append-only, hash-chained record of data use
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from telcoreach.config import Config, load_config, write_config
from telcoreach.errors import PrivacyError, WorkspaceError
from telcoreach.privacy import (
    KEY_ENV,
    AuditVerification,
    Pseudonymiser,
    append_audit,
    load_or_create_key,
    verify_audit_log,
)
from telcoreach.privacy._audit import seal_path

__all__ = ["WORKSPACE_ENV", "Workspace", "default_workspace_path"]

logger = logging.getLogger(__name__)

WORKSPACE_ENV = "TELCOREACH_WORKSPACE"
_SUBDIRS = ("lake", "models", "reports", "exports", "inbox")


def default_workspace_path() -> Path:
    """Return ``$TELCOREACH_WORKSPACE`` or ``./telcoreach-workspace``."""
    return Path(os.environ.get(WORKSPACE_ENV, "telcoreach-workspace"))


@dataclass
class Workspace:
    """A telcoreach workspace folder.

    Use :meth:`create` to make a new one and :meth:`open` for an existing one.
    """

    root: Path

    @classmethod
    def create(cls, root: Path, config: Config | None = None) -> Workspace:
        """Create (or complete) a workspace at ``root`` and return it.

        An existing ``config.yaml`` is kept unless ``config`` is given.
        """
        root = Path(root).absolute()
        root.mkdir(parents=True, exist_ok=True)
        for name in _SUBDIRS:
            (root / name).mkdir(exist_ok=True)
        config_path = root / "config.yaml"
        if config is not None or not config_path.exists():
            write_config(config or Config(), config_path)
        (root / "audit.log").touch()
        workspace = cls(root)
        _ = workspace.pseudonymiser  # creates the key, records its fingerprint
        logger.info("workspace ready at %s", root)
        return workspace

    @classmethod
    def open(cls, root: Path) -> Workspace:
        """Open an existing workspace.

        Raises
        ------
        WorkspaceError
            If ``root`` is not a workspace.
        """
        root = Path(root).absolute()
        if not (root / "config.yaml").is_file():
            raise WorkspaceError(
                f"{root} is not a telcoreach workspace (no config.yaml); create it "
                f"with `telcoreach init {root}` or pass --workspace DIR"
            )
        return cls(root)

    @cached_property
    def config(self) -> Config:
        """The validated configuration."""
        return load_config(self.root / "config.yaml")

    @property
    def key_path(self) -> Path:
        """Where the pseudonymisation key file lives."""
        return self.root / "key"

    @cached_property
    def pseudonymiser(self) -> Pseudonymiser:
        """The keyed tokeniser of this workspace.

        Raises
        ------
        PrivacyError
            If the key is missing or differs from the one the workspace's
            tokens were made with: new tokens would not join the old ones,
            and every subscriber would be counted twice.
        """
        pending = self.keys_dir / "rotation.pending.json"
        if pending.exists():
            raise PrivacyError(
                f"a key rotation of workspace {self.root} was interrupted; tokens "
                "would mix two keys. Finish it with `telcoreach keys rotate` "
                "(it resumes where it stopped)"
            )
        fingerprint_path = self.root / "key.fingerprint"
        recorded = (
            fingerprint_path.read_text().strip() if fingerprint_path.exists() else None
        )
        if recorded and not self.key_path.exists() and not os.environ.get(KEY_ENV):
            raise PrivacyError(
                f"the key of workspace {self.root} is missing (no {self.key_path}, "
                f"no ${KEY_ENV}); its tokens were made with key {recorded}. "
                "Restore the key file or set the variable; a new key would split "
                "every subscriber in two"
            )
        pseudonymiser = Pseudonymiser(load_or_create_key(self.key_path))
        if recorded is None:
            fingerprint_path.write_text(pseudonymiser.fingerprint + "\n")
        elif recorded != pseudonymiser.fingerprint:
            raise PrivacyError(
                f"the key in use (fingerprint {pseudonymiser.fingerprint}) is not "
                f"the one workspace {self.root} was built with ({recorded}); "
                f"restore that key in {self.key_path} or ${KEY_ENV}"
            )
        return pseudonymiser

    @property
    def keys_dir(self) -> Path:
        """Key ring: encrypted token maps of retired keys, rotation records."""
        return self.root / "keys"

    @property
    def lake(self) -> Path:
        """Root of the Parquet lake."""
        return self.root / "lake"

    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file that holds derived tables."""
        return self.root / "warehouse.duckdb"

    @property
    def models_dir(self) -> Path:
        """The model registry."""
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        """Where HTML reports are written."""
        return self.root / "reports"

    @property
    def exports_dir(self) -> Path:
        """Default folder of exports."""
        return self.root / "exports"

    @property
    def audit_path(self) -> Path:
        """The append-only audit log."""
        return self.root / "audit.log"

    def resolve(self, path: str | Path) -> Path:
        """Return ``path`` relative to the workspace unless it is absolute."""
        path = Path(path)
        return path if path.is_absolute() else self.root / path

    @property
    def audit_key_path(self) -> Path:
        """Key of the audit log's seal (mode 0600), apart from the token key."""
        return self.root / "audit.key"

    @cached_property
    def _audit_key(self) -> bytes:
        """The seal key, created on first use."""
        path = self.audit_key_path
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        return bytes.fromhex(path.read_text().strip())

    def audit(self, **entry: Any) -> dict[str, Any]:
        """Append an entry to the audit log (see :func:`append_audit`)."""
        return append_audit(self.audit_path, seal_key=self._audit_key, **entry)

    def verify_audit(self) -> AuditVerification:
        """Check the audit log's hash chain and, when sealed, its length."""
        if not self.audit_key_path.exists():
            if seal_path(self.audit_path).exists():
                return AuditVerification(
                    0,
                    False,
                    None,
                    f"{self.audit_key_path.name} is missing, so the seal recording "
                    "the log's length cannot be checked; restore the key file",
                )
            return verify_audit_log(self.audit_path)
        return verify_audit_log(self.audit_path, seal_key=self._audit_key)

    @property
    def forget_list_path(self) -> Path:
        """Tokens of erased subscribers, one a line; ingest drops their rows."""
        return self.root / "forgotten.tokens"

    def forgotten_tokens(self) -> frozenset[str]:
        """Return the tokens of every subscriber erased with ``forget``."""
        if not self.forget_list_path.exists():
            return frozenset()
        text = self.forget_list_path.read_text(encoding="utf-8")
        return frozenset(line.strip() for line in text.splitlines() if line.strip())

    def record_use(
        self,
        action: str,
        purpose: str,
        *,
        tables: list[str] | tuple[str, ...] = (),
        subscribers: int | None = None,
        output: str | Path | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Audit one use of subscriber-level data and return the entry.

        The one helper every step calls when it reads subscriber-level data
        or writes an export: an ``output`` that is a file is hashed with SM3
        (and SHA-256) so a copy found later can be matched to this entry.
        """
        digest_sm3 = digest_sha256 = None
        label = None if output is None else str(output)
        if output is not None and not str(output).startswith("warehouse:"):
            path = Path(output)
            if not path.is_file():
                path = self.resolve(output)
            if path.is_file():
                import hashlib

                from telcoreach.privacy import file_sm3

                digest_sm3 = file_sm3(path)
                digest_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
                root = self.root.resolve()
                resolved = path.resolve()
                if resolved.is_relative_to(root):
                    label = str(resolved.relative_to(root))
        return append_audit(
            self.audit_path,
            seal_key=self._audit_key,
            action=action,
            purpose=purpose,
            tables=list(tables),
            subscribers=subscribers,
            output=label,
            output_sha256=digest_sha256,
            output_sm3=digest_sm3,
            details=details,
        )
