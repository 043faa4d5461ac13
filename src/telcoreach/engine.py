"""The batch engine edge: the only module that opens DuckDB or PySpark.

Everything else builds Ibis expressions and hands them here to be read from
the lake, stored in the warehouse or executed. On DuckDB the warehouse is the
workspace's DuckDB file; on Spark it is one Parquet folder per table under
``<workspace>/spark-warehouse``, so that every command (a new session) finds
the tables of the one before. ``docs/scaling.md`` explains running on Spark.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

from telcoreach.config import EngineConfig
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
        self._spark: Any = None

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
            self._spark = _spark_session(settings, self.workspace)
            return ibis.pyspark.connect(self._spark)
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
        # Ibis reads one path on Spark; the lake lists files, so read them here.
        # Batches may add columns over time: merge their schemas as DuckDB does.
        # file:// URIs: on a cluster whose default file system is HDFS, a bare
        # path would be looked up there instead of on the shared workspace.
        uris = [_file_uri(path) for path in paths]
        frame = self._session().read.option("mergeSchema", "true").parquet(*uris)
        view = self._view_name(name)
        frame.createOrReplaceTempView(view)
        return self.con.table(view)

    def _session(self) -> Any:
        """Return the Spark session of this engine (connecting first)."""
        _ = self.con
        return self._spark

    def _view_name(self, name: str) -> str:
        """Return a Spark view name unique to this workspace.

        One Spark session may serve several workspaces (a notebook, the test
        suite); lazy expressions name their views, so names must not collide.
        """
        digest = hashlib.sha1(str(self.workspace.root.resolve()).encode()).hexdigest()
        return f"{name}_{digest[:10]}"

    def _spark_table_dir(self, name: str) -> Path:
        return self.workspace.root / "spark-warehouse" / name

    def scratch(self) -> Any:
        """Return an in-memory DuckDB backend for staging work (ingest).

        It keeps to the configured memory limit and spills to
        ``<workspace>/tmp`` beyond it, so that a large batch does not grow the
        process without bound.
        """
        settings = self.workspace.config.engine
        spill = self.workspace.root / "tmp"
        spill.mkdir(exist_ok=True)
        con = ibis.duckdb.connect(
            threads=settings.threads,
            memory_limit=settings.memory_limit,
            temp_directory=str(spill),
        )
        con.raw_sql("SET preserve_insertion_order = false")
        return con

    def save(self, name: str, data: ibis.Table | pa.Table) -> ibis.Table:
        """Store ``data`` as warehouse table ``name`` (replacing it) and return it.

        On Spark a warehouse table is a Parquet folder under
        ``<workspace>/spark-warehouse/<name>``, so that the next command (a new
        Spark session without a shared metastore) finds it again.
        """
        if self.name == "duckdb":
            if isinstance(data, pa.Table):
                data = ibis.memtable(data)
            self.con.create_table(name, data, overwrite=True)
            return self.con.table(name)
        target = self._spark_table_dir(name)
        staged = target.with_name(f"_{name}.writing")
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(data, pa.Table):
            # Written by Arrow, not through pandas: nullable integers stay integers.
            staged.mkdir(parents=True)
            pq.write_table(data, staged / "part-00000.parquet")
        else:
            self.con.to_parquet(data, _file_uri(staged))
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
        return self._read_parquet([str(target)], name)

    def table(self, name: str) -> ibis.Table:
        """Return warehouse table ``name``.

        Raises
        ------
        WorkspaceError
            If the table does not exist, naming the command that builds it.
        """
        if not self.has_table(name):
            builder = {
                "profiles": "telcoreach profile",
                "tiers": "telcoreach segment",
                "scores": "telcoreach score",
            }.get(name, "the step that builds it")
            where = (
                self._spark_table_dir(name).parent
                if self.name == "spark"
                else self.workspace.warehouse_path
            )
            if self.name == "spark" and builder.startswith("telcoreach"):
                builder += " --engine spark"
            raise WorkspaceError(
                f"table {name!r} does not exist in {where}; run `{builder}` first"
            )
        if self.name == "spark":
            return self._read_parquet([str(self._spark_table_dir(name))], name)
        return self.con.table(name)

    def has_table(self, name: str) -> bool:
        """Whether warehouse table ``name`` exists."""
        if self.name == "spark":
            return self._spark_table_dir(name).is_dir()
        return name in self.con.list_tables()

    def to_parquet(self, expr: ibis.Table, path: Path) -> None:
        """Write an expression's result to one Parquet file."""
        if self.name == "duckdb":
            self.con.to_parquet(expr, str(path))
            return
        frame = self._session().sql(self.con.compile(expr))
        with tempfile.TemporaryDirectory(dir=Path(path).parent) as folder:
            out = _file_uri(Path(folder) / "out")
            frame.coalesce(1).write.mode("overwrite").parquet(out)
            (part,) = Path(folder, "out").glob("part-*.parquet")
            os.replace(part, path)

    def to_pyarrow_batches(
        self, expr: ibis.Table, rows: int = 1_000_000
    ) -> Iterator[pa.RecordBatch]:
        """Yield an expression's result in record batches of about ``rows`` rows.

        DuckDB streams them; Spark collects the result on the driver first
        (Arrow, no pandas), so keep what is fetched small there.
        """
        if self.name == "duckdb":
            reader = self.con.to_pyarrow_batches(expr, chunk_size=rows)
            yield from reader
            return
        frame = self._session().sql(self.con.compile(expr))
        table = frame.toArrow()
        table = table.rename_columns(list(expr.columns))
        yield from table.to_batches(max_chunksize=rows)

    def close(self) -> None:
        """Close the backend connection."""
        if self._con is not None and self.name == "duckdb":
            self._con.disconnect()
        self._con = None


