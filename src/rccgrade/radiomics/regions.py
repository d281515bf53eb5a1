"""Peritumoural ring regions: from the tumour border out to N mm, in physical space, soft tissue only.

A voxel belongs to the ``N`` mm ring of a tumour when

* it is outside the tumour,
* the Euclidean distance in mm from its centre to the nearest tumour voxel centre is at most ``N``
  (the same convention as the ``dilated<N>mm`` ROI and the stability perturbations, so the ``N`` mm ring is
  exactly the ``N`` mm dilation minus the tumour), computed with an exact Euclidean distance transform on the
  voxel grid with its anisotropic spacing (``scipy.ndimage.distance_transform_edt(sampling=spacing)``,
  via :func:`rccgrade.radiomics.stability.signed_distance_mm`), and
* its HU value lies in the soft-tissue window ``[lo, hi]`` (default −100 … +300 HU, see
  :data:`SOFT_TISSUE_HU`).

All arrays are in SimpleITK's numpy order ``(z, y, x)``; spacings are given as SimpleITK gives them,
``(x, y, z)`` in mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rccgrade.radiomics.stability import signed_distance_mm

SOFT_TISSUE_HU: tuple[float, float] = (-100.0, 300.0)
"""Default HU window of ring voxels.

Why these bounds: the lower bound −100 HU keeps fat stranding, oedema and most of the perirenal fat's
denser part (around −100 … −50 HU) while leaving out air (−1000 HU) in bowel loops or lung bases and the
partial-volume voxels next to it; the upper bound +300 HU keeps enhancing renal cortex, parenchyma and
tumour-adjacent vessels in the nephrographic/excretory phases while leaving out cortical bone (≥ 400 HU in
ribs and vertebrae), calcifications and the densest arterial-phase aorta. A voxel outside the window would
dominate first-order and texture features of a thin ring without telling anything about the tissue around
the tumour.
"""

TOLERANCE_MM = 1e-6
"""A voxel exactly ``N`` mm away belongs to the ``N`` mm ring: distances are compared with this slack, so floating-point
rounding (e.g. 2 × 1.3 mm computed as 2.6000000000000005) cannot drop a voxel on the boundary."""

MIN_RING_VOXELS = 10
"""Fewest voxels a ring needs before PyRadiomics is asked to describe it (see :func:`ring_problem`)."""


@dataclass(frozen=True)
class Ring:
    """One peritumoural ring of one image.

    Attributes:
        ring_mm: Outer distance from the tumour border in mm.
        mask: uint8 array ``(z, y, x)``, 1 in the ring, on the image's grid.
        n_voxels: Voxels in the ring.
        problem: Why the ring cannot be described (too few voxels, flat), or None when it can.
    """

    ring_mm: float
    mask: np.ndarray
    n_voxels: int
    problem: str | None


def ring_masks(
    tumour: np.ndarray,
    image: np.ndarray,
    spacing_xyz: Sequence[float],
    rings_mm: Sequence[float],
    hu_range: tuple[float, float] = SOFT_TISSUE_HU,
    min_voxels: int = MIN_RING_VOXELS,
) -> list[Ring]:
    """The ring of each distance in ``rings_mm``.

    The distance transform runs on a crop around the tumour that holds every voxel within
    ``max(rings_mm)`` mm of it (the result is identical to the full volume's, at a fraction of the cost on
    a realistic 512² CT).

    Args:
        tumour: Tumour mask ``(z, y, x)``, nonzero inside.
        image: HU image ``(z, y, x)`` on the same grid.
        spacing_xyz: Voxel spacing in mm, ``(x, y, z)``.
        rings_mm: Outer distances of the rings (mm, > 0).
        hu_range: Inclusive HU window of ring voxels.
        min_voxels: Rings with fewer voxels (or only one voxel thick along an axis) get a ``problem``.

    Returns:
        One :class:`Ring` per distance, in the order given.

    Raises:
        ValueError: shapes differ, an empty tumour, a distance ≤ 0 or an empty HU window.
    """
    inside = np.asarray(tumour) != 0
    image = np.asarray(image)
    if inside.shape != image.shape:
        raise ValueError(f"tumour mask {inside.shape} and image {image.shape} differ in shape")
    if not inside.any():
        raise ValueError("the tumour mask is empty")
    if any(float(r) <= 0 for r in rings_mm):
        raise ValueError(f"ring distances must be > 0 mm, got {list(rings_mm)}")
    lo, hi = float(hu_range[0]), float(hu_range[1])
    if lo > hi:
        raise ValueError(f"empty HU window {hu_range}")
    out: list[Ring] = []
    if not rings_mm:
        return out
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]
    reach = max(float(r) for r in rings_mm)
    margin = np.ceil(reach / spacing_zyx).astype(int) + 1
    nz = np.nonzero(inside)
    start = [max(int(a.min()) - m, 0) for a, m in zip(nz, margin, strict=True)]
    stop = [min(int(a.max()) + m + 1, n) for a, m, n in zip(nz, margin, inside.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    dist = signed_distance_mm(inside[box], spacing_xyz)
    soft = (image[box] >= lo) & (image[box] <= hi)
    for r in rings_mm:
        crop = (dist > 0) & (dist <= float(r) + TOLERANCE_MM) & soft
        full = np.zeros(inside.shape, dtype=np.uint8)
        full[box] = crop
        n = int(crop.sum())
        out.append(Ring(float(r), full, n, ring_problem(full, min_voxels)))
    return out


def ring_problem(ring: np.ndarray, min_voxels: int = MIN_RING_VOXELS) -> str | None:
    """Why a ring cannot be described, or None.

    A ring needs ``min_voxels`` voxels and must span at least two voxels along every axis: PyRadiomics'
    shape and texture features of a flat or near-empty region are undefined or meaningless.
    """
    n = int(np.count_nonzero(ring))
    if n < min_voxels:
        return f"{n} soft-tissue voxel(s) in the ring, fewer than {min_voxels}"
    nz = np.nonzero(ring)
    flat = [axis for axis, a in zip("zyx", nz, strict=True) if int(a.max()) == int(a.min())]
    if flat:
        return f"the ring is one voxel thick along {','.join(flat)}"
    return None
