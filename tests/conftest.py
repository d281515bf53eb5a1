"""Shared pytest fixtures: the independent reference data vendored in ``tests/data`` and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data"
"""Independent reference data (sources and licences in ``tests/data/README.md``)."""


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/data``: a missing folder is a failure, never a skip (the data is part of the repository)."""
    assert REFERENCE.is_dir(), f"reference data folder missing: {REFERENCE} (it is part of the repository)"
    return REFERENCE


def _reference_file(*parts: str) -> Path:
    path = REFERENCE.joinpath(*parts)
    assert path.is_file(), f"reference file missing: {path} (vendored in the repository; see tests/data/README.md)"
    return path


@pytest.fixture(scope="session")
def reference_file() -> Callable[..., Path]:
    """``reference_file("roc", "aSAH.csv")``: a file of ``tests/data``; a missing file fails, never skips."""
    return _reference_file