def _file_uri(path: str | Path) -> str:
    """Return a local path as an absolute ``file://`` URI (URIs pass unchanged).

    Not percent-encoded: Hadoop parses the path itself, and would read the
    ``%3D`` of an encoded ``day=`` folder literally.
    """
    text = str(path)
    return text if "://" in text else f"file://{Path(text).resolve()}"


def _spark_session(settings: EngineConfig, workspace: Workspace) -> Any:
    """Return the active Spark session, or start one for ``settings``.

    An existing session (a notebook's, a test's, one made by ``spark-submit``)
    is reused as it is. A new local session binds to 127.0.0.1, runs without
    its web UI and with a few shuffle partitions per thread; a cluster session
    (``spark_master`` not ``local``) keeps the cluster's own settings
    (``spark-defaults.conf``) except the time zone, which must be UTC for
    times to match DuckDB's.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError(
            "engine 'spark' needs PySpark; install it with "
            "`pip install 'telcoreach[spark]'`"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    # Executors must run this interpreter (with numba, pyarrow...).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = settings.spark_master
    builder = (
        SparkSession.builder.master(master)
        .appName("telcoreach")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.warehouse.dir", str(workspace.root / "spark-warehouse"))
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(4 * settings.threads))
            .config("spark.driver.memory", _jvm_size(settings.memory_limit))
            # The stay-point positions come back whole: Spark's 1 GB default
            # cap on results would stop a profile of about 15 M events.
            .config("spark.driver.maxResultSize", _jvm_size(settings.memory_limit))
        )
    try:
        session = builder.getOrCreate()
    except Exception as error:  # Py4J/launcher errors have no common type
        raise EngineError(
            f"could not start Spark (master {master!r}): {error}; Spark needs "
            "Java 17 or 21 on PATH (or JAVA_HOME) and PySpark >= 3.5"
        ) from error
    session.sparkContext.setLogLevel("ERROR")
    return session


def _jvm_size(memory_limit: str) -> str:
    """Return a configured size (``8GB``, ``512 MiB``) as a JVM size (``8192m``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT])i?B", memory_limit.strip())
    if match is None:
        raise EngineError(
            f"engine.memory_limit: expected a size like 8GB, found {memory_limit!r}"
        )
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[match.group(2)]
    return f"{max(int(float(match.group(1)) * scale), 512)}m"
