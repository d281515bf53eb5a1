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
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.errors import ImageError

log = logging.getLogger(__name__)

_INT_TYPES = {
    sitk.sitkUInt8,
    sitk.sitkInt8,
    sitk.sitkUInt16,
    sitk.sitkInt16,
    sitk.sitkUInt32,
    sitk.sitkInt32,
    sitk.sitkUInt64,
    sitk.sitkInt64,
}


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


def _check_exists(path: Path, patient_id: str | None, what: str) -> None:
    if not path.exists():
        raise ImageError(
            f"{what} not found; check the path in the manifest (relative paths are resolved against the "
            "manifest's folder)",
            patient_id=patient_id,
            path=path,
        )


def dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """SeriesInstanceUID → sorted file names of every DICOM series in ``folder`` (not recursive)."""
    folder = str(folder)
    series: dict[str, list[str]] = {}
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        series[uid] = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
    return series


def choose_series(
    folder: str | Path,
    *,
    series_uid: str | None = None,
    patient_id: str | None = None,
    series: dict[str, list[str]] | None = None,
) -> tuple[str, list[str]]:
    """Pick the series to read from a DICOM folder: ``series_uid`` if given, else the largest.

    Ties in file count are broken by the UID (lexicographically smallest), so the choice is
    deterministic. ``series`` (from :func:`dicom_series`) avoids scanning the folder again.

    Raises:
        ImageError: no DICOM series in the folder, or ``series_uid`` not among them (the message
            lists the available UIDs with their file counts).
    """
    folder = Path(folder)
    try:
        series = dicom_series(folder) if series is None else series
    except RuntimeError as exc:
        raise ImageError(
            f"cannot list DICOM series: {exc}; check the folder holds readable DICOM files",
            patient_id=patient_id,
            path=folder,
        ) from None
    if not series:
        raise ImageError(
            "folder holds no DICOM series; point the manifest at a DICOM series folder or an image file "
            "(.nii.gz, .nrrd, .mha)",
            patient_id=patient_id,
            path=folder,
        )
    if series_uid is not None:
        if series_uid not in series:
            listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in sorted(series.items()))
            raise ImageError(
                f"DICOM series {series_uid} not found; the folder holds: {listing}. "
                "Fix the series UID column of the manifest",
                patient_id=patient_id,
                path=folder,
            )
        return series_uid, series[series_uid]
    uid = sorted(series, key=lambda u: (-len(series[u]), u))[0]
    if len(series) > 1:
        log.info(
            "patient %s: %s holds %d DICOM series; reading the largest (%s, %d files). "
            "Set a series UID column to choose another.",
            patient_id,
            folder,
            len(series),
            uid,
            len(series[uid]),
        )
    return uid, series[uid]


def _to_hu_type(img: sitk.Image) -> sitk.Image:
    """Cast to int16 when all values are integers that fit, else float32."""
    pid = img.GetPixelID()
    if pid == sitk.sitkInt16 or pid == sitk.sitkFloat32:
        return img
    if img.GetNumberOfComponentsPerPixel() != 1:
        return img
    mm = sitk.MinimumMaximumImageFilter()
    mm.Execute(img)
    lo, hi = mm.GetMinimum(), mm.GetMaximum()
    fits = lo >= -32768 and hi <= 32767
    if pid in _INT_TYPES and fits:
        return sitk.Cast(img, sitk.sitkInt16)
    if pid in (sitk.sitkFloat64,) and fits:
        arr = sitk.GetArrayViewFromImage(img)
        if np.all(arr == np.rint(arr)):
            return sitk.Cast(img, sitk.sitkInt16)
    return sitk.Cast(img, sitk.sitkFloat32)


def read_dicom_series(
    folder: str | Path,
    *,
    patient_id: str | None = None,
    series_uid: str | None = None,
    series: dict[str, list[str]] | None = None,
) -> sitk.Image:
    """Read one DICOM series from a folder as an HU image (int16 or float32); see :func:`choose_series`."""
    folder = Path(folder)
    uid, files = choose_series(folder, series_uid=series_uid, patient_id=patient_id, series=series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise ImageError(
            f"cannot read DICOM series {uid} ({len(files)} files): {_first_line(exc)}; "
            "check the files are complete, uncompressed or GDCM-readable",
            patient_id=patient_id,
            path=folder,
        ) from None
    _check_slice_spacing(reader, len(files), uid, folder, patient_id)
    return _to_hu_type(img)


def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.strip().split("\\")], dtype=float)


