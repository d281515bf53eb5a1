"""Quality control of a registration: Mattes mutual information before and after, on a fixed grid.

Split from :mod:`rccgrade.preprocess.registration`, which re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from rccgrade.preprocess.settings import RegistrationSettings


def evaluate_metric(
    fixed: sitk.Image,
    moving: sitk.Image,
    region: sitk.Image,
    transform: sitk.Transform,
    settings: RegistrationSettings,
    n_offsets: int = 4,
    grid: sitk.Image | None = None,
) -> float:
    """Mattes mutual information of ``moving ∘ transform`` vs ``fixed`` over ``region`` (lower is better).

    Evaluated on every voxel of the region, but on copies of the fixed grid shifted by sub-voxel offsets
    (``n_offsets`` of them, drawn from ``settings.seed``; the mean is returned). At voxel centres the
    identity transform needs no interpolation of the moving phase (same grid), and mutual information
    then favours identity over any sub-voxel correction because interpolation blurs the joint
    histogram — a correct 1 mm correction would look "worse" than identity. Off-grid points remove
    that bias. The grid's spacing is at least ``settings.eval_spacing_mm`` per axis (a 0.7 mm grid has
    ~8× more voxels than a 1.5 mm one and estimates the same histogram no better). Deterministic for a
    given seed. ``grid``: the image whose extent the grid spans (default ``fixed``; a crop of it evaluates the
    same points).
    """
    rng = np.random.default_rng(settings.seed)
    grid = fixed if grid is None else grid
    spacing, size = _evaluation_grid(grid, settings.eval_spacing_mm)
    values = []
    for offset in rng.uniform(0.0, 1.0, size=(n_offsets, 3)):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
        reg.SetMetricSamplingStrategy(reg.NONE)
        reg.SetMetricFixedMask(region)
        reg.MetricUseFixedImageGradientFilterOff()
        reg.MetricUseMovingImageGradientFilterOff()
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetInitialTransform(transform, inPlace=False)
        origin = grid.TransformContinuousIndexToPhysicalPoint([float(o) for o in offset])
        reg.SetVirtualDomain(size, origin, spacing, grid.GetDirection())
        reg.SetNumberOfThreads(settings.threads)
        values.append(float(reg.MetricEvaluate(fixed, moving)))
    return float(np.mean(values))


def _evaluation_grid(fixed: sitk.Image, min_spacing_mm: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Spacing and size of a grid over ``fixed``'s extent with spacing ≥ ``min_spacing_mm`` per axis (0: native)."""
    sp, size = fixed.GetSpacing(), fixed.GetSize()
    spacing = tuple(max(float(s), float(min_spacing_mm)) for s in sp)
    n = tuple(max(1, math.floor((size[i] - 1) * sp[i] / spacing[i] + 1e-6) + 1) for i in range(3))
    return spacing, n


def region_bbox(region: sitk.Image) -> tuple[list[int], list[int]] | None:
    """Index bounding box ``(lo, hi)`` (x, y, z, both inclusive) of the non-zero voxels, or None when empty.

    From the array's projections on each axis (three ``any`` reductions), far cheaper than listing the voxels.
    """
    arr = sitk.GetArrayViewFromImage(region) != 0
    lo, hi = [], []
    for axis in (2, 1, 0):  # numpy z-y-x → ITK x, y, z
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(arr.any(axis=other))
        if hit.size == 0:
            return None
        lo.append(int(hit[0]))
        hi.append(int(hit[-1]))
    return lo, hi


def qc_metrics(
    fixed: sitk.Image,
    moving: sitk.Image,
    region: sitk.Image,
    transforms: Sequence[sitk.Transform],
    settings: RegistrationSettings,
) -> list[float]:
    """:func:`evaluate_metric` of each transform, on crops shared by all of them (same histogram bounds).

    The metric only looks at the region's points and where the transforms send them, yet ITK's Mattes metric
    scans both whole images first (intensity bounds), which cost more than the evaluation itself. So the
    fixed image is cropped to the region's bounding box (plus two voxels: the sub-voxel offsets and their
    linear interpolation), and the moving image to the box holding that crop's corners mapped by every
    transform (plus two voxels). Rigid and affine transforms map the box to a convex set bounded by its
    mapped corners, so no evaluated point loses a neighbour. The same crops serve every transform, so values
    stay comparable (identity before vs the optimum after).

    Returns:
        One value per transform, in order (lower is better).
    """
    whole = fixed
    box = region_bbox(region)
    if box is not None:
        size = fixed.GetSize()
        lo = [max(0, v - 2) for v in box[0]]
        hi = [min(size[i], box[1][i] + 3) for i in range(3)]
        crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        fixed, region = fixed[crop], region[crop]
        moving = _moving_crop(fixed, moving, transforms)
    return [
        evaluate_metric(fixed, moving, region, t, settings, n_offsets=settings.eval_offsets, grid=whole)
        for t in transforms
    ]


def _moving_crop(
    fixed: sitk.Image, moving: sitk.Image, transforms: Sequence[sitk.Transform], margin_mm: float = 0.0
) -> sitk.Image:
    """``moving`` cropped to the box holding ``fixed``'s corners mapped by every transform, grown by
    ``margin_mm`` and two voxels (linear interpolation), clipped to the image."""
    size = fixed.GetSize()
    corners = [
        fixed.TransformIndexToPhysicalPoint((x, y, z))
        for x in (0, size[0] - 1)
        for y in (0, size[1] - 1)
        for z in (0, size[2] - 1)
    ]
    mapped = np.asarray(
        [moving.TransformPhysicalPointToContinuousIndex(t.TransformPoint(c)) for t in transforms for c in corners]
    )
    msize, sp = moving.GetSize(), moving.GetSpacing()
    grow = [math.ceil(margin_mm / sp[i]) + 2 for i in range(3)]
    lo = [min(msize[i] - 1, max(0, math.floor(mapped[:, i].min()) - grow[i])) for i in range(3)]
    hi = [max(lo[i] + 1, min(msize[i], math.ceil(mapped[:, i].max()) + grow[i] + 1)) for i in range(3)]
    return moving[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
