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
