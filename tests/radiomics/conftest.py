"""Fixtures of the radiomics tests: tiny cases on disk and a fast parameter file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from radiomics_helpers import FAST_PARAMS, write_cases

from rccgrade.radiomics.extract import RadiomicsInput


@pytest.fixture()
def fast_params(tmp_path: Path) -> Path:
    """An original-image-only parameter file with resampling (fast, still exercises the grid)."""
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST_PARAMS))
    return path


@pytest.fixture()
def cases(tmp_path: Path) -> list[RadiomicsInput]:
    """Four tiny two-phase cases on disk."""
    return write_cases(tmp_path / "data", 4)
