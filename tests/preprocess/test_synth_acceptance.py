"""Acceptance on the synthetic cohort: registration removes the applied misalignment (truth.csv).

Small (2 cases, ``small`` size) to stay fast; bench/preprocess.py runs the same check on more and
larger cases.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import rccgrade.synth as synth  # part of the package: missing is a failure, not a skip
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess import PreprocessSettings, load_slices, run_preprocess
from rccgrade.preprocess.qc import registration_residuals


@pytest.mark.slow
def test_residual_misalignment_below_one_voxel_on_synthetic_cases(tmp_path: Path) -> None:
    from rccgrade.cohort.manifest import load_cohort

    serial = ParallelSettings(backend="serial")
    manifest = synth.write_cohort(tmp_path / "cohort", n=2, seed=5, size="small", parallel=serial)
    cohort = load_cohort(manifest)
    result = run_preprocess(cohort, tmp_path / "pre", PreprocessSettings(image_size=32, qc=False), serial)
    assert len(result.ok_ids) == 2, result.status
    truth = pd.read_csv(manifest.parent / "truth.csv", dtype={"patient_id": str})
    res = registration_residuals(tmp_path / "pre", truth)
    assert len(res) == 4
    assert (res["before_mm"] > 0.5).any(), "the synthetic cohort applied no misalignment"
    assert (res["after_mm"] < res["voxel_mm"]).all(), res
    # smaller than before for every registration that was not flagged (a flagged one keeps identity)
    kept = ~res["status"].isin(["failed", "worsened", "implausible"])
    assert (res.loc[kept, "after_mm"] < res.loc[kept, "before_mm"]).all(), res
    assert set(load_slices(tmp_path / "pre", "dilated5mm")) == set(result.ok_ids)
