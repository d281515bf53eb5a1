"""Canonical orientation first: a NIfTI stored with a flipped axis and its DICOM twin give identical arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.dicom import write_dicom_series
from rccgrade.cohort.io import read_image
from rccgrade.cohort.types import Case, Cohort
from rccgrade.preprocess.orientation import orientation_code, to_canonical
from rccgrade.preprocess.pipeline import run_preprocess
from rccgrade.preprocess.settings import PreprocessSettings, RegistrationSettings
from rccgrade.preprocess.slices import load_slices

from .phantoms import phantom


def flipped_storage(image: sitk.Image, axis: int) -> sitk.Image:
    """The same physical image stored with index axis ``axis`` (0 = x) reversed."""
    arr = sitk.GetArrayFromImage(image)
    np_axis = 2 - axis
    flipped = sitk.GetImageFromArray(np.flip(arr, axis=np_axis).copy())
    flipped.SetSpacing(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    direction[:, axis] *= -1
    last = [0, 0, 0]
    last[axis] = image.GetSize()[axis] - 1
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint(last))
    flipped.SetDirection(direction.ravel().tolist())
    return flipped


def _int_phantom(phase: str) -> tuple[sitk.Image, sitk.Image]:
    img, mask = phantom(phase, size=(40, 36, 12), spacing=(1.2, 1.2, 3.0))
    return sitk.Cast(sitk.Round(img), sitk.sitkInt16), mask


def test_flipped_nifti_and_dicom_twin_are_identical_after_canonical(tmp_path: Path) -> None:
    img, _ = _int_phantom("arterial")
    flipped = flipped_storage(flipped_storage(img, 0), 2)
    assert orientation_code(flipped) != "LPS"
    sitk.WriteImage(flipped, str(tmp_path / "a.nii.gz"))
    write_dicom_series(img, tmp_path / "dcm", patient_id="P1", series_description="arterial")
    from_nifti = to_canonical(read_image(tmp_path / "a.nii.gz"))
    from_dicom = to_canonical(read_image(tmp_path / "dcm"))
    assert orientation_code(from_nifti) == orientation_code(from_dicom) == "LPS"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(from_nifti), sitk.GetArrayFromImage(from_dicom))
    np.testing.assert_allclose(from_nifti.GetOrigin(), from_dicom.GetOrigin(), atol=1e-4)
    # and the raw stored arrays did differ
    assert not np.array_equal(sitk.GetArrayFromImage(read_image(tmp_path / "a.nii.gz")), sitk.GetArrayFromImage(img))


def test_pipeline_gives_identical_slices_for_flipped_nifti_and_dicom(tmp_path: Path) -> None:
    images_a, images_b = {}, {}
    mask = None
    for phase in ("arterial", "nephrographic", "excretory"):
        img, m = _int_phantom(phase)
        mask = m if mask is None else mask
        pa = tmp_path / "nifti" / f"{phase}.nii.gz"
        pa.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(flipped_storage(img, 1), str(pa))
        images_a[phase] = pa
        images_b[phase] = write_dicom_series(img, tmp_path / "dicom" / phase, patient_id="B", series_description=phase)
    assert mask is not None
    sitk.WriteImage(flipped_storage(mask, 1), str(tmp_path / "nifti" / "mask.nii.gz"))
    sitk.WriteImage(mask, str(tmp_path / "mask_lps.nii.gz"))
    cohort = Cohort(
        cases=[
            Case("A", images_a, tmp_path / "nifti" / "mask.nii.gz"),
            Case("B", images_b, tmp_path / "mask_lps.nii.gz"),
        ]
    )
    settings = PreprocessSettings(image_size=32, qc=False, registration=RegistrationSettings(enabled=False))
    from rccgrade.parallel import ParallelSettings

    res = run_preprocess(cohort, tmp_path / "out", settings, ParallelSettings(backend="serial"))
    assert res.ok_ids == ["A", "B"], res.status
    for roi in settings.rois:
        arrays = load_slices(tmp_path / "out", roi)
        np.testing.assert_array_equal(arrays["A"], arrays["B"])
    idx = res.index.set_index(["patient_id", "roi"])
    assert idx.loc[("A", "box"), "slice_indices"] == idx.loc[("B", "box"), "slice_indices"]
