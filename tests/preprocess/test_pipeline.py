"""The stage end to end on tiny phantoms: outputs, contract, cache, determinism, failures, fewer phases, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from rccgrade.cohort.types import Case, Cohort
from rccgrade.errors import PreprocessError
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess import PreprocessSettings, load_slices, registered_paths, run_preprocess

from .phantoms import write_case

SMALL = {"image_size": 48}


def _arrays(out: Path, rois: list[str]) -> dict[tuple[str, str], np.ndarray]:
    return {(roi, pid): arr for roi in rois for pid, arr in load_slices(out, roi).items()}


def test_stage_outputs_cache_and_determinism(tiny_cohort: Cohort, serial: ParallelSettings, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    settings = PreprocessSettings(**SMALL)
    res = run_preprocess(tiny_cohort, out, settings, serial)
    assert res.ok_ids == ["p01", "p02", "p03"], res.status
    assert res.status.set_index("patient_id").loc["p02", "reg_nephrographic"] == "registered"
    assert res.flagged_ids == []
    # contract: (K, 3, H, W) float32 in [0, 1], index.csv with one row per case and ROI
    first = _arrays(out, settings.rois)
    assert len(first) == 9
    for arr in first.values():
        assert arr.shape == (1, 3, 48, 48) and arr.dtype == np.float32
        assert arr.min() >= 0.0 and arr.max() <= 1.0
    index = pd.read_csv(out / "slices" / "index.csv")
    assert set(index.columns) >= {"patient_id", "roi", "path", "n_slices", "slice_indices"}
    assert len(index) == 9 and (index["n_slices"] == 1).all()
    # registered NIfTIs on the mask grid for radiomics
    paths = registered_paths(out, "p02")
    assert set(paths) == {"arterial", "nephrographic", "excretory", "mask"}
    a = sitk.ReadImage(str(paths["nephrographic"]))
    m = sitk.ReadImage(str(paths["mask"]))
    assert a.GetSize() == m.GetSize() and np.allclose(a.GetOrigin(), m.GetOrigin())
    # QC outputs exist
    assert (out / "qc" / "p01.png").is_file() and res.qc_sheet is not None and res.qc_sheet.is_file()
    reg = pd.read_csv(out / "registration.csv")
    assert {"metric_before", "metric_after", "status", "tx_mm", "rz_deg"} <= set(reg.columns)

    # re-run: everything from the cache, files untouched, identical arrays
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "slices").rglob("*.npy")}
    again = run_preprocess(tiny_cohort, out, settings, serial)
    assert again.status["cached"].all()
    assert {p: p.stat().st_mtime_ns for p in (out / "slices").rglob("*.npy")} == mtimes
    # recompute from scratch: bitwise identical (seeded, single-threaded registration); QC (not part
    # of the cache key) off to keep the test fast
    settings = settings.model_copy(update={"qc": False})
    shutil.rmtree(out)
    fresh = run_preprocess(tiny_cohort, out, settings, serial)
    assert not fresh.status["cached"].any()
    second = _arrays(out, settings.rois)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])

    # a changed input recomputes only that case
    case = tiny_cohort["p03"]
    img = sitk.ReadImage(str(case.images["excretory"]))
    sitk.WriteImage(img + 1.0, str(case.images["excretory"]))
    partial = run_preprocess(tiny_cohort, out, settings, serial).status.set_index("patient_id")["cached"]
    assert partial.to_dict() == {"p01": True, "p02": True, "p03": False}


def test_corrupt_case_is_reported_and_others_complete(tmp_path: Path, serial: ParallelSettings) -> None:
    good = write_case(tmp_path / "data", "ok1", seed=1)
    bad = write_case(tmp_path / "data", "bad", seed=2)
    bad.images["nephrographic"].write_bytes(b"not a nifti at all")
    no_mask_phase = Case("nomask", {"nephrographic": good.images["nephrographic"]}, good.mask)
    settings = PreprocessSettings(image_size=32, qc=True)
    res = run_preprocess(Cohort(cases=[bad, good, no_mask_phase, good]), tmp_path / "out", settings, serial)
    assert res.ok_ids == ["ok1"]
    assert res.failed_ids == ["bad", "nomask", "ok1"]  # the repeated id fails, its first row is kept
    assert "duplicate" in res.status.iloc[-1]["error"]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv").set_index("patient_id")["error"]
    assert "bad" in failures["bad"] and "nephrographic" in failures["bad"]
    assert "arterial" in failures["nomask"]
    assert set(load_slices(tmp_path / "out", "box")) == {"ok1"}
    assert (tmp_path / "out" / "qc" / "cohort_sheet.png").is_file()
    with pytest.raises(PreprocessError, match="bad"):
        registered_paths(tmp_path / "out", "bad")


def test_single_phase_cohort_repeats_channels(tmp_path: Path, serial: ParallelSettings) -> None:
    case = write_case(tmp_path / "data", "solo", phases=("arterial",), seed=4)
    res = run_preprocess(Cohort(cases=[case]), tmp_path / "out", PreprocessSettings(image_size=32, qc=False), serial)
    assert res.ok_ids == ["solo"]
    arr = load_slices(tmp_path / "out", "tumour")["solo"]
    np.testing.assert_array_equal(arr[:, 0], arr[:, 1])
    np.testing.assert_array_equal(arr[:, 0], arr[:, 2])
    assert res.index["channels"].iloc[0] == "arterial,arterial,arterial"


def test_registration_disabled_keeps_identity(tmp_path: Path, serial: ParallelSettings) -> None:
    from rccgrade.preprocess.settings import RegistrationSettings

    case = write_case(tmp_path / "data", "p", seed=1)
    settings = PreprocessSettings(image_size=32, qc=False, registration=RegistrationSettings(enabled=False))
    res = run_preprocess(Cohort(cases=[case]), tmp_path / "out", settings, serial)
    row = res.status.iloc[0]
    assert row["reg_nephrographic"] == "skipped" and row["reg_excretory"] == "skipped"
    # the registered nephrographic phase is the input itself (same grid, identity), stored as int16 HU
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(registered_paths(tmp_path / "out", "p")["nephrographic"])))
    want = sitk.GetArrayFromImage(sitk.ReadImage(str(case.images["nephrographic"])))
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, np.round(want))


def test_cli_preprocess(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    cases = [write_case(tmp_path / "data", f"c{i}", seed=i) for i in range(2)]
    rows = [
        {
            "patient_id": c.patient_id,
            **{p: str(path.relative_to(tmp_path)) for p, path in c.images.items()},
            "mask": str(c.mask.relative_to(tmp_path)),
            "grade": 2,
        }
        for c in cases
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "preprocess",
            str(tmp_path / "manifest.csv"),
            "--out",
            str(tmp_path / "out"),
            "-j",
            "1",
            "--no-qc",
            "--no-register",
            "--size",
            "24",
            "--roi",
            "tumour",
            "--roi",
            "dilated3mm",
        ],
    )
    assert result.exit_code == 0, result.output
    assert set(load_slices(tmp_path / "out", "dilated3mm")) == {"c0", "c1"}
    assert load_slices(tmp_path / "out", "tumour")["c0"].shape == (1, 3, 24, 24)


def test_cli_rejects_bad_roi_with_clear_message(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    case = write_case(tmp_path / "data", "c0", seed=0)
    pd.DataFrame(
        [{"patient_id": "c0", **{p: str(v) for p, v in case.images.items()}, "mask": str(case.mask), "grade": 2}]
    ).to_csv(tmp_path / "manifest.csv", index=False)
    result = CliRunner().invoke(
        app, ["preprocess", str(tmp_path / "manifest.csv"), "--out", str(tmp_path / "out"), "--roi", "ring"]
    )
    assert result.exit_code == 2
    assert "unknown ROI setting" in result.output and "ring" in result.output
