"""Fixtures of the preprocessing tests: serial execution and a tiny three-case cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from rccgrade.cohort.types import Cohort
from rccgrade.parallel import ParallelSettings

from .phantoms import phantom, rigid, tumour_centre, write_case


@pytest.fixture
def serial() -> ParallelSettings:
    return ParallelSettings(backend="serial")


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Cohort:
    """Three aligned-phase cases (one with a small misalignment)."""
    _, m = phantom("arterial")
    c = tumour_centre(m)
    cases = [
        write_case(tmp_path / "data", "p01", seed=1),
        write_case(tmp_path / "data", "p02", {"nephrographic": rigid((0, 0, 2), (2, -1.5, 0), c)}, seed=2),
        write_case(tmp_path / "data", "p03", seed=3),
    ]
    return Cohort(cases=cases, root=tmp_path / "data")
