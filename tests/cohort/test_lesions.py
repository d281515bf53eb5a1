"""Several lesions per mask: counted in mm³, the largest kept or each written as its own row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from rccgrade.cohort.io import read_mask
from rccgrade.cohort.lesions import apply_lesion_policy, find_lesions, lesion_mask
from rccgrade.cohort.manifest import load_cohort
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.validate import validate_cohort
from rccgrade.errors import CohortError
from rccgrade.parallel import ParallelSettings

from .conftest import CaseWriter, make_ct

SERIAL = ParallelSettings(backend="serial")
SIZE, SPACING = (40, 24, 12), (0.8, 0.8, 2.0)


def _ball(ct: sitk.Image, centre_idx: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels within ``radius_mm`` of a voxel-index centre (x, y, z), array (z, y, x) uint8."""
    z, y, x = np.indices(sitk.GetArrayViewFromImage(ct).shape)
    sx, sy, sz = ct.GetSpacing()
    cx, cy, cz = centre_idx
    d2 = ((x - cx) * sx) ** 2 + ((y - cy) * sy) ** 2 + ((z - cz) * sz) ** 2
    return (d2 <= radius_mm**2).astype(np.uint8)


def _image(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(like)
    return img


@pytest.fixture
def two_lesions() -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    ct = make_ct(size=SIZE, spacing=SPACING)
    big = _ball(ct, (9, 11, 6), 5.0)
    small = _ball(ct, (30, 12, 6), 3.5)
    return ct, big, small


def test_lesions_are_counted_and_measured_in_mm3(two_lesions) -> None:
    ct, big, small = two_lesions
    arr = big | small
    arr[0, 0, 0] = 1  # a one-voxel speck (1.28 mm³)
    found = find_lesions(_image(arr, ct), min_volume_mm3=10.0)
    voxel = 0.8 * 0.8 * 2.0
    assert found.count == 2
    assert found.volumes_mm3 == pytest.approx((big.sum() * voxel, small.sum() * voxel))
    assert found.speck_volumes_mm3 == pytest.approx((voxel,))
    np.testing.assert_array_equal(found.labels == 1, big.astype(bool))
    np.testing.assert_array_equal(found.labels == 2, small.astype(bool))
    assert find_lesions(_image(arr, ct), min_volume_mm3=0.0).count == 3
    # corner-touching voxels are one lesion with 26-connectivity, two with 6
    diag = np.zeros_like(arr)
    diag[3, 3, 3] = diag[4, 4, 4] = 1
    assert find_lesions(_image(diag, ct), min_volume_mm3=0).count == 1
    assert find_lesions(_image(diag, ct), min_volume_mm3=0, connectivity=6).count == 2


def test_shape_features_of_each_lesion_equal_those_of_that_lesion_alone(two_lesions) -> None:
    from radiomics import shape

    ct, big, small = two_lesions
    both = _image(big | small, ct)
    found = find_lesions(both)

    def features(mask: sitk.Image) -> dict[str, float]:
        extractor = shape.RadiomicsShape(ct, mask, label=1)
        extractor.enableAllFeatures()
        return {k: float(np.real(v)) for k, v in extractor.execute().items()}

    for number, alone in ((1, big), (2, small)):
        assert features(lesion_mask(both, found, number)) == pytest.approx(features(_image(alone, ct)))
    # the merged mask's maximum diameter spans the two lesions: why lesions are split
    assert features(both)["Maximum3DDiameter"] > 2 * features(_image(big, ct))["Maximum3DDiameter"]


def _cohort(tmp_path: Path, two_lesions, split: bool = True) -> Path:
    ct, big, small = two_lesions
    writer = CaseWriter(tmp_path / "in")
    writer.write("P1", ext=".nii.gz", arterial=ct, mask=_image(big | small, ct))
    writer.write("P2", ext=".nii.gz", arterial=ct, mask=_image(small, ct))
    extra = {"split": ["train", "test"]} if split else {}
    return writer.manifest(**extra)


def test_validate_reports_multiple_lesions(tmp_path: Path, two_lesions) -> None:
    manifest = _cohort(tmp_path, two_lesions)
    report = validate_cohort(manifest, parallel=SERIAL)
    rows = report.problems[report.problems["code"] == "multiple_lesions"]
    assert list(rows["patient_id"]) == ["P1"] and list(rows["severity"]) == ["warning"]
    assert "2 lesions" in rows["message"].iloc[0]
    assert report.ok
    strict = validate_cohort(manifest, parallel=SERIAL, settings=CohortSettings(lesions="error"))
    assert strict.unusable == ["P1"]


def test_largest_policy_keeps_the_bigger_lesion_and_passes_validate(tmp_path: Path, two_lesions) -> None:
    _, big, small = two_lesions
    result = apply_lesion_policy(_cohort(tmp_path, two_lesions), tmp_path / "out", policy="largest")
    cohort = load_cohort(result.manifest)
    assert cohort.patient_ids == ["P1", "P2"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(cohort["P1"].mask)), big)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(cohort["P2"].mask)), small)
    report = validate_cohort(result.manifest, parallel=SERIAL)
    assert report.ok and "multiple_lesions" not in set(report.problems["code"])
    fates = pd.read_csv(result.report)
    assert list(fates["fate"]) == ["kept", "dropped (not the largest)", "kept"]


def test_each_policy_writes_one_row_per_lesion_with_the_patient_split(tmp_path: Path, two_lesions) -> None:
    small = two_lesions[2]
    result = apply_lesion_policy(_cohort(tmp_path, two_lesions), tmp_path / "out", policy="each")
    frame = pd.read_csv(result.manifest, dtype=str)
    assert list(frame["patient_id"]) == ["P1_L1", "P1_L2", "P2"]
    assert list(frame["split"]) == ["train", "train", "test"]
    assert list(frame["source_patient_id"]) == ["P1", "P1", "P2"]
    cohort = load_cohort(result.manifest)
    assert "source_patient_id" not in cohort.clinical_types
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(cohort["P1_L2"].mask)), small)
    assert validate_cohort(result.manifest, parallel=SERIAL).ok
    with pytest.raises(CohortError, match="split"):
        apply_lesion_policy(_cohort(tmp_path / "b", two_lesions, split=False), tmp_path / "out2", policy="each")
    with pytest.raises(CohortError, match="2 lesions"):
        apply_lesion_policy(_cohort(tmp_path / "c", two_lesions), tmp_path / "out3", policy="error")


def test_lesions_command_writes_the_new_manifest(tmp_path: Path, two_lesions) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    manifest = _cohort(tmp_path, two_lesions)
    result = CliRunner().invoke(app, ["lesions", str(manifest), "--out", str(tmp_path / "o"), "--policy", "each"])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "o" / "manifest.csv")["patient_id"]) == ["P1_L1", "P1_L2", "P2"]
    bad = CliRunner().invoke(app, ["lesions", str(manifest), "--out", str(tmp_path / "x"), "--policy", "merge"])
    assert bad.exit_code == 2 and "unknown lesion policy" in bad.output
