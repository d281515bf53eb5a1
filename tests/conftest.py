"""Shared pytest fixtures: paths to the independent reference data and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("RCCGRADE_REFERENCE", ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (skips the test with a reason when it is missing)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"independent reference data not found at {REFERENCE}")
    return REFERENCE
