"""Branches of the image rules on one case at a time (check_case), including negative controls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from rccgrade.cohort.types import Case
from rccgrade.cohort.validate import CheckOptions, check_case

from .conftest import make_ct, make_mask


def _case(tmp_path: Path, arterial: sitk.Image, mask: sitk.Image | None = None) -> Case:
    sitk.WriteImage(arterial, str(tmp_path / "a.mha"))
    sitk.WriteImage(mask if mask is not None else make_mask(arterial), str(tmp_path / "m.mha"))
    return Case("p", {"arterial": tmp_path / "a.mha"}, tmp_path / "m.mha", grade=2, high_grade=0)


def _from_array(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    ref = make_ct()
    img.CopyInformation(ref)
    return img


SHAPE = (8, 16, 16)  # z, y, x of make_ct


@pytest.mark.parametrize(
    ("name", "array", "expected"),
    [
        ("display 0-255", np.linspace(0, 255, 2048).reshape(SHAPE).astype(np.uint8), "8-bit"),
        ("raw 0-4095", np.linspace(0, 4095, 2048).reshape(SHAPE).astype(np.uint16), "uncalibrated"),
        ("no negatives", np.linspace(0, 9000, 2048).reshape(SHAPE).astype(np.float32), "no negative values"),
        ("z-scored", np.linspace(-3, 3, 2048).reshape(SHAPE).astype(np.float32), "normalised"),
        ("cropped soft tissue", np.linspace(-120, 300, 2048).reshape(SHAPE).astype(np.int16), None),
        ("padded CT", np.linspace(-3024, 3071, 2048).reshape(SHAPE).astype(np.int16), None),
    ],
)
def test_not_hu_branches(tmp_path: Path, name: str, array: np.ndarray, expected: str | None) -> None:
    problems = check_case(_case(tmp_path, _from_array(array)))
    codes = [p.code for p in problems]
    if expected is None:
        assert codes == [], name
    else:
        assert codes == ["not_hu"], name
        assert expected in problems[0].message and "arterial" in problems[0].message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("size", "size (16, 16, 6) vs (16, 16, 8)"),
        ("spacing", "spacing"),
        ("direction", "direction"),
        ("origin_tiny", None),
        ("spacing_tiny", None),
    ],
)
def test_mask_geometry_components(tmp_path: Path, change: str, expected: str | None) -> None:
    ct = make_ct()
    if change == "size":
        mask = sitk.GetImageFromArray(sitk.GetArrayFromImage(make_mask(ct))[:6])
        mask.SetSpacing(ct.GetSpacing())
        mask.SetOrigin(ct.GetOrigin())
    else:
        mask = make_mask(ct)
        if change == "spacing":
            mask.SetSpacing((0.8, 0.8, 2.5))
        elif change == "direction":
            mask.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, -1))
        elif change == "origin_tiny":
            mask.SetOrigin(tuple(v + 1e-3 for v in ct.GetOrigin()))  # < 1% of a 0.8 mm voxel
        elif change == "spacing_tiny":
            mask.SetSpacing(tuple(v * (1 + 1e-5) for v in ct.GetSpacing()))
    problems = check_case(_case(tmp_path, ct, mask))
    if expected is None:
        assert problems == []
    else:
        assert [p.code for p in problems] == ["mask_geometry_mismatch"]
        assert expected in problems[0].message


def test_tolerances_are_settings(tmp_path: Path) -> None:
    ct = make_ct()
    mask = make_mask(ct)
    mask.SetOrigin(tuple(v + 0.05 for v in ct.GetOrigin()))  # 0.05 mm = 6% of a voxel
    case = _case(tmp_path, ct, mask)
    assert [p.code for p in check_case(case)] == ["mask_geometry_mismatch"]
    assert check_case(case, CheckOptions(origin_atol_voxels=0.1)) == []


def test_single_slice_volume_is_not_3d(tmp_path: Path) -> None:
    ct = make_ct(size=(16, 16, 1))
    problems = check_case(_case(tmp_path, ct))
    assert {p.code for p in problems} == {"not_3d"}
    assert any("single slice" in p.message for p in problems)


def test_mask_with_interpolated_values_is_not_binary(tmp_path: Path) -> None:
    ct = make_ct()
    arr = sitk.GetArrayFromImage(make_mask(ct)).astype(np.float32)
    arr[arr > 0] = 0.5
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(ct)
    problems = check_case(_case(tmp_path, ct, mask))
    assert [p.code for p in problems] == ["mask_not_binary"]
    assert "non-integer" in problems[0].message


def test_truncated_pixels_with_valid_header_are_unreadable(tmp_path: Path) -> None:
    case = _case(tmp_path, make_ct())
    data = case.images["arterial"].read_bytes()
    case.images["arterial"].write_bytes(data[: len(data) - 500])  # header intact, pixel data cut short
    problems = check_case(case)
    assert [p.code for p in problems] == ["unreadable"]
    assert "truncated" in problems[0].message and problems[0].file.endswith("a.mha")
