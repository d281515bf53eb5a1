"""ROI settings: exact physical dilation, bounding boxes, crops, ROI names."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from rccgrade.errors import ConfigError
from rccgrade.preprocess.roi import bounding_box, dilate_mm, grow_box, roi_crop
from rccgrade.preprocess.settings import PreprocessSettings, RoiSpec, parse_roi


def _sphere(shape: tuple[int, int, int], spacing: tuple[float, float, float], radius: float):
    centre = [(n // 2) * s for n, s in zip(shape, spacing, strict=True)]
    grids = np.meshgrid(*[np.arange(n) * s - c for n, s, c in zip(shape, spacing, centre, strict=True)], indexing="ij")
    dist = np.sqrt(sum(g**2 for g in grids))
    return dist <= radius, dist


@pytest.mark.parametrize("spacing", [(5.0, 0.7, 0.7), (1.0, 1.0, 1.0)])
def test_sphere_dilated_by_5mm_has_radius_r_plus_5(spacing: tuple[float, float, float]) -> None:
    # array axes (z, y, x): 5 mm slices on the anisotropic grid
    r = 10.0  # a multiple of the 5 mm slice spacing, so the discrete sphere has radius r on every axis
    shape = tuple(int(np.ceil(2 * (r + 9) / s)) | 1 for s in spacing)
    sphere, dist = _sphere(shape, spacing, r)
    grown = dilate_mm(sphere, spacing, 5.0)
    # radius along every axis (and overall) within half a voxel of r + 5
    centre = [n // 2 for n in shape]

    def radius(mask: np.ndarray, axis: int) -> float:
        line = [slice(c, c + 1) for c in centre]
        line[axis] = slice(None)
        idx = np.flatnonzero(mask[tuple(line)].ravel())
        return float((idx.max() - centre[axis]) * spacing[axis])

    for axis in range(3):
        assert abs(radius(grown, axis) - (r + 5.0)) <= spacing[axis] / 2 + 1e-9, (axis, radius(grown, axis))
        # and exactly 5 mm more than the discrete sphere itself, within half a voxel
        assert abs(radius(grown, axis) - radius(sphere, axis) - 5.0) <= spacing[axis] / 2 + 1e-9
    # the dilated ball is the set of voxels within r+5 of the centre, up to the sphere's own discretisation
    h = max(spacing) / 2
    assert grown[dist <= r + 5.0 - h].all()
    assert not grown[dist > r + 5.0 + h].any()


def test_dilation_matches_brute_force_nearest_voxel_distance() -> None:
    rng = np.random.default_rng(3)
    spacing = (3.0, 0.8, 1.3)
    mask = np.zeros((7, 20, 18), dtype=bool)
    mask[3, 8:12, 7:10] = True
    mask[4, 9, 9] = True
    mask[rng.integers(0, 7), rng.integers(0, 20), rng.integers(0, 18)] = True
    grown = dilate_mm(mask, spacing, 4.0)
    pts = np.argwhere(np.ones_like(mask)) * np.array(spacing)
    tree = cKDTree(np.argwhere(mask) * np.array(spacing))
    d, _ = tree.query(pts)
    expected = (d <= 4.0 + 1e-6).reshape(mask.shape)
    np.testing.assert_array_equal(grown, expected)


def test_zero_margin_and_empty_mask_are_copies() -> None:
    mask = np.zeros((3, 4, 4), dtype=bool)
    assert not dilate_mm(mask, (1, 1, 1), 5).any()
    mask[1, 2, 2] = True
    np.testing.assert_array_equal(dilate_mm(mask, (1, 1, 1), 0), mask)


def test_bounding_box_and_growth() -> None:
    m = np.zeros((10, 12), dtype=bool)
    m[2:5, 3:9] = True
    assert bounding_box(m) == ((2, 3), (5, 9))
    assert grow_box(((2, 3), (5, 9)), (1.0, 0.5), 2.0, m.shape) == ((0, 0), (7, 12))
    with pytest.raises(ValueError):
        bounding_box(np.zeros((3, 3)))


def test_roi_crop_box_keeps_all_tumour_keeps_mask() -> None:
    t = np.zeros((20, 20), dtype=bool)
    t[5:10, 6:14] = True
    t[5, 6] = False
    crop, keep = roi_crop(t, t, (1.0, 1.0), RoiSpec("box"))
    assert crop == (slice(5, 10), slice(6, 14)) and keep.all()
    crop, keep = roi_crop(t, t, (1.0, 1.0), RoiSpec("box", 2.0))
    assert crop == (slice(3, 12), slice(4, 16))
    crop, keep = roi_crop(t, t, (1.0, 1.0), RoiSpec("tumour"))
    np.testing.assert_array_equal(keep, t[5:10, 6:14])


@pytest.mark.parametrize(
    ("name", "spec", "canonical"),
    [
        ("box", RoiSpec("box"), "box"),
        ("box3mm", RoiSpec("box", 3.0), "box3mm"),
        ("tumor", RoiSpec("tumour"), "tumour"),
        ("dilated5mm", RoiSpec("dilated", 5.0), "dilated5mm"),
        ("dilated2.5mm", RoiSpec("dilated", 2.5), "dilated2p5mm"),
    ],
)
def test_parse_roi(name: str, spec: RoiSpec, canonical: str) -> None:
    assert parse_roi(name) == spec
    assert spec.name == canonical


@pytest.mark.parametrize("bad", ["dilated", "ring5mm", "tumour3mm", ""])
def test_bad_roi_names_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_roi(bad)


def test_settings_reject_bad_rois_through_study_config() -> None:
    from rccgrade.config import config_from_dict

    assert PreprocessSettings().rois == ["box", "tumour", "dilated5mm"]
    with pytest.raises(ConfigError, match="rois"):
        config_from_dict({"preprocess": {"rois": ["box", "blob"]}})