def _check_slice_spacing(
    reader: sitk.ImageSeriesReader, n: int, uid: str, folder: Path, patient_id: str | None
) -> None:
    """Refuse a series whose slice positions are not evenly spaced (missing file, mixed series).

    ITK only warns and then assumes even spacing, which silently distorts the volume in z.
    Tolerance: each gap within 10% (+0.01 mm) of the median gap.
    """
    if n < 3:
        return
    try:
        orientation = _floats(reader.GetMetaData(0, "0020|0037"))
        positions = np.vstack([_floats(reader.GetMetaData(i, "0020|0032")) for i in range(n)])
    except (RuntimeError, ValueError):
        log.debug("patient %s: no ImagePositionPatient/ImageOrientationPatient in %s", patient_id, folder)
        return
    normal = np.cross(orientation[:3], orientation[3:6])
    gaps = np.diff(np.sort(positions @ normal))
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > 0.1 * median + 0.01)
    if median <= 1e-3 or bad.size:
        detail = (
            "several slices share one position"
            if median <= 1e-3 or np.any(gaps[bad] <= 1e-3)
            else f"gaps of {', '.join(f'{g:.3g}' for g in gaps[bad][:5])} mm where {median:.3g} mm is usual"
        )
        raise ImageError(
            f"DICOM series {uid} ({n} files) has unevenly spaced slices ({detail}): a slice file is missing or "
            "two acquisitions share one series UID. Re-export the complete series",
            patient_id=patient_id,
            path=folder,
        )


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # MetaImage says "data not read completely" / "ideal = N : actual = M", then a misleading last line
    short = [ln for ln in lines if "not read completely" in ln or ln.startswith("ideal =")]
    if short:
        return " ".join(short)[:300] + " (the pixel data is cut short)"
    useful = [ln for ln in lines if "ERROR" in ln or "Exception" in ln or "Unable" in ln]
    return (useful or lines or [type(exc).__name__])[-1][:300]


# -- storage integrity --------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_HEAD_BYTES = 540  # a NIfTI-2 header; NIfTI-1 needs 348
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StorageCheck:
    """Whether an image file holds every byte its header announces (see :func:`check_storage`).

    Attributes:
        path: The file.
        compressed: The file is a gzip stream (``.nii.gz`` …).
        payload_bytes: Bytes of content (after decompression), or None when the stream is broken.
        expected_bytes: Bytes the header announces (NIfTI: voxel offset + voxels × bytes per voxel), or None
            when the format is not one whose length this check knows (NRRD and MetaImage are checked by ITK,
            which refuses short data).
        expected_voxels: Voxels the header announces (None when not known).
        stored_voxels: Voxels actually present in the file (None when not known).
        problem: What is wrong, for the user; None when the file is complete.
    """

    path: Path
    compressed: bool
    payload_bytes: int | None
    expected_bytes: int | None = None
    expected_voxels: int | None = None
    stored_voxels: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return self.problem is None


def nifti_layout(head: bytes) -> tuple[int, int, int] | None:
    """``(voxel data offset, number of voxels, bytes per voxel)`` from a single-file NIfTI-1/2 header.

    Args:
        head: The first bytes of the (decompressed) file, at least 348 (NIfTI-1) or 540 (NIfTI-2).

    Returns:
        The layout, or None when ``head`` is not a single-file NIfTI header (``n+1``/``n+2`` magic).
    """
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] == b"n+1":
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] == b"n+2":
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    n_voxels = 1
    for d in dims[1 : ndim + 1]:
        n_voxels *= max(int(d), 1)
    return offset, n_voxels, bitpix // 8


