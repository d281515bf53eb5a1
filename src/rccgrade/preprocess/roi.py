"""ROI settings: ``box`` (bounding rectangle), ``tumour`` (the mask) and ``dilated<N>mm`` (mask grown in mm).

The dilation is exact in physical units on anisotropic grids: a voxel belongs to the dilated mask when
the Euclidean distance (in millimetres, using the voxel spacing) from its centre to the nearest tumour
voxel centre is ≤ the margin. A 5 mm margin is thus 5 mm in-plane and 5 mm along a 5 mm slice axis
(one slice), never "5 voxels".

Arrays here are numpy arrays in SimpleITK's index order reversed, i.e. ``(z, y, x)`` for a volume and
``(y, x)`` for a slice; spacings are given in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rccgrade.preprocess.settings import RoiSpec


def dilate_mm(mask: np.ndarray, spacing: Sequence[float], margin_mm: float) -> np.ndarray:
    """Grow a binary mask by ``margin_mm`` millimetres in physical space.

    Args:
        mask: Boolean (or 0/1) array, any dimension.
        spacing: Voxel size per array axis, in mm (same axis order as ``mask``).
        margin_mm: Dilation distance in mm (0 returns a copy).

    Returns:
        Boolean array: voxels whose centre lies within ``margin_mm`` of a mask voxel centre.
    """
    mask = np.asarray(mask).astype(bool)
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {mask.ndim}-D mask")
    # Crop to the mask's bounding box grown by the margin: exact and far cheaper on a whole CT.
    lo, hi = bounding_box(mask)
    pad = [int(np.ceil(margin_mm / s)) + 1 for s in spacing]
    start = [max(0, a - p) for a, p in zip(lo, pad, strict=True)]
    stop = [min(n, b + p) for b, p, n in zip(hi, pad, mask.shape, strict=True)]
    sl = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    dist = ndimage.distance_transform_edt(~mask[sl], sampling=[float(s) for s in spacing])
    out = np.zeros_like(mask)
    # A tiny tolerance keeps voxels at exactly margin_mm (e.g. 5 voxels of 1 mm) despite rounding.
    out[sl] = dist <= margin_mm + 1e-6
    return out


def bounding_box(mask: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Half-open bounding box ``(start, stop)`` per axis of the non-zero voxels.

    Raises:
        ValueError: the mask is empty.
    """
    mask = np.asarray(mask)
    start, stop = [], []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            raise ValueError("empty mask has no bounding box")
        start.append(int(hit[0]))
        stop.append(int(hit[-1]) + 1)
    return tuple(start), tuple(stop)


def grow_box(
    box: tuple[tuple[int, ...], tuple[int, ...]],
    spacing: Sequence[float],
    margin_mm: float,
    shape: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Grow a half-open box by ``margin_mm`` on every side (rounded to whole pixels), clipped to ``shape``."""
    lo, hi = box
    pad = [round(margin_mm / s) for s in spacing]
    new_lo = tuple(max(0, a - p) for a, p in zip(lo, pad, strict=True))
    new_hi = tuple(min(n, b + p) for b, p, n in zip(hi, pad, shape, strict=True))
    return new_lo, new_hi


def roi_volume(tumour: np.ndarray, spacing: Sequence[float], spec: RoiSpec) -> np.ndarray:
    """The 3-D mask whose pixels are kept for an ROI setting.

    ``tumour`` → the tumour mask; ``dilated<N>mm`` → the tumour grown by N mm; ``box`` → the tumour
    mask too (the box itself is drawn per slice by :func:`roi_crop`, and keeps every pixel inside it).
    """
    if spec.kind == "dilated":
        return dilate_mm(tumour, spacing, spec.margin_mm)
    return np.asarray(tumour).astype(bool)


def roi_crop(
    tumour2d: np.ndarray,
    roi2d: np.ndarray,
    spacing2d: Sequence[float],
    spec: RoiSpec,
    crop_margin_mm: float = 0.0,
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The crop rectangle and the kept-pixel mask of one ROI setting on one slice.

    Args:
        tumour2d: Tumour mask of the slice ``(y, x)``.
        roi2d: The ROI volume's slice (:func:`roi_volume`).
        spacing2d: Pixel size ``(y, x)`` in mm.
        spec: The ROI setting.
        crop_margin_mm: Context around tumour/dilated crops (the box uses its own margin).

    Returns:
        ``(crop, keep)``: the crop as two slices and a boolean mask of the pixels kept inside it
        (all True for ``box``; the (dilated) tumour otherwise).

    Raises:
        ValueError: the tumour is absent from the slice.
    """
    if spec.kind == "box":
        lo, hi = grow_box(bounding_box(tumour2d), spacing2d, spec.margin_mm, tumour2d.shape)
        crop = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        return crop, np.ones((hi[0] - lo[0], hi[1] - lo[1]), dtype=bool)
    lo, hi = grow_box(bounding_box(roi2d), spacing2d, crop_margin_mm, roi2d.shape)
    crop = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    return crop, np.asarray(roi2d[crop]).astype(bool)
