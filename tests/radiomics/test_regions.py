"""Peritumoural rings: exact in mm on anisotropic grids, soft tissue only, too-small rings reported."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rccgrade.radiomics.regions import SOFT_TISSUE_HU, ring_masks, ring_problem

SPACING_XYZ = (0.7, 1.3, 2.5)  # strongly anisotropic: a voxel-count ring or a swapped axis gives another ring


def _phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An irregular tumour near a border of a small (z, y, x) grid and an image with air and bone voxels."""
    rng = np.random.default_rng(seed)
    shape = (9, 14, 22)
    z, y, x = np.indices(shape, dtype=float)
    sx, sy, sz = SPACING_XYZ
    r = np.sqrt(((x - 9) * sx) ** 2 + ((y - 6) * sy) ** 2 + ((z - 3) * sz) ** 2)
    tumour = (r <= 4.0) | ((x > 9) & (x < 13) & (y == 6) & (z == 3))  # a spur, so the shape is not a ball
    image = rng.uniform(-60, 250, shape)
    image[rng.random(shape) < 0.15] = -1000.0  # air
    image[rng.random(shape) < 0.10] = 800.0  # bone
    image[0, 0, 0], image[0, 0, 1] = SOFT_TISSUE_HU  # the window's bounds themselves
    return tumour, image


def _brute_force_ring(tumour: np.ndarray, image: np.ndarray, ring_mm: float, lo: float, hi: float) -> np.ndarray:
    """Naive ring: every voxel centre against every tumour voxel centre, distances in mm."""
    sx, sy, sz = SPACING_XYZ
    inside = [(k * sz, j * sy, i * sx) for k, j, i in zip(*np.nonzero(tumour), strict=True)]
    out = np.zeros(tumour.shape, dtype=np.uint8)
    for k, j, i in itertools.product(*(range(n) for n in tumour.shape)):
        if tumour[k, j, i] or not lo <= image[k, j, i] <= hi:
            continue
        p = (k * sz, j * sy, i * sx)
        d = min(((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 + (p[2] - q[2]) ** 2) ** 0.5 for q in inside)
        if d <= ring_mm + 1e-6:  # a voxel exactly ring_mm away is in the ring (rounding aside)
            out[k, j, i] = 1
    return out


@pytest.mark.parametrize("ring_mm", [1.0, 2.6, 5.0, 10.0])
def test_ring_equals_brute_force_distance_in_mm(ring_mm: float) -> None:
    tumour, image = _phantom()
    (ring,) = ring_masks(tumour, image, SPACING_XYZ, [ring_mm])
    expected = _brute_force_ring(tumour, image, ring_mm, *SOFT_TISSUE_HU)
    assert expected.sum() > 0
    np.testing.assert_array_equal(ring.mask, expected)
    assert ring.n_voxels == int(expected.sum())


def test_rings_in_one_call_equal_separate_calls_and_grow() -> None:
    tumour, image = _phantom(1)
    rings = ring_masks(tumour, image, SPACING_XYZ, [2.0, 5.0, 10.0])
    for ring in rings:
        (alone,) = ring_masks(tumour, image, SPACING_XYZ, [ring.ring_mm])
        np.testing.assert_array_equal(ring.mask, alone.mask)
    assert rings[0].n_voxels < rings[1].n_voxels < rings[2].n_voxels
    assert np.all(rings[0].mask <= rings[1].mask)


def test_ring_leaves_out_air_bone_and_the_tumour() -> None:
    tumour, image = _phantom(2)
    (ring,) = ring_masks(tumour, image, SPACING_XYZ, [10.0])
    inside = ring.mask.astype(bool)
    assert not np.any(inside & tumour)
    values = image[inside]
    assert values.min() >= SOFT_TISSUE_HU[0] and values.max() <= SOFT_TISSUE_HU[1]
    # the same geometry with the whole image soft tissue holds every air/bone voxel the window removed
    (all_tissue,) = ring_masks(tumour, np.zeros_like(image), SPACING_XYZ, [10.0])
    removed = all_tissue.mask.astype(bool) & ~inside
    assert removed.any()
    assert np.all(np.isin(image[removed], [-1000.0, 800.0]))
    # the window is inclusive: −100 and +300 HU voxels within reach stay in
    (wide,) = ring_masks(tumour, image, SPACING_XYZ, [100.0])
    assert wide.mask[0, 0, 0] == 1 and wide.mask[0, 0, 1] == 1


def test_custom_hu_window() -> None:
    tumour, image = _phantom(3)
    (ring,) = ring_masks(tumour, image, SPACING_XYZ, [5.0], hu_range=(0.0, 100.0))
    np.testing.assert_array_equal(ring.mask, _brute_force_ring(tumour, image, 5.0, 0.0, 100.0))


def test_ring_thinner_than_the_voxels_is_a_problem_not_a_crash() -> None:
    tumour, image = _phantom()
    (ring,) = ring_masks(tumour, image, SPACING_XYZ, [0.5])  # below the smallest spacing (0.7 mm)
    assert ring.n_voxels == 0
    assert ring.problem is not None and "fewer than 10" in ring.problem


def test_ring_problem_flat_and_small() -> None:
    flat = np.zeros((5, 6, 6), dtype=np.uint8)
    flat[2, 1:5, 1:5] = 1  # 16 voxels on one slice
    assert "one voxel thick along z" in str(ring_problem(flat, 10))
    assert ring_problem(flat, 20) is not None
    solid = np.zeros((5, 6, 6), dtype=np.uint8)
    solid[1:3, 1:5, 1:5] = 1
    assert ring_problem(solid, 10) is None


def test_bad_inputs_raise() -> None:
    tumour, image = _phantom()
    with pytest.raises(ValueError, match="empty"):
        ring_masks(np.zeros_like(tumour), image, SPACING_XYZ, [2.0])
    with pytest.raises(ValueError, match="> 0 mm"):
        ring_masks(tumour, image, SPACING_XYZ, [0.0])
    with pytest.raises(ValueError, match="shape"):
        ring_masks(tumour[:-1], image, SPACING_XYZ, [2.0])
