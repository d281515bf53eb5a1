"""Segments of a structured mask and how a decoded mask lands on the reference image grid.

Split from :mod:`rccgrade.cohort.masks` (which re-exports every name): choosing one segment by name or number,
checking whether two grids align, and placing a mask on the mask phase's grid.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.errors import ImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """One segment / ROI of a mask file.

    Attributes:
        number: DICOM-SEG segment number, RTSTRUCT ROI number or Slicer label value.
        name: Segment label / ROI name.
        layer: Slicer layer (component) holding the segment; 0 elsewhere.
    """

    number: int
    name: str
    layer: int = 0


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower()).replace("tumour", "tumor")


def select_segment(
    segments: list[Segment],
    *,
    segment: str | None,
    label: int | None,
    patient_id: str | None,
    path: str | Path,
    what: str,
) -> Segment:
    """The segment chosen by ``segment`` (name) or ``label`` (number), else the only one.

    Raises:
        ImageError: no segments, name/number absent, a name matching several segments, or several
            segments without a choice; the message lists ``number 'name'`` of every segment.
    """
    listing = ", ".join(f"{s.number} '{s.name}'" for s in segments) or "none"
    if not segments:
        raise ImageError(f"{what} holds no segment; export the tumour contour", patient_id=patient_id, path=path)
    if segment is not None:
        hits = [s for s in segments if _norm_name(s.name) == _norm_name(segment)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ImageError(
                f"{what} has no segment named '{segment}'; segments present: {listing}. Set the mask_segment "
                "column (or --mask-segment) to one of these names",
                patient_id=patient_id,
                path=path,
            )
        raise ImageError(
            f"{what} has {len(hits)} segments named '{segment}' ({', '.join(str(s.number) for s in hits)}); "
            f"choose one by number with the label column (segments present: {listing})",
            patient_id=patient_id,
            path=path,
        )
    if label is not None:
        hits = [s for s in segments if s.number == label]
        if not hits:
            raise ImageError(
                f"{what} has no segment number {label}; segments present: {listing}. Fix the label column or "
                "choose by name with mask_segment",
                patient_id=patient_id,
                path=path,
            )
        return hits[0]
    if len(segments) == 1:
        return segments[0]
    raise ImageError(
        f"{what} holds several segments ({listing}); choose the tumour with the mask_segment column "
        "(or --mask-segment NAME) or by number with the label column",
        patient_id=patient_id,
        path=path,
    )


# -- geometry ----------------------------------------------------------------------------------
def _grid_matrix(img: sitk.Image) -> np.ndarray:
    """3×3 matrix M with physical = origin + M @ index."""
    d = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    return d @ np.diag(np.asarray(img.GetSpacing(), dtype=float))


def grids_aligned(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when ``a`` and ``b`` share one voxel lattice (within ``tol`` voxel).

    The lattices may differ by axis order and direction (a reoriented copy of the same grid): the map
    from ``a``'s indices to ``b``'s must be an integer matrix of determinant ±1 plus an integer offset.
    """
    transform = np.linalg.solve(_grid_matrix(b), _grid_matrix(a))
    if (
        not np.allclose(transform, np.rint(transform), atol=tol)
        or abs(abs(np.linalg.det(np.rint(transform))) - 1) > 0.5
    ):
        return False
    offset = np.linalg.solve(_grid_matrix(b), np.asarray(a.GetOrigin()) - np.asarray(b.GetOrigin()))
    return bool(np.all(np.abs(offset - np.rint(offset)) < tol))


def on_reference_grid(
    mask: sitk.Image, reference: sitk.Image, *, patient_id: str | None, path: str | Path, what: str
) -> sitk.Image:
    """``mask`` (uint8 {0,1}) on the grid of ``reference``: exact when aligned, else nearest neighbour.

    Raises:
        ImageError: part of the segment lies outside the reference image (drawn on another series?).
    """
    inside = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    aligned = grids_aligned(mask, reference)
    if not aligned:
        log.warning(
            "patient %s: %s is not on the reference image's voxel grid; resampled onto it (nearest neighbour)",
            patient_id,
            path,
        )
    out = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    placed = int(np.count_nonzero(sitk.GetArrayViewFromImage(out)))
    if aligned and placed != inside:
        raise ImageError(
            f"{what}: {inside - placed} of {inside} segment voxels lie outside the reference image; the "
            "segmentation was made on another series or field of view. Give the mask of this phase's series "
            "or set the mask phase to the series it was drawn on",
            patient_id=patient_id,
            path=path,
        )
    if placed == 0:
        raise ImageError(
            f"{what}: the segment does not overlap the reference image; it was drawn on another series. Set the "
            "mask phase to the series it was drawn on",
            patient_id=patient_id,
            path=path,
        )
    return out


def _binary(arr: np.ndarray, like: sitk.Image | None = None) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.astype(np.uint8)))
    if like is not None:
        img.CopyInformation(like)
    return img
