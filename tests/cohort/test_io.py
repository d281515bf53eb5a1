"""Image IO: files in every format, DICOM series (HU rescale, geometry, sorting, series choice)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from rccgrade.cohort.dicom import write_dicom_series
from rccgrade.cohort.io import image_geometry, read_image, read_image_information, read_mask
from rccgrade.errors import ImageError


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_file_formats_roundtrip(tmp_path: Path, ct_factory, ext: str) -> None:
    ct = ct_factory()
    path = tmp_path / f"ct{ext}"
    sitk.WriteImage(ct, str(path))
    img = read_image(path, patient_id="p1")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ct))
    g = image_geometry(img)
    assert g.size == (16, 16, 8)
    np.testing.assert_allclose(g.spacing, (0.8, 0.8, 2.0), rtol=1e-6)
    np.testing.assert_allclose(g.origin, (-6.0, -6.0, 10.0), atol=1e-5)
    header = read_image_information(path)
    assert header.size == g.size and header.dimension == 3 and header.components == 1


def test_missing_and_unreadable_files_name_patient_and_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"patient p7.*missing\.nrrd.*manifest") as info:
        read_image(tmp_path / "missing.nrrd", patient_id="p7")
    assert info.value.patient_id == "p7"
    garbage = tmp_path / "broken.nii.gz"
    garbage.write_bytes(b"this is not an image" * 10)
    with pytest.raises(ImageError, match=r"patient p8.*broken\.nii\.gz.*NIfTI"):
        read_image(garbage, patient_id="p8")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ImageError, match="no DICOM series"):
        read_image(empty, patient_id="p9")


def test_physical_bounds_of_rotated_image() -> None:
    img = sitk.Image(4, 2, 3, sitk.sitkInt16)
    img.SetSpacing((2.0, 1.0, 3.0))
    img.SetOrigin((10.0, 0.0, 0.0))
    img.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))  # x axis → +y world, y axis → -x world
    lo, hi = image_geometry(img).physical_bounds()
    # x index −0.5..3.5 (×2 mm) → world y −1..7; y index −0.5..1.5 (×1 mm) → world x 10.5..8.5
    np.testing.assert_allclose(lo, [8.5, -1.0, -1.5])
    np.testing.assert_allclose(hi, [10.5, 7.0, 7.5])


def _rotated_ct(ct_factory) -> sitk.Image:
    ct = ct_factory(size=(6, 5, 4), spacing=(0.7, 0.9, 2.5), origin=(12.5, -30.25, 101.0), seed=3)
    c, s = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
    ct.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))  # right-handed oblique
    return ct


def test_dicom_series_rescale_to_hu_and_geometry(tmp_path: Path, ct_factory) -> None:
    ct = _rotated_ct(ct_factory)
    hu = sitk.GetArrayFromImage(ct).astype(np.float64)
    hu[0, 0, 0] = -1024.5  # a value only a slope of 0.5 can hold
    src = sitk.GetImageFromArray(hu)
    src.CopyInformation(ct)
    folder = write_dicom_series(
        src,
        tmp_path / "dcm",
        patient_id="p1",
        series_description="arterial",
        rescale_slope=0.5,
        rescale_intercept=-1000.0,
    )

    # Independent check of the files: HU = stored * slope + intercept, by hand with pydicom.
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 4
    first = pydicom.dcmread(files[0])
    assert float(first.RescaleSlope) == 0.5 and float(first.RescaleIntercept) == -1000.0
    by_hand = first.pixel_array.astype(np.float64) * 0.5 - 1000.0
    np.testing.assert_allclose(by_hand, hu[0], atol=1e-9)
    assert [float(v) for v in first.PixelSpacing] == [0.9, 0.7]

    # Shuffle the file names so only ImagePositionPatient can give the order.
    for i, f in enumerate(reversed(files)):
        f.rename(folder / f"z{i:02d}_{f.name}")
    img = read_image(folder, patient_id="p1")
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), hu, atol=1e-6)
    g = image_geometry(img)
    np.testing.assert_allclose(g.spacing, (0.7, 0.9, 2.5), atol=1e-6)
    np.testing.assert_allclose(g.origin, (12.5, -30.25, 101.0), atol=1e-4)
    np.testing.assert_allclose(g.direction, ct.GetDirection(), atol=1e-6)
    assert img.GetPixelID() == sitk.sitkFloat32


def test_dicom_integer_hu_reads_as_int16(tmp_path: Path, ct_factory) -> None:
    ct = ct_factory()
    write_dicom_series(ct, tmp_path, patient_id="p2", series_description="venous")  # slope 1, intercept −1024
    img = read_image(tmp_path)
    assert img.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ct))


def test_dicom_writer_is_deterministic(tmp_path: Path, ct_factory) -> None:
    ct = ct_factory(size=(4, 4, 3))
    digests = []
    for run in ("a", "b"):
        folder = write_dicom_series(ct, tmp_path / run, patient_id="p3", series_description="arterial")
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())])
    assert digests[0] == digests[1]
    given = write_dicom_series(
        ct, tmp_path / "c", patient_id="p3", series_description="arterial", series_uid="1.2.3.4", study_uid="1.2.3"
    )
    ds = pydicom.dcmread(next(given.iterdir()))
    assert ds.SeriesInstanceUID == "1.2.3.4" and ds.StudyInstanceUID == "1.2.3" and ds.PatientID == "p3"


def test_dicom_series_choice_largest_or_by_uid(tmp_path: Path, ct_factory) -> None:
    big = ct_factory(size=(8, 8, 6), seed=1)
    small = sitk.GetImageFromArray(np.full((3, 8, 8), 500, dtype=np.int16))
    write_dicom_series(big, tmp_path, patient_id="p4", series_description="big", series_uid="1.2.826.0.1.1")
    write_dicom_series(small, tmp_path, patient_id="p4", series_description="small", series_uid="1.2.826.0.1.2")
    default = read_image(tmp_path, patient_id="p4")
    assert default.GetSize() == (8, 8, 6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(default), sitk.GetArrayFromImage(big))
    chosen = read_image(tmp_path, patient_id="p4", series_uid="1.2.826.0.1.2")
    assert chosen.GetSize() == (8, 8, 3)
    assert int(sitk.GetArrayFromImage(chosen).max()) == 500
    with pytest.raises(
        ImageError, match=r"9\.9\.9 not found.*1\.2\.826\.0\.1\.1 \(6 files\).*1\.2\.826\.0\.1\.2 \(3 files\)"
    ):
        read_image(tmp_path, patient_id="p4", series_uid="9.9.9")


def test_read_mask_binary_255_and_labels(tmp_path: Path, ct_factory, mask_factory) -> None:
    ct = ct_factory()
    m255 = mask_factory(ct, value=255)
    sitk.WriteImage(m255, str(tmp_path / "m255.nrrd"))
    mask = read_mask(tmp_path / "m255.nrrd")
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(mask))) == {0, 1}
    assert int(sitk.GetArrayFromImage(mask).sum()) == 4 * 6 * 6

    multi = sitk.GetArrayFromImage(mask_factory(ct))
    multi[0, 0, :3] = 2  # a second label (e.g. kidney)
    mimg = sitk.GetImageFromArray(multi)
    mimg.CopyInformation(ct)
    sitk.WriteImage(mimg, str(tmp_path / "multi.nrrd"))
    with pytest.raises(ImageError, match=r"not binary.*\[1, 2\].*--label"):
        read_mask(tmp_path / "multi.nrrd", patient_id="p5")
    only2 = read_mask(tmp_path / "multi.nrrd", label=2)
    assert int(sitk.GetArrayFromImage(only2).sum()) == 3
    with pytest.raises(ImageError, match=r"label 3 not found.*\[1, 2\]"):
        read_mask(tmp_path / "multi.nrrd", label=3)
    empty = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    sitk.WriteImage(empty, str(tmp_path / "empty.nrrd"))
    with pytest.raises(ImageError, match="empty"):
        read_mask(tmp_path / "empty.nrrd")


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path: Path, ct_factory) -> None:
    folder = write_dicom_series(ct_factory(), tmp_path, patient_id="p6", series_description="arterial")
    files = sorted(folder.glob("*.dcm"))
    assert len(read_image_information(folder).size) == 3
    files[3].unlink()
    with pytest.raises(ImageError, match=r"patient p6.*unevenly spaced slices \(gaps of 4 mm where 2 mm"):
        read_image(folder, patient_id="p6")
