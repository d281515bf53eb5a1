"""The tumour's working region: every phase is cropped to it right after reading, before any costly step.

Preprocessing only ever looks near the tumour: the registration metric (the mask dilated by
``registration.metric_margin_mm``), the ROI slice images and their QC context (≤ 30 mm), and the
registered images handed to radiomics (``output_margin_mm``). So the mask phase and its mask are cropped
to the tumour's bounding box grown by the largest of these margins (:func:`work_box`), and each moving phase
to that box grown by the largest displacement a plausible registration can make (:func:`crop_moving`).
Casting, registration, resampling and writing then touch a few percent of a 512² × 300 volume instead of
all of it, and nothing outside the box could have changed a result: the crops are exact, which
:func:`covers` checks for the transform actually applied (else the whole moving image is used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from rccgrade.preprocess.registration import MAX_DISPLACEMENT_MM
from rccgrade.preprocess.settings import PreprocessSettings

CONTEXT_MM = 30.0
"""Context around the tumour shown in the QC montage (mm)."""

REGISTRATION_PAD_MM = 10.0
"""Room around the metric region for the registration pyramid's smoothing (as in
:func:`rccgrade.preprocess.registration.crop_for_registration`)."""

Box = tuple[list[int], list[int]]
"""Index box of an image: ``(start, stop)`` per axis (x, y, z), stop exclusive."""


def mask_bbox(mask: sitk.Image) -> Box:
    """Index bounding box (x, y, z start/stop) of the non-zero voxels of a uint8 mask (non-empty)."""
    from rccgrade.preprocess.registration_qc import region_bbox

    box = region_bbox(mask)
    if box is None:
        raise ValueError("empty mask has no bounding box")
    return box[0], [v + 1 for v in box[1]]


def roi_pad_mm(settings: PreprocessSettings, context_mm: float = CONTEXT_MM) -> tuple[float, float]:
    """In-plane and through-plane padding (mm) of the ROI window around the tumour (see :func:`roi_window`)."""
    margins = [s.margin_mm for s in settings.roi_specs] + [settings.crop_margin_mm]
    return max(margins) + max(context_mm, settings.crop_margin_mm) + 2.0, max(margins)


def work_margin_mm(settings: PreprocessSettings) -> float:
    """Margin (mm) of the working region around the tumour's bounding box, the same on every axis."""
    inplane, through = roi_pad_mm(settings)
    needs = [inplane, through]
    if settings.registration.enabled:
        needs.append(settings.registration.metric_margin_mm + REGISTRATION_PAD_MM)
    if settings.output_margin_mm is not None:
        needs.append(settings.output_margin_mm)
    return max(needs)


def work_box(mask: sitk.Image, settings: PreprocessSettings) -> Box | None:
    """Index box of the working region on the mask phase's grid, or None for the whole image.

    The tumour's bounding box grown by :func:`work_margin_mm` plus two voxels (interpolation neighbours),
    clipped to the image. None when ``output_margin_mm`` is None (registered images kept whole).
    """
    if settings.output_margin_mm is None:
        return None
    lo, hi = mask_bbox(mask)
    margin = work_margin_mm(settings)
    sp, size = mask.GetSpacing(), mask.GetSize()
    start = [max(0, lo[i] - math.ceil(margin / sp[i]) - 2) for i in range(3)]
    stop = [min(size[i], hi[i] + math.ceil(margin / sp[i]) + 2) for i in range(3)]
    return start, stop


def crop(image: sitk.Image, box: Box | None) -> sitk.Image:
    """``image`` restricted to ``box`` (same spacing and direction, origin moved); the image itself for None."""
    if box is None:
        return image
    start, stop = box
    if list(start) == [0, 0, 0] and list(stop) == list(image.GetSize()):
        return image
    return image[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]


def _corners(image: sitk.Image) -> np.ndarray:
    size = image.GetSize()
    return np.asarray(
        [
            image.TransformIndexToPhysicalPoint((x, y, z))
            for x in (0, size[0] - 1)
            for y in (0, size[1] - 1)
            for z in (0, size[2] - 1)
        ]
    )


