"""Tumour masks as hospitals store them: DICOM-SEG, RTSTRUCT and 3D Slicer ``.seg.nrrd``.

:func:`rccgrade.cohort.io.read_mask` hands these files here (:func:`is_structured_mask`), so every
stage that reads masks accepts them. One segment is chosen (:func:`select_segment`):

* by **name** (``mask_segment`` manifest column / ``--mask-segment``): case-insensitive, spaces and
  the British/American spelling ignored (``"tumour"`` finds ``"Tumor"``);
* else by **number** (``label``): the DICOM-SEG segment number, the RTSTRUCT ROI number or the
  Slicer label value;
* else the only segment. Several segments and no choice is an error listing the names present.

Geometry (all in LPS millimetres):

* **DICOM-SEG** is read with highdicom (``Segmentation.get_volume``); the affine of its frames gives
  the mask grid (any orientation). With a ``reference`` image (the mask phase) the mask is placed on
  the reference grid: exactly when the grids align (same spacing/direction, integer offset, as for a
  SEG drawn on that series), by nearest-neighbour resampling otherwise (logged).
* **RTSTRUCT** contours (CLOSED_PLANAR polygons, physical points) are rasterised onto the
  reference grid: each contour is mapped to continuous voxel indices, must lie in one slice plane
  of the reference (else it was drawn on another series: error), and the voxel centres inside the
  polygon are filled (``matplotlib.path.Path.contains_points``); contours on one slice combine
  by exclusive or, so holes stay holes. Without a ``reference`` the referenced series is looked
  up by its SeriesInstanceUID in the RTSTRUCT's folder and its siblings.
* **Slicer ``.seg.nrrd``** is read with SimpleITK; ``SegmentN_Name`` / ``_LabelValue`` / ``_Layer``
  header fields name the segments (overlapping segments are stored as layers = components).

Every error names the patient, the file and the segment names present.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.mask_grid import (  # noqa: F401 - moved there; names kept importable from here
    Segment,
    _binary,
    _grid_matrix,
    _norm_name,
    grids_aligned,
    on_reference_grid,
    select_segment,
)
from rccgrade.errors import ImageError

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".img", ".hdr", ".tif", ".tiff", ".png")


def mask_kind(path: str | Path) -> str | None:
    """``"seg"``, ``"rtstruct"``, ``"slicer"`` for a structured mask file, else None (a label image)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return "slicer"
    if path.is_dir() or not path.is_file() or name.endswith(_IMAGE_SUFFIXES):
        return None
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError):
        return None
    sop = str(getattr(ds, "SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    modality = str(getattr(ds, "Modality", "")).upper()
    if sop == SEG_SOP_CLASS or modality == "SEG":
        return "seg"
    if sop == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return "rtstruct"
    return None


def is_structured_mask(path: str | Path) -> bool:
    """True when :func:`read_structured_mask` must read ``path`` (DICOM-SEG, RTSTRUCT, .seg.nrrd)."""
    return mask_kind(path) is not None


# -- DICOM-SEG ---------------------------------------------------------------------------------
def dicom_seg_segments(seg: object) -> list[Segment]:
    """Segments of a highdicom ``Segmentation``."""
    out = []
    for number in seg.segment_numbers:  # type: ignore[attr-defined]
        desc = seg.get_segment_description(number)  # type: ignore[attr-defined]
        out.append(Segment(int(number), str(desc.segment_label)))
    return out


def read_dicom_seg(
    path: str | Path,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | None = None,
    patient_id: str | None = None,
    reference_series_uid: str | None = None,
) -> sitk.Image:
    """One segment of a DICOM-SEG as a uint8 {0,1} image (on ``reference``'s grid when given).

    Fractional segmentations are thresholded at 0.5.
    """
    import highdicom as hd

    path = Path(path)
    what = "DICOM-SEG"
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001 - highdicom raises many types for bad files
        raise ImageError(
            f"cannot read DICOM-SEG: {type(exc).__name__}: {exc}", patient_id=patient_id, path=path
        ) from None
    chosen = select_segment(
        dicom_seg_segments(seg), segment=segment, label=label, patient_id=patient_id, path=path, what=what
    )
    referenced = [str(r.SeriesInstanceUID) for r in getattr(seg, "ReferencedSeriesSequence", []) or []]
    _check_drawn_on(referenced, reference_series_uid, patient_id=patient_id, path=path, what=what)
    try:
        volume = seg.get_volume(segment_numbers=[chosen.number], combine_segments=True, relabel=True)
    except (ValueError, RuntimeError) as exc:
        raise ImageError(
            f"DICOM-SEG frames do not form a regular 3D volume ({exc}); re-export the segmentation from the CT series",
            patient_id=patient_id,
            path=path,
        ) from None
    arr = np.asarray(volume.array)
    if arr.ndim != 3:
        arr = arr.reshape(arr.shape[:3])
    binary = arr > (0.5 if np.issubdtype(arr.dtype, np.floating) else 0)
    affine = np.asarray(volume.affine, dtype=float)
    # array axes (a0, a1, a2) map to physical via affine columns 0..2; SimpleITK index (x, y, z) = (a2, a1, a0)
    cols = affine[:3, :3][:, ::-1]
    spacing = np.linalg.norm(cols, axis=0)
    img = _binary(binary)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in (cols / spacing).ravel()))
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    if not binary.any():
        raise ImageError(
            f"DICOM-SEG segment {chosen.number} '{chosen.name}' is empty", patient_id=patient_id, path=path
        )
    if reference is None:
        return img
    return on_reference_grid(img, reference, patient_id=patient_id, path=path, what=f"{what} '{chosen.name}'")


