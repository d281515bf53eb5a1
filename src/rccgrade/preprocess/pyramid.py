"""The registration's multi-resolution pyramid, built once per phase by block averaging (cheap and exact).

ITK's own pyramid (``ImageRegistrationMethod.SetShrinkFactorsPerLevel``) smooths the whole fixed and moving
images with a discrete Gaussian at full resolution before subsampling: on a cropped realistic CT that took
longer than the optimisation itself. Here a coarse level is the image *block-averaged*
(``sitk.BinShrink``: the mean of each ``f_x × f_y × f_z`` block, which is both the anti-aliasing filter and
the subsampling, one pass over the voxels), optionally smoothed afterwards on the small grid.

Shrink factors are per level and made near-isotropic per axis: an axis whose voxels are already coarser
(thick slices) is shrunk less, so a 0.7 × 0.7 × 1.25 mm CT at factor 2 becomes 1.5 × 1.5 × 1.25 mm, and a
5 mm slice axis is never merged into 10 mm slabs.
"""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk


@dataclass(frozen=True)
class Level:
    """One resolution level: the fixed and moving images, and the metric region on the fixed grid.

    Attributes:
        fixed: Fixed image at this level (float32).
        moving: Moving image at this level (float32).
        region: uint8 metric mask on ``fixed``'s grid.
        shrink: The level's nominal shrink factor (1: full resolution).
    """

    fixed: sitk.Image
    moving: sitk.Image
    region: sitk.Image
    shrink: int


def axis_factors(spacing: tuple[float, ...], shrink: int) -> list[int]:
    """Per-axis block size for a nominal ``shrink`` factor: ``round(shrink × min spacing / spacing)``, ≥ 1.

    Example: spacing (0.7, 0.7, 1.25) mm with shrink 2 gives (2, 2, 1); with shrink 4, (4, 4, 2).
    """
    finest = min(spacing)
    return [max(1, round(shrink * finest / s)) for s in spacing]


def _coarsen(image: sitk.Image, factors: list[int], sigma_mm: float) -> sitk.Image:
    out = sitk.BinShrink(image, factors) if any(f > 1 for f in factors) else image
    if sigma_mm > 0:
        out = sitk.SmoothingRecursiveGaussian(out, sigma_mm)
    return out


def build_levels(
    fixed: sitk.Image,
    moving: sitk.Image,
    region: sitk.Image,
    shrink_factors: list[int],
    smoothing_sigmas_mm: list[float],
) -> list[Level]:
    """The pyramid, coarse to fine (one :class:`Level` per shrink factor).

    Args:
        fixed: Fixed image (float32), full resolution.
        moving: Moving image (float32), full resolution.
        region: uint8 metric mask on ``fixed``'s grid.
        shrink_factors: Nominal shrink factor per level, coarse to fine (see :func:`axis_factors`).
        smoothing_sigmas_mm: Gaussian σ (mm) applied after block averaging, per level (0: none).

    A level's region is the full-resolution region resampled (nearest neighbour) onto the level's fixed grid.
    """
    levels = []
    for shrink, sigma in zip(shrink_factors, smoothing_sigmas_mm, strict=True):
        f = _coarsen(fixed, axis_factors(fixed.GetSpacing(), shrink), sigma)
        m = _coarsen(moving, axis_factors(moving.GetSpacing(), shrink), sigma)
        r = region
        if f.GetSize() != fixed.GetSize():
            r = sitk.Resample(region, f, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        levels.append(Level(fixed=f, moving=m, region=r, shrink=int(shrink)))
    return levels