def physical_box(image: sitk.Image, lo_mm: np.ndarray, hi_mm: np.ndarray) -> Box:
    """Index box of ``image`` holding the physical box ``[lo_mm, hi_mm]`` (clipped to the image)."""
    c = np.asarray(
        [
            image.TransformPhysicalPointToContinuousIndex((float(x), float(y), float(z)))
            for x in (lo_mm[0], hi_mm[0])
            for y in (lo_mm[1], hi_mm[1])
            for z in (lo_mm[2], hi_mm[2])
        ]
    )
    size = image.GetSize()
    start = [min(size[i] - 1, max(0, int(np.floor(c[:, i].min())) - 1)) for i in range(3)]
    stop = [max(start[i] + 1, min(size[i], int(np.ceil(c[:, i].max())) + 2)) for i in range(3)]
    return start, stop


@dataclass(frozen=True)
class MovingCrop:
    """A moving phase cropped around the working region.

    Attributes:
        image: The crop.
        start: Its first voxel in the whole image (x, y, z).
        stop: One past its last voxel.
        full_size: Size of the whole image.
    """

    image: sitk.Image
    start: tuple[int, ...]
    stop: tuple[int, ...]
    full_size: tuple[int, ...]


def crop_moving(moving: sitk.Image, reference: sitk.Image, reach_mm: float | None = None) -> MovingCrop:
    """Crop ``moving`` to ``reference``'s extent grown by ``reach_mm`` (default: the largest plausible
    displacement, :data:`MAX_DISPLACEMENT_MM`, plus the registration pad and 5 mm)."""
    reach = MAX_DISPLACEMENT_MM + REGISTRATION_PAD_MM + 5.0 if reach_mm is None else reach_mm
    corners = _corners(reference)
    start, stop = physical_box(moving, corners.min(axis=0) - reach, corners.max(axis=0) + reach)
    image = crop(moving, (start, stop))
    return MovingCrop(image=image, start=tuple(start), stop=tuple(stop), full_size=tuple(moving.GetSize()))


def covers(moving: MovingCrop, reference: sitk.Image, transform: sitk.Transform) -> bool:
    """True when resampling the crop on ``reference`` through ``transform`` equals resampling the whole image.

    Every sample point ``transform(x)`` (x a voxel centre of ``reference``) must fall at least one voxel
    inside the crop wherever the crop is not the whole image's edge, so linear interpolation never reaches a
    voxel outside it. Rigid and affine transforms map the reference box to a convex set whose bounds are
    those of its mapped corners, so checking the eight corners is enough.
    """
    pts = [transform.TransformPoint(tuple(float(v) for v in c)) for c in _corners(reference)]
    ci = np.asarray([moving.image.TransformPhysicalPointToContinuousIndex(p) for p in pts])
    size = moving.image.GetSize()
    for i in range(3):
        if moving.start[i] > 0 and ci[:, i].min() < 1.0:
            return False
        if moving.stop[i] < moving.full_size[i] and ci[:, i].max() > size[i] - 2.0:
            return False
    return True


def inplane_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Reference grid with in-plane spacing ``spacing_mm`` (slice axis unchanged), same origin/direction."""
    sp = image.GetSpacing()
    size = image.GetSize()
    new_size = [max(1, math.floor((size[i] - 1) * sp[i] / spacing_mm + 1e-4) + 1) for i in range(2)] + [size[2]]
    ref = sitk.Image(new_size, sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm, spacing_mm, sp[2]))
    ref.SetOrigin(image.GetOrigin())
    ref.SetDirection(image.GetDirection())
    return ref


def roi_window(mask: sitk.Image, settings: PreprocessSettings, context_mm: float = CONTEXT_MM) -> Box:
    """Index box (x, y, z start/stop) around the tumour large enough for every ROI setting and QC context."""
    lo, hi = mask_bbox(mask)
    pad_inplane, pad_through = roi_pad_mm(settings, context_mm)
    sp = mask.GetSpacing()
    size = mask.GetSize()
    start, stop = [], []
    for i in range(3):
        pad = math.ceil(pad_inplane / sp[i]) + 1 if i < 2 else math.ceil(pad_through / sp[i]) + 1
        start.append(max(0, lo[i] - pad))
        stop.append(min(size[i], hi[i] + pad))
    return start, stop
