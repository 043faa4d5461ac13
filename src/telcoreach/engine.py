"""The batch engine edge: the only module that opens DuckDB or PySpark.

Everything else builds Ibis expressions and hands them here to be read from
the lake, stored in the warehouse or executed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from telcoreach.errors import EngineError, WorkspaceError
from telcoreach.lake import Lake
from telcoreach.schemas import schema_for
from telcoreach.workspace import Workspace

__all__ = ["Engine"]

logger = logging.getLogger(__name__)


class Engine:
    """Open the configured backend for a workspace.

    Parameters
    ----------
    workspace : Workspace
        Where the lake and the warehouse live.
    name : {"duckdb", "spark"}, optional
        Backend; defaults to the workspace configuration.
    """

    def __init__(self, workspace: Workspace, name: str | None = None) -> None:
        self.workspace = workspace
        self.name = name or workspace.config.engine.name
        self.lake_store = Lake(workspace.lake)
        self._con: Any = None

    @property
    def con(self) -> Any:
        """The Ibis backend connection (opened on first use)."""
        if self._con is None:
            self._con = self._connect()
        return self._con

    def _connect(self) -> Any:
        settings = self.workspace.config.engine
        if self.name == "duckdb":
            con = ibis.duckdb.connect(
                str(self.workspace.warehouse_path),
                threads=settings.threads,
                memory_limit=settings.memory_limit,
            )
            con.raw_sql("SET preserve_insertion_order = false")
            return con
        if self.name == "spark":
            try:
                from pyspark.sql import SparkSession
            except ImportError:
                raise EngineError(
                    "engine 'spark' needs PySpark; install it with "
                    "`pip install 'telcoreach[spark]'`"
                ) from None
            session = (
                SparkSession.builder.master(settings.spark_master)
                .appName("telcoreach")
                .config("spark.sql.session.timeZone", "UTC")
                .config(
                    "spark.sql.warehouse.dir",
                    str(self.workspace.root / "spark-warehouse"),
                )
                .getOrCreate()
            )
            return ibis.pyspark.connect(session)
        raise EngineError(f"unknown engine {self.name!r}; expected duckdb or spark")

    def lake(self, kind: str) -> ibis.Table:
        """Return the committed records of ``kind`` as an Ibis table.

        Reference kinds (subscribers, cells...) keep only the newest version of
        each key; event kinds return every stored row.

        Raises
        ------
        WorkspaceError
            If nothing of ``kind`` has been ingested yet.
        """
        schema = schema_for(kind)
        files = self.lake_store.files(kind)
        if not files:
            raise WorkspaceError(
                f"no {kind} data in the lake yet; ingest some with "
                f"`telcoreach ingest {kind} FILE...`"
            )
        table = self._read_parquet([str(p) for p in files], f"lake_{kind}")
        if schema.time_field is None:
            key = list(schema.stored_key)
            newest = ibis.row_number().over(
                group_by=key, order_by=ibis.desc(table._batch_seq)
            )
            table = table.mutate(_newest=newest).filter(lambda t: t._newest == 0)
            table = table.drop("_newest")
        return table

    def has_lake(self, kind: str) -> bool:
        """Whether any batch of ``kind`` has been committed."""
        return bool(self.lake_store.files(kind))

    def quarantine(self, kind: str | None = None) -> ibis.Table | None:
        """Return quarantined rows (all kinds by default), or None if there are none."""
        files = self.lake_store.quarantine_files(kind)
        if not files:
            return None
        return self._read_parquet([str(p) for p in files], "lake_quarantine")

    def _read_parquet(self, paths: list[str], name: str) -> ibis.Table:
        if self.name == "duckdb":
            return self.con.read_parquet(
                paths, table_name=name, hive_partitioning=False, union_by_name=True
            )
        return self.con.read_parquet(paths, table_name=name)

    def scratch(self) -> Any:
        """Return an in-memory DuckDB backend for staging work (ingest)."""
        con = ibis.duckdb.connect(threads=self.workspace.config.engine.threads)
        con.raw_sql("SET preserve_insertion_order = false")
        return con

    def save(self, name: str, data: ibis.Table | pa.Table) -> ibis.Table:
        """Store ``data`` as warehouse table ``name`` (replacing it) and return it."""
        if isinstance(data, pa.Table):
            data = ibis.memtable(data)
        self.con.create_table(name, data, overwrite=True)
        return self.con.table(name)

    def table(self, name: str) -> ibis.Table:
        """Return warehouse table ``name``.

        Raises
        ------
        WorkspaceError
            If the table does not exist, naming the command that builds it.
        """
        if name not in self.con.list_tables():
            builder = {
                "profiles": "telcoreach profile",
                "tiers": "telcoreach segment",
                "scores": "telcoreach score",
            }.get(name, "the step that builds it")
            raise WorkspaceError(
                f"table {name!r} does not exist in {self.workspace.warehouse_path}; "
                f"run `{builder}` first"
            )
        return self.con.table(name)

    def has_table(self, name: str) -> bool:
        """Whether warehouse table ``name`` exists."""
        return name in self.con.list_tables()

    def to_parquet(self, expr: ibis.Table, path: Path) -> None:
        """Write an expression's result to one Parquet file."""
        self.con.to_parquet(expr, str(path))

    def close(self) -> None:
        """Close the backend connection."""
        if self._con is not None and self.name == "duckdb":
            self._con.disconnect()
        self._con = None
