"""Reading one case's phases and mask for preprocessing: canonical orientation, snapped geometry, checks.

Images are read whole (a gzip-compressed NIfTI cannot be read in parts), then cropped at once by the
caller (:mod:`rccgrade.preprocess.crop`), so only the crop is ever cast, registered, resampled or written.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.types import Case
from rccgrade.errors import ImageError, PreprocessError
from rccgrade.preprocess.orientation import to_canonical

log = logging.getLogger(__name__)


def snap_geometry(image: sitk.Image) -> sitk.Image:
    """Round origin (to 0.1 µm) and spacing (to 1e-6 mm) in place, returning the image.

    NIfTI stores geometry in float32 and DICOM in decimal strings, so the same scan read from both
    differs by ~1e-6 mm — enough to flip resampled samples that sit exactly between two voxels. Rounding
    far below any physical meaning makes both give identical arrays.
    """
    image.SetOrigin(tuple(round(float(v), 4) for v in image.GetOrigin()))
    image.SetSpacing(tuple(round(float(v), 6) for v in image.GetSpacing()))
    return image


def read_phase(case: Case, phase: str, orientation: str) -> sitk.Image:
    """One phase of a case, reoriented to ``orientation`` with snapped geometry.

    Raises:
        ImageError: unreadable, or not a 3-D single-channel image (names the patient and the file).
    """
    from rccgrade.cohort.io import read_image

    img = read_image(case.images[phase], patient_id=case.patient_id, series_uid=case.series_uids.get(phase))
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(
            f"the {phase} phase is not a 3-D scalar image; give a single-channel CT volume",
            patient_id=case.patient_id,
            path=case.images[phase],
        )
    return snap_geometry(to_canonical(img, orientation))


def hu_int16(image: sitk.Image) -> sitk.Image:
    """HU rounded to int16 for storage (interpolation error ≤ 0.5 HU, far below CT noise; files 2–4× smaller).

    Images whose values do not fit int16 are kept as float32.
    """
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() < -32768 or stats.GetMaximum() > 32767:
        return sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(image), sitk.sitkInt16)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """Same size, and spacing, origin and direction equal within ``tol`` (origin: relative to the spacing)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * max(a.GetSpacing()) * 10)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def read_case_mask(case: Case, fixed: sitk.Image, orientation: str) -> sitk.Image:
    """The binary tumour mask (uint8) on ``fixed``'s grid (the mask phase, whole image).

    Raises:
        ImageError: unreadable mask (see :func:`rccgrade.cohort.io.read_mask`).
        PreprocessError: the mask is empty on the mask phase's grid.
    """
    from rccgrade.cohort.io import read_mask

    mask = read_mask(
        case.mask,
        patient_id=case.patient_id,
        series_uid=case.series_uids.get("mask"),
        label=case.label,
        segment=case.mask_segment,
        reference=fixed,
    )
    mask = snap_geometry(to_canonical(mask, orientation))
    if same_grid(mask, fixed):
        mask.CopyInformation(fixed)
    else:
        log.warning(
            "patient %s: mask grid differs from the %s phase; resampled onto it (nearest neighbour)",
            case.patient_id,
            case.mask_phase,
        )
        mask = sitk.Resample(mask, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise PreprocessError(
            f"the tumour mask does not overlap the {case.mask_phase} phase image; check that the mask belongs "
            "to this phase (manifest column mask / mask_phase)",
            patient_id=case.patient_id,
            path=case.mask,
        )
    return mask
