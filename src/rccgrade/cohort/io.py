"""Read CT images and masks: NIfTI, NRRD, MHA/MHD files and DICOM series folders.

Every reader failure becomes an :class:`~rccgrade.errors.ImageError` naming the patient, the file
and the fix, so a batch stage can put it in its failure table and carry on.

DICOM folders: the series are listed with GDCM (``ImageSeriesReader.GetGDCMSeriesIDs``); the one
with the most files is read unless a SeriesInstanceUID is given. GDCM sorts the slices by their
position along the slice normal, and ITK applies RescaleSlope/RescaleIntercept, so the returned
image is in HU (int16 when the values fit, else float32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.dicom_read import (  # noqa: F401 - moved there; names kept importable from here
    _INT_TYPES,
    _check_exists,
    _check_slice_spacing,
    _first_line,
    _floats,
    _to_hu_type,
    choose_series,
    dicom_series,
    read_dicom_series,
)
from rccgrade.cohort.storage import (  # noqa: F401 - moved there; names kept importable from here
    _CHUNK,
    _GZIP_MAGIC,
    _HEAD_BYTES,
    StorageCheck,
    _read_content,
    check_storage,
    ensure_complete,
    nifti_layout,
)
from rccgrade.errors import ImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image lies in physical space (LPS, millimetres).

    Attributes:
        size: Voxels along x, y, z (ITK order).
        spacing: Voxel size in mm along x, y, z.
        origin: Physical position (mm) of the centre of voxel (0, 0, 0).
        direction: Row-major direction cosine matrix (9 values for 3D).
        dimension: Number of image dimensions.
        components: Components per voxel (1 for a scalar image).
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    dimension: int
    components: int = 1

    def physical_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned physical bounding box (min corner, max corner) in mm of the voxel extent.

        The extent runs from the outer face of the first voxel to that of the last (index −0.5 to
        size − 0.5), so two images that share only a face of a voxel still touch.
        """
        d = self.dimension
        direction = np.asarray(self.direction, dtype=float).reshape(d, d)
        spacing = np.asarray(self.spacing, dtype=float)
        origin = np.asarray(self.origin, dtype=float)
        size = np.asarray(self.size, dtype=float)
        corners = []
        for mask in range(2**d):
            idx = np.array([(size[i] - 0.5) if (mask >> i) & 1 else -0.5 for i in range(d)])
            corners.append(origin + direction @ (idx * spacing))
        pts = np.vstack(corners)
        return pts.min(axis=0), pts.max(axis=0)


def image_geometry(img: sitk.Image | sitk.ImageFileReader) -> ImageGeometry:
    """Geometry of an image, or of a file reader after ``ReadImageInformation`` (no pixels needed)."""
    return ImageGeometry(
        size=tuple(int(v) for v in img.GetSize()),
        spacing=tuple(float(v) for v in img.GetSpacing()),
        origin=tuple(float(v) for v in img.GetOrigin()),
        direction=tuple(float(v) for v in img.GetDirection()),
        dimension=int(img.GetDimension()),
        components=int(
            img.GetNumberOfComponents()
            if isinstance(img, sitk.ImageFileReader)
            else img.GetNumberOfComponentsPerPixel()
        ),
    )


def read_image_information(
    path: str | Path, *, patient_id: str | None = None, series_uid: str | None = None
) -> ImageGeometry:
    """Geometry of an image without reading its pixels (files); DICOM series are read in full.

    Raises:
        ImageError: missing or unreadable.
    """
    path = Path(path)
    _check_exists(path, patient_id, "image")
    if path.is_dir():
        return image_geometry(read_dicom_series(path, patient_id=patient_id, series_uid=series_uid))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageError(
            f"cannot read image header: {_first_line(exc)}; use NIfTI (.nii/.nii.gz), NRRD, MHA or a "
            "DICOM series folder, and check the file is not truncated",
            patient_id=patient_id,
            path=path,
        ) from None
    return image_geometry(reader)


def read_image(path: str | Path, *, patient_id: str | None = None, series_uid: str | None = None) -> sitk.Image:
    """Read a CT image in HU from a file (NIfTI, NRRD, MHA/MHD …) or a DICOM series folder.

    Args:
        path: Image file, or folder holding a DICOM series.
        patient_id: Named in error messages.
        series_uid: For DICOM folders holding several series, the SeriesInstanceUID to read
            (default: the series with the most files).

    Returns:
        The image as stored (no reorientation); DICOM series are rescaled to HU and returned as
        int16 when the values are integers that fit, else float32.

    Raises:
        ImageError: missing, unreadable, cut short (:func:`check_storage`), or the requested series is absent.
    """
    path = Path(path)
    _check_exists(path, patient_id, "image")
    if path.is_dir():
        return read_dicom_series(path, patient_id=patient_id, series_uid=series_uid)
    image = _read_checked(path, patient_id, "image")
    if image is not None:
        return image
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageError(
            f"cannot read image: {_first_line(exc)}; use NIfTI (.nii/.nii.gz), NRRD, MHA or a DICOM series "
            "folder, and check the file is not truncated",
            patient_id=patient_id,
            path=path,
        ) from None


