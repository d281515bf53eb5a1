"""Written cohorts: manifest contract, truth file, formats, determinism, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from rccgrade.errors import RccgradeError
from rccgrade.parallel import ParallelSettings
from rccgrade.synth import CLINICAL_COLUMNS, LATENT_FACTORS, generate_case, write_cohort

SERIAL = ParallelSettings(backend="serial")
PHASES = ("arterial", "nephrographic", "excretory")


@pytest.fixture(scope="module")
def nifti_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("nifti"), n=3, seed=21, parallel=SERIAL)


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cohort(tmp_path_factory.mktemp("dicom"), n=2, seed=21, fmt="dicom", parallel=SERIAL)


def test_manifest_contract(nifti_cohort: Path) -> None:
    assert nifti_cohort.name == "manifest.csv"
    m = pd.read_csv(nifti_cohort)
    assert list(m.columns[:6]) == ["patient_id", *PHASES, "mask", "grade"]
    assert {"center", *CLINICAL_COLUMNS} <= set(m.columns)
    assert m["patient_id"].tolist() == ["syn0000", "syn0001", "syn0002"]
    assert m["grade"].between(1, 4).all()
    for col in (*PHASES, "mask"):
        for rel in m[col]:
            assert not Path(rel).is_absolute()
            assert (nifti_cohort.parent / rel).is_file()
    assert m.loc[0, "arterial"] == "images/syn0000/arterial.nii.gz"
    # The manifest carries no ground truth beyond the grade.
    assert not {"p_high", "high_grade", *(f"z_{f}" for f in LATENT_FACTORS)} & set(m.columns)


def test_truth_file(nifti_cohort: Path) -> None:
    truth = pd.read_csv(nifti_cohort.parent / "truth.csv")
    m = pd.read_csv(nifti_cohort)
    assert truth["patient_id"].tolist() == m["patient_id"].tolist()
    assert (truth["grade"] == m["grade"]).all()
    for col in ("p_high", *(f"z_{f}" for f in LATENT_FACTORS)):
        assert truth[col].notna().all(), col
    for phase in ("nephrographic", "excretory"):
        for a in "xyz":
            assert f"{phase}_t{a}_mm" in truth and f"{phase}_r{a}_deg" in truth and f"{phase}_c{a}_mm" in truth


def test_written_images_equal_generated_case(nifti_cohort: Path) -> None:
    case = generate_case(2, 21)  # regenerated alone
    folder = nifti_cohort.parent / "images" / "syn0002"
    for phase in PHASES:
        img = sitk.ReadImage(str(folder / f"{phase}.nii.gz"))
        assert img.GetPixelID() == sitk.sitkInt16
        expected = np.clip(np.rint(case.array(phase)), -1024, 3071)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img), expected)
        np.testing.assert_allclose(img.GetOrigin(), case.images[phase].GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(img.GetSpacing(), case.images[phase].GetSpacing(), rtol=1e-6)
    mask = sitk.ReadImage(str(folder / "mask.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), case.mask_array())


def test_dicom_reads_back_equal_to_nifti(nifti_cohort: Path, dicom_cohort: Path) -> None:
    from rccgrade.cohort.io import read_image

    m = pd.read_csv(dicom_cohort)
    assert m.loc[0, "arterial"] == "images/syn0000/arterial"
    assert m.loc[0, "mask"].endswith(".nii.gz")
    for phase in PHASES:
        for pid in ("syn0000", "syn0001"):
            d = read_image(dicom_cohort.parent / "images" / pid / phase, patient_id=pid)
            n = read_image(nifti_cohort.parent / "images" / pid / f"{phase}.nii.gz", patient_id=pid)
            assert d.GetSize() == n.GetSize()
            np.testing.assert_allclose(d.GetSpacing(), n.GetSpacing(), rtol=1e-5)
            np.testing.assert_allclose(d.GetOrigin(), n.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(d.GetDirection(), n.GetDirection(), atol=1e-6)
            diff = np.abs(sitk.GetArrayFromImage(d).astype(float) - sitk.GetArrayFromImage(n).astype(float))
            assert diff.max() <= 0.5


def test_cohort_loads_and_validates(nifti_cohort: Path, dicom_cohort: Path) -> None:
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.validate import validate_cohort

    for manifest in (nifti_cohort, dicom_cohort):
        cohort = load_cohort(manifest)
        assert len(cohort) == len(pd.read_csv(manifest))
        case = cohort.cases[0]
        assert set(case.images) >= set(PHASES)
        assert case.grade in (1, 2, 3, 4) and case.high_grade == int(case.grade >= 3)
        assert case.center in ("A", "B", "C")
        assert cohort.clinical_types.get("sex") == "categorical"
        report = validate_cohort(cohort, parallel=SERIAL)
        assert report.ok, report.problems


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(RccgradeError, match="at least 1"):
        write_cohort(tmp_path, n=0, seed=0)
    with pytest.raises(RccgradeError, match="unknown format"):
        write_cohort(tmp_path, n=1, seed=0, fmt="png")
    with pytest.raises(RccgradeError, match="unknown size"):
        write_cohort(tmp_path, n=1, seed=0, size="xl")


def test_cli_writes_cohort(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "c"), "--n", "1", "--seed", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "manifest.csv").is_file() and (tmp_path / "c" / "truth.csv").is_file()
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "d"), "--n", "1", "--format", "png"])
    assert bad.exit_code == 2
    assert "unknown format" in bad.output


def test_rewrite_replaces_synthetic_but_refuses_foreign_cohort(tmp_path: Path) -> None:
    write_cohort(tmp_path / "a", n=2, seed=1, parallel=SERIAL)
    write_cohort(tmp_path / "a", n=1, seed=1, parallel=SERIAL)
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == ["syn0000"]
    foreign = tmp_path / "real"
    foreign.mkdir()
    (foreign / "manifest.csv").write_text("patient_id,arterial\n")
    with pytest.raises(RccgradeError, match="did not write"):
        write_cohort(foreign, n=1, seed=0, parallel=SERIAL)
    assert (foreign / "manifest.csv").read_text() == "patient_id,arterial\n"
