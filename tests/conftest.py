"""Shared fixtures: the public data folder and small generated inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _datasets_dir() -> Path:
    return Path(os.environ.get("TELCOREACH_DATA", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The real public data sets, or skip when they are not on this machine."""
    path = _datasets_dir()
    if not path.is_dir():
        pytest.skip(
            f"real public data not found at {path}: these tests read "
            "../shared/datasets (set TELCOREACH_DATA to another folder)"
        )
    return path


@pytest.fixture(scope="session")
def spark_session():
    """One local Spark session (2 threads) shared by every Spark test.

    Skips only when PySpark is not installed; with PySpark but no usable Java
    the tests fail, since CI installs PySpark to test the Spark engine.
    """
    import shutil
    import sys

    pyspark_sql = pytest.importorskip("pyspark.sql", reason="PySpark not installed")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail(
            "PySpark is installed but no Java runtime was found: install Java 17 "
            "or 21 (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME",
            pytrace=False,
        )
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("telcoreach-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
