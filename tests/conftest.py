"""Shared fixtures (each section owned by the part it serves; append, do not reorder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# --- data (bench/data.py) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench_data_dir() -> Path:
    """The real data folder (``$BENCH_DATA_DIR``; CI sets it); tests that need it skip without."""
    value = os.environ.get("BENCH_DATA_DIR")
    if not value:
        pytest.skip("BENCH_DATA_DIR is unset: point it at the shared data folder (CI sets it)")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"BENCH_DATA_DIR={value} is not a directory")
    return path
