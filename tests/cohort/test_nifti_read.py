"""One-pass reading of gzip NIfTI (cohort.nifti_read): the image ITK gives, verified against the gzip trailer."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from rccgrade.cohort.io import distinct_values, read_image, read_mask
from rccgrade.cohort.nifti_read import _trailer_check, read_checked
from rccgrade.errors import ImageError


def _image(dtype: type, seed: int = 0, shape: tuple[int, int, int] = (7, 12, 10)) -> sitk.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1000, size=shape).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-12.5, 30.25, -100.0))
    angle = np.radians(20.0)
    img.SetDirection((np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0))
    return img


def _same(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetPixelID() == b.GetPixelID()
    assert a.GetSize() == b.GetSize()
    assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
    assert a.GetDirection() == b.GetDirection()
    assert sorted(a.GetMetaDataKeys()) == sorted(b.GetMetaDataKeys())
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8, np.int32])
def test_one_pass_read_is_itks_image_and_verified_by_the_trailer(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(_image(dtype), str(path), useCompression=True)
    found, image = read_checked(path)
    assert found.ok and image is not None
    _same(image, sitk.ReadImage(str(path)))
    assert _trailer_check(path, image) is not None  # the cheap path was taken
    assert found.stored_voxels == found.expected_voxels == 7 * 12 * 10


def test_other_layouts_fall_back_to_the_full_check(tmp_path: Path) -> None:
    """Several gzip members (pigz): the trailer covers only the last one; the full check still passes it."""
    raw = tmp_path / "a.nii"
    sitk.WriteImage(_image(np.int16), str(raw))
    data = raw.read_bytes()
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    found, image = read_checked(multi)
    assert found.ok and image is not None
    assert _trailer_check(multi, image) is None
    _same(read_image(multi), sitk.ReadImage(str(raw)))
    # uncompressed: only the header is checked here, the caller reads it
    found, image = read_checked(raw)
    assert found.ok and image is None


def test_a_cut_or_a_bad_crc_is_refused_although_itk_reads_it(tmp_path: Path) -> None:
    """Files large enough that ITK reads the header without meeting the damage (as with real CTs)."""
    path = tmp_path / "a.nii.gz"
    big = _image(np.int16, shape=(24, 64, 64))
    sitk.WriteImage(big, str(path), useCompression=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 400])
    cut = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # control: ITK reads it, zero-filling the end
    assert (cut.ravel()[-20:] == 0).all()
    with pytest.raises(ImageError, match="could be read") as info:
        read_image(path, patient_id="P3")
    assert "patient P3" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ImageError, match="mask is incomplete"):
        read_mask(path, patient_id="P3")
    bad = bytearray(data)
    bad[-6] ^= 0xFF  # the CRC-32 of the trailer
    path.write_bytes(bytes(bad))
    with pytest.raises(ImageError, match="incorrect data check"):
        read_image(path, patient_id="P3")


def test_distinct_values_equal_numpy_unique() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16, np.int8, np.int16, np.int32, np.float32):
        lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else (-5, 5)
        arr = rng.integers(lo, hi, size=(30, 40), endpoint=True).astype(dtype)
        arr[0, :3] = [lo, hi, 0]
        got = distinct_values(arr)
        assert got.dtype == np.unique(arr).dtype
        np.testing.assert_array_equal(got, np.unique(arr))