def _read_content(path: Path) -> tuple[bytes, int, bool, str | None]:
    """First :data:`_HEAD_BYTES` bytes of the content, the bytes read, whether it is gzip, and the stream error.

    A gzip stream is decompressed in full (in chunks, nothing kept): zlib verifies each member's CRC-32 and
    length, and a stream that stops before its end-of-stream marker is reported. The count stops where the
    readable content ends, so a truncated file still tells how many voxels survived.
    """
    with path.open("rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    if not compressed:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
        return head, path.stat().st_size, False, None
    head = b""
    total = 0
    members = 0
    in_member = False
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with path.open("rb") as fh:
            while raw := fh.read(_CHUNK):
                while raw:
                    if not in_member and raw.strip(b"\x00") == b"" and members:
                        break  # zero padding after the last member, as gzip allows
                    in_member = True
                    out = decoder.decompress(raw)
                    if len(head) < _HEAD_BYTES:
                        head += out[: _HEAD_BYTES - len(head)]
                    total += len(out)
                    raw = b""
                    if decoder.eof:
                        members += 1
                        in_member = False
                        raw = decoder.unused_data
                        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        return head, total, True, f"corrupt compressed data: {exc}"
    if in_member or not members:
        return head, total, True, "the compressed stream ends before its end-of-stream marker"
    return head, total, True, None


def check_storage(path: str | Path) -> StorageCheck:
    """Check that an image file is complete: the whole gzip stream decompresses, and a NIfTI file holds every
    voxel its header announces.

    ITK reads a ``.nii``/``.nii.gz`` cut short without complaint and fills the missing voxels with zeros, so a
    half-copied scan would otherwise give features — and a confident probability — computed on zeros. NRRD and
    MetaImage files are refused by ITK itself when their data is short; DICOM folders are not checked here.

    Returns:
        A :class:`StorageCheck`; ``problem`` says what is missing (never raises for a broken file; a missing
        file or folder is not checked: ``problem`` is None).
    """
    path = Path(path)
    if not path.is_file():
        return StorageCheck(path, False, None)
    head, total, compressed, error = _read_content(path)
    layout = nifti_layout(head)
    expected = n_voxels = stored = None
    if layout is not None:
        offset, n_voxels, itemsize = layout
        expected = offset + n_voxels * itemsize
        stored = max(0, min(n_voxels, (total - offset) // itemsize))
    count = (
        f": only {stored} of the {n_voxels} voxels ({100.0 * stored / max(n_voxels, 1):.1f}%) could be read"
        if n_voxels is not None and stored is not None
        else ""
    )
    problem = None
    if error is not None:
        problem = (
            f"the gzip stream is truncated or corrupt ({error}){count}. The file was cut short (an interrupted copy "
            "or download?) and ITK would read the missing voxels as zeros; copy or export it again"
        )
        total_or_none = None
    else:
        total_or_none = total
        if expected is not None and total < expected:
            problem = (
                f"the file holds {total} of the {expected} bytes its NIfTI header announces{count}; the rest would "
                "be read as zeros. The file was cut short; copy or export it again"
            )
    return StorageCheck(path, compressed, total_or_none, expected, n_voxels, stored, problem)


def ensure_complete(path: str | Path, *, patient_id: str | None = None, what: str = "image") -> None:
    """Raise an :class:`ImageError` naming the patient and file when :func:`check_storage` finds a problem."""
    found = check_storage(path)
    if found.problem is not None:
        raise ImageError(f"{what} is incomplete: {found.problem}", patient_id=patient_id, path=path)


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
    ensure_complete(path, patient_id=patient_id, what="image")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ImageError(
            f"cannot read image: {_first_line(exc)}; use NIfTI (.nii/.nii.gz), NRRD, MHA or a DICOM series "
            "folder, and check the file is not truncated",
            patient_id=patient_id,
            path=path,
        ) from None


def mask_labels(mask: sitk.Image) -> list[float]:
    """Distinct non-zero values of a mask, sorted."""
    arr = sitk.GetArrayViewFromImage(mask)
    values = np.unique(arr)
    return [float(v) for v in values if v != 0]


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
    arr = sitk.GetArrayFromImage(mask)
    values = np.unique(arr)
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
        ensure_complete(path, patient_id=patient_id, what="mask")
        try:
            raw = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise ImageError(
                f"cannot read mask: {_first_line(exc)}; save masks as NIfTI, NRRD or MHA label images",
                patient_id=patient_id,
                path=path,
            ) from None
    return binarize_mask(raw, label=label, patient_id=patient_id, path=path)