def _read_checked(path: Path, patient_id: str | None, what: str) -> sitk.Image | None:
    """The image decoded in the same pass that checks it is complete (:func:`rccgrade.cohort.nifti_read.read_checked`),
    or None when ITK must read it; raises an :class:`ImageError` naming the patient and file when it is cut short."""
    from rccgrade.cohort.nifti_read import read_checked

    found, image = read_checked(path)
    if found.problem is not None:
        raise ImageError(f"{what} is incomplete: {found.problem}", patient_id=patient_id, path=path)
    return image


def mask_labels(mask: sitk.Image) -> list[float]:
    """Distinct non-zero values of a mask, sorted."""
    arr = sitk.GetArrayViewFromImage(mask)
    values = distinct_values(arr)
    return [float(v) for v in values if v != 0]


def distinct_values(arr: np.ndarray) -> np.ndarray:
    """``np.unique(arr)``, by counting for 8- and 16-bit integers: one pass in chunks of 1 M voxels, instead of
    sorting a copy of the volume (``np.bincount`` would otherwise cast the whole volume to int64)."""
    if arr.dtype not in (np.uint8, np.uint16, np.int8, np.int16):
        return np.unique(arr)
    info = np.iinfo(arr.dtype)
    shift = -int(info.min)
    counts = np.zeros(int(info.max) + shift + 1, np.int64)
    flat = arr.reshape(-1)
    step = 1 << 20
    for i in range(0, flat.size, step):
        chunk = flat[i : i + step]
        counts += np.bincount(chunk.astype(np.int32) + shift if shift else chunk, minlength=counts.size)
    return (np.flatnonzero(counts) - shift).astype(arr.dtype)


def binarize_mask(
    mask: sitk.Image, *, label: int | None = None, patient_id: str | None = None, path: str | Path | None = None
) -> sitk.Image:
    """Turn a mask into a uint8 {0, 1} image, keeping ``label`` in a multi-label mask.

    A mask with a single non-zero value (1, 255 …) is binary. With several non-zero values the
    tumour label must be chosen with ``label``.

    Raises:
        ImageError: several labels and no ``label``; ``label`` absent; non-integer values; empty.
    """
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(
            "mask has several components per voxel; save the mask as a single-channel label image",
            patient_id=patient_id,
            path=path,
        )
    arr = sitk.GetArrayViewFromImage(mask)
    values = distinct_values(arr)
    nonzero = values[values != 0]
    if np.any(nonzero != np.rint(nonzero)):
        raise ImageError(
            "mask holds non-integer values (an interpolated or probability map?); threshold it and save it "
            "as an integer label image",
            patient_id=patient_id,
            path=path,
        )
    if label is not None:
        if label not in set(nonzero.tolist()):
            raise ImageError(
                f"label {label} not found in the mask; labels present: {sorted(int(v) for v in nonzero)}. "
                "Choose one of them with --label",
                patient_id=patient_id,
                path=path,
            )
        out_arr = (arr == label).astype(np.uint8)
    else:
        if nonzero.size == 0:
            raise ImageError(
                "mask is empty (no non-zero voxel); redraw the tumour or check you gave the right file",
                patient_id=patient_id,
                path=path,
            )
        if nonzero.size > 1:
            raise ImageError(
                f"mask is not binary: labels {sorted(int(v) for v in nonzero)}; choose the tumour label with "
                "--label N (or the manifest's label column)",
                patient_id=patient_id,
                path=path,
            )
        out_arr = (arr != 0).astype(np.uint8)
    out = sitk.GetImageFromArray(out_arr)
    out.CopyInformation(mask)
    return out


def read_mask(
    path: str | Path,
    *,
    patient_id: str | None = None,
    series_uid: str | None = None,
    label: int | None = None,
    segment: str | None = None,
    reference: sitk.Image | None = None,
) -> sitk.Image:
    """Read a tumour mask as a uint8 {0, 1} image (see :func:`binarize_mask`).

    DICOM-SEG, RTSTRUCT and Slicer ``.seg.nrrd`` files go to :mod:`rccgrade.cohort.masks`, which
    chooses the segment by name (``segment``) or number (``label``) and places it on the grid of
    ``reference`` (the mask phase image) when given.

    Raises:
        ImageError: missing, unreadable, empty, not binary without ``label``, or ``label`` absent.
    """
    path = Path(path)
    _check_exists(path, patient_id, "mask")
    from rccgrade.cohort import masks

    if masks.is_structured_mask(path):
        return masks.read_structured_mask(
            path, segment=segment, label=label, reference=reference, patient_id=patient_id
        )
    if segment is not None:
        raise ImageError(
            f"mask segment '{segment}' requested, but the mask is a plain label image without segment names; "
            "choose its label value with the label column (or --label) instead",
            patient_id=patient_id,
            path=path,
        )
    if path.is_dir():
        uid, files = choose_series(path, series_uid=series_uid, patient_id=patient_id)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            raw = reader.Execute()
        except RuntimeError as exc:
            raise ImageError(
                f"cannot read DICOM mask series {uid}: {_first_line(exc)}", patient_id=patient_id, path=path
            ) from None
    else:
        try:
            raw = _read_checked(path, patient_id, "mask")
            if raw is None:
                raw = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise ImageError(
                f"cannot read mask: {_first_line(exc)}; save masks as NIfTI, NRRD or MHA label images",
                patient_id=patient_id,
                path=path,
            ) from None
    return binarize_mask(raw, label=label, patient_id=patient_id, path=path)
