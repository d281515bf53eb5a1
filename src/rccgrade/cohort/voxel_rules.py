"""Voxel-level rules on image arrays: finite range, non-finite voxels, zero-filled trailing slices.

Split from :mod:`rccgrade.cohort.integrity`, which re-exports every name.
"""

from __future__ import annotations

import numpy as np

HU_LIMIT = 1e5
"""No CT value, even with extended scales for metal, reaches ±1e5 HU."""


def finite_range(arr: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values of an array, or None when there are none."""
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.any():
            return None
        if not finite.all():
            arr = arr[finite]
    if arr.size == 0:
        return None
    return float(np.min(arr)), float(np.max(arr))


def nonfinite_problem(
    arr: np.ndarray, tumour: np.ndarray | None = None, max_fraction: float = 0.0
) -> tuple[str, str] | None:
    """``(severity, message)`` for NaN/±inf voxels in an image, or None when every voxel is finite.

    Args:
        arr: Image voxels (any shape).
        tumour: Boolean tumour mask on the same grid, or None when it is unknown (other phases).
        max_fraction: Largest fraction of non-finite voxels outside the tumour that is only a warning.

    Returns:
        ``error`` when no voxel is finite, when any lies inside ``tumour``, or when their fraction exceeds
        ``max_fraction``; else ``warning``. The message starts lower-case, after the image's name.
    """
    if not np.issubdtype(arr.dtype, np.floating):
        return None
    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return None
    n = int(arr.size)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    what = f"{n_bad} of its {n} voxels are not finite ({n_nan} NaN, {n_bad - n_nan} ±inf)"
    fix = "Export the original CT again; never fill missing regions with NaN"
    if n_bad == n:
        return "error", f"has no finite voxel: all {n} are NaN or ±inf. {fix}"
    if tumour is not None and tumour.shape == arr.shape:
        inside = int(np.count_nonzero(bad & tumour))
        if inside:
            return (
                "error",
                f"has {inside} non-finite voxel(s) inside the tumour mask ({what}): the tumour's features cannot be "
                f"computed. {fix}",
            )
    fraction = n_bad / n
    if fraction > max_fraction:
        return (
            "error",
            f"{what}, {100 * fraction:.2g}% of the volume (at most {100 * max_fraction:.2g}% allowed by "
            f"cohort.max_nonfinite_fraction). {fix}",
        )
    return "warning", f"{what}, outside the tumour; they are tolerated (cohort.max_nonfinite_fraction)"


def zero_tail_problem(arr: np.ndarray, air_hu: float = -500.0) -> str | None:
    """Message when the last whole slices (in storage order) of a CT are exactly 0, else None.

    A reader that meets a file cut short fills the missing end of the pixel buffer with zeros; since the slice
    index varies slowest, those zeros are the last slices. A real CT slice is never exactly 0 HU everywhere
    (air is about −1000 HU), so this only looks at images that hold air (values below ``air_hu``).

    Args:
        arr: Image voxels in ITK array order (z, y, x).
        air_hu: Value below which a voxel counts as air.
    """
    if arr.ndim != 3 or arr.shape[0] < 2:
        return None
    flat = np.asarray(arr).reshape(arr.shape[0], -1)
    zero_slices = 0
    for z in range(arr.shape[0] - 1, -1, -1):
        if np.any(flat[z] != 0):
            break
        zero_slices += 1
    if zero_slices == 0 or zero_slices == arr.shape[0]:
        return None
    with np.errstate(invalid="ignore"):
        holds_air = bool(np.any(flat[: arr.shape[0] - zero_slices] < air_hu))
    if not holds_air:
        return None
    return (
        f"ends with {zero_slices} slice(s) of exactly 0 out of {arr.shape[0]}, while the others hold air "
        f"(below {air_hu:g} HU): the file looks cut short and its missing end read as zeros. Copy or export it "
        "again (if those slices really are empty, crop them)"
    )