# -- RTSTRUCT ----------------------------------------------------------------------------------
def rtstruct_segments(ds: object) -> list[Segment]:
    """ROIs of an RTSTRUCT dataset (ROI number and name)."""
    return [
        Segment(int(roi.ROINumber), str(getattr(roi, "ROIName", "")))
        for roi in getattr(ds, "StructureSetROISequence", [])
    ]


def _referenced_series(ds: object) -> list[str]:
    uids = []
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(ref, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                uids.append(str(series.SeriesInstanceUID))
    return uids


def _check_drawn_on(
    referenced: list[str], reference_series_uid: str | None, *, patient_id: str | None, path: Path, what: str
) -> None:
    if reference_series_uid and referenced and reference_series_uid not in referenced:
        raise ImageError(
            f"{what} was drawn on series {', '.join(referenced)}, but the mask phase image is series "
            f"{reference_series_uid}; set the mask phase (cohort.mask_phase / --mask-phase) to the phase of the "
            "series it was drawn on",
            patient_id=patient_id,
            path=path,
        )


def _find_reference(path: Path, series_uids: list[str], patient_id: str | None) -> sitk.Image:
    """Read the series an RTSTRUCT references from its folder, its parent or the parent's sub-folders."""
    from rccgrade.cohort.dicom_read import dicom_series, read_dicom_series

    folders = [path.parent, path.parent.parent]
    folders += sorted(p for p in path.parent.parent.iterdir() if p.is_dir() and p != path.parent)
    for folder in folders:
        try:
            series = dicom_series(folder)
        except RuntimeError:
            continue
        for uid in series_uids:
            if uid in series:
                return read_dicom_series(folder, patient_id=patient_id, series_uid=uid, series=series)
    raise ImageError(
        f"the CT series the RTSTRUCT was drawn on ({', '.join(series_uids) or 'not named in the file'}) is not in "
        f"{path.parent} or its sibling folders; put the RTSTRUCT beside its CT series",
        patient_id=patient_id,
        path=path,
    )


def rasterise_contours(
    contours: list[np.ndarray], reference: sitk.Image, *, patient_id: str | None, path: str | Path, what: str
) -> np.ndarray:
    """Fill closed planar contours (each (n, 3) LPS mm) on ``reference``'s grid; array (z, y, x) uint8.

    A contour must lie in one slice plane of the reference (within 0.25 slice); contours of one slice
    combine by exclusive or (holes).
    """
    from matplotlib.path import Path as PolyPath

    size = reference.GetSize()
    out = np.zeros((size[2], size[1], size[0]), dtype=bool)
    inverse = np.linalg.inv(_grid_matrix(reference))
    origin = np.asarray(reference.GetOrigin(), dtype=float)
    for points in contours:
        idx = (points - origin) @ inverse.T  # continuous (x, y, z) indices
        z = idx[:, 2]
        k = int(np.rint(np.median(z)))
        if np.ptp(z) > 0.5 or abs(float(np.median(z)) - k) > 0.25:
            raise ImageError(
                f"{what}: a contour is not in a slice plane of the reference image (slice index "
                f"{z.min():.2f}..{z.max():.2f}); the structure set was drawn on another series. Give the mask "
                "phase of the series it references",
                patient_id=patient_id,
                path=path,
            )
        if not 0 <= k < size[2]:
            raise ImageError(
                f"{what}: a contour lies outside the reference image (slice {k} of {size[2]}); the structure set "
                "was drawn on another series",
                patient_id=patient_id,
                path=path,
            )
        if len(points) < 3:
            continue
        # only the voxel centres in the polygon's bounding box can be inside
        x0, y0 = (max(0, int(np.ceil(v))) for v in idx[:, :2].min(axis=0))
        x1, y1 = (min(n - 1, int(np.floor(v))) for v, n in zip(idx[:, :2].max(axis=0), size[:2], strict=True))
        if x1 < x0 or y1 < y0:
            continue
        yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        centres = np.column_stack([xx.ravel(), yy.ravel()]).astype(float)
        ring = np.vstack([idx[:, :2], idx[:1, :2]])  # closed=True drops the last vertex: repeat the first
        inside = PolyPath(ring, closed=True).contains_points(centres).reshape(yy.shape)
        out[k, y0 : y1 + 1, x0 : x1 + 1] ^= inside
    return out.astype(np.uint8)


def read_rtstruct(
    path: str | Path,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | None = None,
    patient_id: str | None = None,
    reference_series_uid: str | None = None,
) -> sitk.Image:
    """One ROI of an RTSTRUCT rasterised onto ``reference`` (or the referenced series found nearby)."""
    import pydicom

    path = Path(path)
    what = "RTSTRUCT"
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(
            f"cannot read RTSTRUCT: {type(exc).__name__}: {exc}", patient_id=patient_id, path=path
        ) from None
    chosen = select_segment(
        rtstruct_segments(ds), segment=segment, label=label, patient_id=patient_id, path=path, what=what
    )
    _check_drawn_on(_referenced_series(ds), reference_series_uid, patient_id=patient_id, path=path, what=what)
    contours: list[np.ndarray] = []
    for roi in getattr(ds, "ROIContourSequence", []):
        if int(roi.ReferencedROINumber) != chosen.number:
            continue
        for contour in getattr(roi, "ContourSequence", []):
            kind = str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR")).upper()
            if kind not in ("CLOSED_PLANAR", "CLOSEDPLANAR"):
                continue
            data = np.asarray([float(v) for v in contour.ContourData], dtype=float)
            if data.size % 3:
                raise ImageError(
                    f"{what} ROI '{chosen.name}': ContourData holds {data.size} numbers, not triplets",
                    patient_id=patient_id,
                    path=path,
                )
            contours.append(data.reshape(-1, 3))
    if not contours:
        raise ImageError(
            f"{what} ROI {chosen.number} '{chosen.name}' has no closed planar contour; draw the tumour or choose "
            f"another ROI (present: {', '.join(s.name for s in rtstruct_segments(ds))})",
            patient_id=patient_id,
            path=path,
        )
    if reference is None:
        reference = _find_reference(path, _referenced_series(ds), patient_id)
    what_roi = f"{what} ROI '{chosen.name}'"
    arr = rasterise_contours(contours, reference, patient_id=patient_id, path=path, what=what_roi)
    if not arr.any():
        raise ImageError(
            f"{what_roi}: the contours enclose no voxel centre of the reference image", patient_id=patient_id, path=path
        )
    return _binary(arr, like=reference)


# -- Slicer .seg.nrrd --------------------------------------------------------------------------
def slicer_segments(img: sitk.Image) -> list[Segment]:
    """Segments named in a Slicer ``.seg.nrrd`` header (``SegmentN_Name``, ``_LabelValue``, ``_Layer``)."""
    keys = set(img.GetMetaDataKeys())
    out = []
    n = 0
    while f"Segment{n}_Name" in keys or f"Segment{n}_ID" in keys:

        def meta(field: str, default: str, n: int = n) -> str:
            key = f"Segment{n}_{field}"
            return img.GetMetaData(key).strip() if key in keys else default

        name = meta("Name", meta("ID", f"Segment_{n + 1}"))
        value = int(float(meta("LabelValue", "1")))
        layer = int(float(meta("Layer", str(n) if img.GetNumberOfComponentsPerPixel() > 1 else "0")))
        out.append(Segment(value, name, layer))
        n += 1
    return out


def read_slicer_seg(
    path: str | Path,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | None = None,
    patient_id: str | None = None,
) -> sitk.Image:
    """One segment of a 3D Slicer ``.seg.nrrd`` as uint8 {0,1} (on ``reference``'s grid when given)."""
    path = Path(path)
    what = "Slicer segmentation"
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageError(f"cannot read {what}: {str(exc).strip()[-300:]}", patient_id=patient_id, path=path) from None
    segments = slicer_segments(img)
    if not segments:
        raise ImageError(
            f"{what} has no SegmentN_Name fields; save it from 3D Slicer as .seg.nrrd or give a label image with "
            "the label column",
            patient_id=patient_id,
            path=path,
        )
    if label is not None and segment is None:
        by_value = [s for s in segments if s.number == label]
        if len({s.layer for s in by_value}) > 1:
            raise ImageError(
                f"{what}: label value {label} is used on several layers; choose the segment by name",
                patient_id=patient_id,
                path=path,
            )
    chosen = select_segment(segments, segment=segment, label=label, patient_id=patient_id, path=path, what=what)
    if img.GetNumberOfComponentsPerPixel() > 1:
        if chosen.layer >= img.GetNumberOfComponentsPerPixel():
            raise ImageError(
                f"{what}: segment '{chosen.name}' is on layer {chosen.layer} but the file has "
                f"{img.GetNumberOfComponentsPerPixel()}",
                patient_id=patient_id,
                path=path,
            )
        img = sitk.VectorIndexSelectionCast(img, chosen.layer)
    arr = sitk.GetArrayViewFromImage(img) == chosen.number
    if not arr.any():
        raise ImageError(f"{what}: segment '{chosen.name}' is empty", patient_id=patient_id, path=path)
    mask = _binary(arr, like=img)
    if reference is None:
        return mask
    return on_reference_grid(mask, reference, patient_id=patient_id, path=path, what=f"{what} '{chosen.name}'")


def read_structured_mask(
    path: str | Path,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | None = None,
    patient_id: str | None = None,
    reference_series_uid: str | None = None,
) -> sitk.Image:
    """Read a DICOM-SEG, RTSTRUCT or Slicer ``.seg.nrrd`` segment as a uint8 {0,1} mask.

    Args:
        path: The mask file.
        segment: Segment / ROI name (case-insensitive; tumour = tumor).
        label: Segment number / ROI number / label value when no name is given.
        reference: Image of the mask phase; the mask is returned on its grid (required in effect
            for RTSTRUCT, which has no grid of its own; without it the referenced series is
            searched beside the file).
        patient_id: Named in errors.
        reference_series_uid: SeriesInstanceUID of ``reference`` when known (a DICOM series): a
            DICOM-SEG / RTSTRUCT drawn on another series is refused.

    Raises:
        ImageError: unreadable file, segment not found (listing those present), empty segment,
            drawn on another series than ``reference_series_uid``,
            contours off the reference's slices, segment outside the reference image.
    """
    kind = mask_kind(path)
    if kind == "seg":
        return read_dicom_seg(
            path,
            segment=segment,
            label=label,
            reference=reference,
            patient_id=patient_id,
            reference_series_uid=reference_series_uid,
        )
    if kind == "rtstruct":
        return read_rtstruct(
            path,
            segment=segment,
            label=label,
            reference=reference,
            patient_id=patient_id,
            reference_series_uid=reference_series_uid,
        )
    if kind == "slicer":
        return read_slicer_seg(path, segment=segment, label=label, reference=reference, patient_id=patient_id)
    raise ImageError(
        "not a DICOM-SEG, RTSTRUCT or Slicer .seg.nrrd file; give a label image (NIfTI/NRRD/MHA) instead",
        patient_id=patient_id,
        path=path,
    )
