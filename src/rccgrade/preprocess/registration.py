"""Registration of the other contrast phases to the mask's phase (SimpleITK).

Patients breathe and move between phases, so the nephrographic and excretory phases are registered to
the phase the mask was drawn on (default arterial) before the phases are stacked as channels.

Method: rigid (Euler3D; affine optional) transform, Mattes mutual information (the phases differ in
contrast, not in anatomy), regular-step gradient descent with scales from physical shift, on intensities
clamped to a soft-tissue HU range. The metric is evaluated only in a region around the tumour (the mask
dilated by ``metric_margin_mm``, set as the fixed-image mask), so the kidney is aligned rather than the whole
abdomen; both images are cropped to what that region can reach, which is exact and makes whole CTs cheap.
Multi-resolution: a pyramid of block averages (:mod:`rccgrade.preprocess.pyramid`), one single-level ITK
registration per level started from the previous level's result, at most ``max_samples`` random samples of
the region per iteration; the finer levels see the moving image only near where the coarser result sends the
region (:data:`REFINE_REACH_MM`). Sampling is random with a fixed seed and ITK runs single-threaded by default,
so a re-run gives bitwise-identical transforms.

Quality control (:mod:`rccgrade.preprocess.registration_qc`): the metric is evaluated with identity and with
the optimum on every point of a regular grid (``eval_spacing_mm``, averaged over ``eval_offsets`` sub-voxel
shifts) inside the region, on crops of both images around it. A registration that raises, returns a non-finite
metric, does not improve the metric or moves the region by more than ``max_displacement_mm`` falls back to
identity with a warning and a flag; it never stops the other phases or cases.

Transform convention (ITK): the transform maps points of the fixed (mask phase) space to the moving
phase's space, i.e. ``registered(x) = moving(T(x))``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import SimpleITK as sitk

from rccgrade.preprocess.pyramid import build_levels
from rccgrade.preprocess.registration_qc import (  # noqa: F401 - moved there; names kept importable from here
    _evaluation_grid,
    _moving_crop,
    evaluate_metric,
    qc_metrics,
    region_bbox,
)
from rccgrade.preprocess.settings import RegistrationSettings

log = logging.getLogger(__name__)

RegistrationStatus = Literal["registered", "unchanged", "skipped", "failed", "worsened", "implausible"]


REFINE_REACH_MM = 10.0
"""The levels after the coarsest see the moving image only this far (mm) beyond where the previous level's
transform sends the fixed crop: a refinement moves by a few coarse voxels at most."""

MAX_DISPLACEMENT_MM = 40.0
"""A transform moving some point of the metric region by more than this (mm) is implausible for
breathing between phases and is rejected."""


@dataclass
class RegistrationResult:
    """Outcome of registering one phase.

    Attributes:
        phase: The moving phase.
        status: ``registered`` (transform kept), ``unchanged`` (already aligned: the optimum is within
            ``unchanged_tolerance_mm`` of identity and no better, identity kept), ``skipped`` (registration
            disabled), or a fallback to
            identity: ``failed`` (error / non-finite metric), ``worsened`` (metric not improved),
            ``implausible`` (displacement above :data:`MAX_DISPLACEMENT_MM`).
        metric_before: Mattes MI (negative; lower is better) with the identity transform, on the whole region.
        metric_after: The same with the optimised transform (NaN when it failed).
        parameters: Final transform parameters (Euler3D: rx, ry, rz in radians, tx, ty, tz in mm).
        fixed_parameters: The transform's fixed parameters (centre of rotation, mm).
        transform_type: ``Euler3DTransform`` or ``AffineTransform``.
        max_displacement_mm: Largest displacement of the region's bounding-box corners under the
            optimised transform (before any fallback).
        iterations: Optimizer iterations at the last level.
        message: Why it fell back, or the optimizer's stop condition.
    """

    phase: str
    status: RegistrationStatus
    metric_before: float = math.nan
    metric_after: float = math.nan
    parameters: tuple[float, ...] = ()
    fixed_parameters: tuple[float, ...] = ()
    transform_type: str = "Euler3DTransform"
    max_displacement_mm: float = math.nan
    iterations: int = 0
    message: str = ""
    kept_parameters: tuple[float, ...] = field(default=())

    @property
    def flagged(self) -> bool:
        """True when the registration fell back to identity (failed, worsened or implausible)."""
        return self.status in ("failed", "worsened", "implausible")

    def kept_transform(self) -> sitk.Transform:
        """The transform actually applied: the optimised one when ``registered``, else identity."""
        return build_transform(self.transform_type, self.kept_parameters, self.fixed_parameters)

    def summary(self) -> str:
        """One line for tables and figures: status, metric before → after, rotation (°), translation (mm)."""
        text = f"{self.phase}: {self.status}; MI {self.metric_before:.4f} → {self.metric_after:.4f}"
        if self.transform_type == "Euler3DTransform" and len(self.parameters) == 6:
            rot = np.degrees(self.parameters[:3])
            text += "; rot° ({:.2f}, {:.2f}, {:.2f}); t mm ({:.2f}, {:.2f}, {:.2f})".format(*rot, *self.parameters[3:])
        return text


def build_transform(
    transform_type: str, parameters: tuple[float, ...] | list[float], fixed_parameters: tuple[float, ...] | list[float]
) -> sitk.Transform:
    """Rebuild a transform from its type and (fixed) parameters; empty parameters give identity."""
    tx: sitk.Transform = sitk.AffineTransform(3) if transform_type == "AffineTransform" else sitk.Euler3DTransform()
    if fixed_parameters:
        tx.SetFixedParameters([float(v) for v in fixed_parameters])
    if parameters:
        tx.SetParameters([float(v) for v in parameters])
    return tx


def metric_region(fixed: sitk.Image, tumour: sitk.Image, margin_mm: float) -> sitk.Image:
    """The fixed-image mask of the metric: the tumour dilated by ``margin_mm`` (exact, in mm), uint8."""
    from rccgrade.preprocess.roi import dilate_mm

    arr = sitk.GetArrayViewFromImage(tumour) > 0
    spacing = tumour.GetSpacing()[::-1]
    region = sitk.GetImageFromArray(dilate_mm(arr, spacing, margin_mm).astype(np.uint8))
    region.CopyInformation(tumour)
    if region.GetSize() != fixed.GetSize():
        region = sitk.Resample(region, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return region


def crop_for_registration(
    fixed: sitk.Image, moving: sitk.Image, region: sitk.Image, fixed_pad_mm: float = 10.0
) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """Crop both images to where the registration can look: exact, and far faster on whole CTs.

    Only voxels of ``region`` are sampled, so the fixed image is cropped to the region's bounding box
    plus ``fixed_pad_mm`` (room for the pyramid's smoothing). The moving image is cropped to that box
    grown by :data:`MAX_DISPLACEMENT_MM` + 5 mm, which holds every point a plausible transform can reach.
    """

    def box(image: sitk.Image, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[list[int], list[int]]:
        corners = [
            image.TransformPhysicalPointToContinuousIndex((float(x), float(y), float(z)))
            for x in (lo_mm[0], hi_mm[0])
            for y in (lo_mm[1], hi_mm[1])
            for z in (lo_mm[2], hi_mm[2])
        ]
        c = np.asarray(corners)
        size = image.GetSize()
        start = [max(0, int(np.floor(c[:, i].min()))) for i in range(3)]
        stop = [min(size[i], int(np.ceil(c[:, i].max())) + 1) for i in range(3)]
        return start, stop

    corners = np.asarray(_region_corners(region))
    lo_mm, hi_mm = corners.min(axis=0), corners.max(axis=0)
    f_start, f_stop = box(fixed, lo_mm - fixed_pad_mm, hi_mm + fixed_pad_mm)
    reach = fixed_pad_mm + MAX_DISPLACEMENT_MM + 5.0
    m_start, m_stop = box(moving, lo_mm - reach, hi_mm + reach)
    if any(b - a < 4 for a, b in zip(m_start, m_stop, strict=True)):
        return fixed, moving, region  # the moving image barely overlaps: let the metric report it
    fs = tuple(slice(a, b) for a, b in zip(f_start, f_stop, strict=True))
    ms = tuple(slice(a, b) for a, b in zip(m_start, m_stop, strict=True))
    return fixed[fs], moving[ms], region[fs]


def _region_corners(region: sitk.Image) -> list[tuple[float, ...]]:
    box = region_bbox(region)
    if box is None:
        return []
    lo, hi = box
    return [
        region.TransformIndexToPhysicalPoint((cx, cy, cz))
        for cx in (lo[0], hi[0])
        for cy in (lo[1], hi[1])
        for cz in (lo[2], hi[2])
    ]


def _centroid(region: sitk.Image) -> tuple[float, float, float]:
    """Physical centre of mass of the non-zero voxels (from the per-axis voxel counts)."""
    arr = sitk.GetArrayViewFromImage(region) != 0
    n = int(np.count_nonzero(arr))
    index = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        counts = np.count_nonzero(arr, axis=other)
        index.append(float(np.dot(np.arange(counts.size), counts)) / n)
    return tuple(region.TransformContinuousIndexToPhysicalPoint(index))  # type: ignore[return-value]


def register_phase(
    fixed: sitk.Image,
    moving: sitk.Image,
    region: sitk.Image,
    settings: RegistrationSettings,
    phase: str = "moving",
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` with the metric restricted to ``region``; never raises.

    Args:
        fixed: The mask phase (float, canonical orientation).
        moving: The phase to align (float, canonical orientation).
        region: uint8 fixed-space mask of the metric (:func:`metric_region`), non-empty.
        settings: Registration settings.
        phase: Name of the moving phase, for messages.

    Returns:
        The :class:`RegistrationResult`; its ``kept_transform()`` is identity after any fallback.
    """
    # ITK's metric threads follow the global default, not the method's own setting: pin it for
    # bitwise-reproducible sums, then restore it.
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(settings.threads)
    try:
        return _register(fixed, moving, region, settings, phase)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _register(
    fixed: sitk.Image, moving: sitk.Image, region: sitk.Image, settings: RegistrationSettings, phase: str
) -> RegistrationResult:
    lo, hi = settings.clip_hu
    if sitk.GetArrayViewFromImage(region).any():
        pad = max(settings.shrink_factors) * max(fixed.GetSpacing()) + 2 * max(fixed.GetSpacing())
        fixed, moving, region = crop_for_registration(fixed, moving, region, fixed_pad_mm=pad)
    fixed = sitk.Clamp(fixed, sitk.sitkFloat32, lo, hi)
    moving = sitk.Clamp(moving, sitk.sitkFloat32, lo, hi)
    affine = settings.transform == "affine"
    base: sitk.Transform = sitk.AffineTransform(3) if affine else sitk.Euler3DTransform()
    ttype = "AffineTransform" if affine else "Euler3DTransform"
    result = RegistrationResult(phase=phase, status="failed", transform_type=ttype)
    if _constant(fixed) or _constant(moving):
        result.message = "metric before registration is not finite (empty or constant image?)"
        log.warning("registration of %s failed, identity kept: %s", phase, result.message)
        return result
    try:
        if settings.initializer == "identity":
            initial = sitk.AffineTransform(3) if affine else sitk.Euler3DTransform()
            initial.SetCenter(_centroid(region))
        else:
            mode = (
                sitk.CenteredTransformInitializerFilter.GEOMETRY
                if settings.initializer == "geometry"
                else sitk.CenteredTransformInitializerFilter.MOMENTS
            )
            initial = sitk.CenteredTransformInitializer(fixed, moving, base, mode)
    except RuntimeError as exc:
        result.message = f"cannot initialise the transform: {_short(exc)}"
        log.warning("registration of %s failed, identity kept: %s", phase, result.message)
        return result
    result.fixed_parameters = tuple(initial.GetFixedParameters())
    identity = build_transform(ttype, (), result.fixed_parameters)
    try:
        final, iterations, stop = _optimise(fixed, moving, region, initial, settings)
        final = build_transform(ttype, tuple(final.GetParameters()), tuple(final.GetFixedParameters()))
    except RuntimeError as exc:
        result.message = f"optimizer error: {_short(exc)}"
        log.warning("registration of %s failed, identity kept: %s", phase, result.message)
        return result
    try:
        before, after = qc_metrics(fixed, moving, region, [identity, final], settings)
    except RuntimeError as exc:
        result.message = f"cannot evaluate the metric: {_short(exc)}"
        log.warning("registration of %s failed, identity kept: %s", phase, result.message)
        return result
    result.metric_before = before
    if not math.isfinite(before):
        result.message = "metric before registration is not finite (empty or constant image?)"
        log.warning("registration of %s failed, identity kept: %s", phase, result.message)
        return result
    result.parameters = tuple(final.GetParameters())
    result.fixed_parameters = tuple(final.GetFixedParameters())
    result.metric_after = after
    result.iterations = iterations
    corners = _region_corners(region)
    disp = max((float(np.linalg.norm(np.subtract(final.TransformPoint(c), c))) for c in corners), default=0.0)
    result.max_displacement_mm = disp
    if not math.isfinite(after):
        result.status, result.message = "failed", "metric after registration is not finite"
    elif after >= before - settings.min_improvement * abs(before) and disp <= settings.unchanged_tolerance_mm:
        result.status, result.message = "unchanged", f"already aligned (optimum within {disp:.2f} mm, no better)"
        return result
    elif after >= before - settings.min_improvement * abs(before):
        result.status, result.message = "worsened", f"metric not improved ({before:.5f} → {after:.5f})"
    elif disp > MAX_DISPLACEMENT_MM:
        result.status, result.message = "implausible", f"displacement {disp:.1f} mm > {MAX_DISPLACEMENT_MM} mm"
    else:
        result.status, result.message = "registered", stop
        result.kept_parameters = result.parameters
        return result
    log.warning("registration of %s fell back to identity: %s", phase, result.message)
    return result


def _optimise(
    fixed: sitk.Image, moving: sitk.Image, region: sitk.Image, initial: sitk.Transform, settings: RegistrationSettings
) -> tuple[sitk.Transform, int, str]:
    """Optimise the transform level by level on the pyramid of :func:`rccgrade.preprocess.pyramid.build_levels`.

    Each level is a single-resolution ITK registration started from the previous level's result. Its samples
    are at most ``settings.max_samples`` of the level's region; its largest step is ``learning_rate`` scaled by
    the level's shrink factor relative to the coarsest level, and it stops at ``min_step`` times its shrink
    factor (a coarse grid cannot place the optimum more finely).

    Returns:
        The optimised transform, the iterations of the last level, and its stop condition.
    """
    levels = build_levels(fixed, moving, region, list(settings.shrink_factors), list(settings.smoothing_sigmas_mm))
    coarsest = levels[0].shrink
    transform = initial
    iterations, stop = 0, ""
    for level in levels:
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.histogram_bins)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        n_region = int(sitk.GetArrayViewFromImage(level.region).sum())
        fraction = min(settings.sampling_percentage, settings.max_samples / max(n_region, 1))
        reg.SetMetricSamplingPercentage(fraction, settings.seed)
        reg.SetMetricFixedMask(level.region)
        # gradients at the sampled points only, not filtered over the whole (cropped) images
        reg.MetricUseFixedImageGradientFilterOff()
        reg.MetricUseMovingImageGradientFilterOff()
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=settings.learning_rate * level.shrink / coarsest,
            minStep=settings.min_step * level.shrink,
            numberOfIterations=settings.iterations,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(transform, inPlace=False)
        reg.SetNumberOfThreads(settings.threads)
        moving = level.moving
        if level is not levels[0]:
            # a refinement moves little: the moving image near where the current transform sends the region
            moving = _moving_crop(level.fixed, moving, [transform], margin_mm=REFINE_REACH_MM)
        out = reg.Execute(level.fixed, moving)
        if isinstance(out, sitk.CompositeTransform) and out.GetNumberOfTransforms() == 1:
            out = out.GetNthTransform(0)
        transform = out.Downcast() if hasattr(out, "Downcast") else out
        iterations, stop = int(reg.GetOptimizerIteration()), reg.GetOptimizerStopConditionDescription()
    return transform, iterations, stop


def _constant(image: sitk.Image) -> bool:
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    return not stats.GetMaximum() > stats.GetMinimum()


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "Description:" in ln:
            return ln.split("Description:", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


def resample_to(
    moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform, default_value: float
) -> sitk.Image:
    """``moving ∘ transform`` on ``reference``'s grid (linear interpolation, float32)."""
    return sitk.Resample(
        sitk.Cast(moving, sitk.sitkFloat32), reference, transform, sitk.sitkLinear, default_value, sitk.sitkFloat32
    )
