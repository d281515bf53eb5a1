"""DICOM series in a folder: list them, choose one, read it in Hounsfield units with even slice spacing.

Split from :mod:`rccgrade.cohort.io`, which re-exports every name (and reads files of other formats).
"""

from __future__ import annotations

import logging
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
