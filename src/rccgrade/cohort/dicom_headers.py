"""DICOM headers of a PACS export: find the files, read headers only, and judge each series (scouts, dose reports,
secondary captures, tilted or unevenly spaced series are left out with a reason).

Split from :mod:`rccgrade.cohort.dicom_index` (which re-exports every name and sorts the series into phases).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rccgrade.cohort import phase_rules as pr

_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
_SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_SEG = "1.2.840.10008.5.1.4.1.1.66.4"
_RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
_DICOMDIR = "1.2.840.10008.1.3.10"
_LOCALIZER_WORDS = ("scout", "topogram", "localizer", "localiser", "surview", "scanogram", "pilot", "scoutview")
_REFORMAT_WORDS = ("mip", "minip", "vrt", "volume rendering", "3d", "mpr thick")
_DOSE_WORDS = ("dose report", "dose info", "patient protocol", "dosis")


@dataclass(frozen=True)
class FileHeader:
    """The header values of one DICOM file that the index needs (no identifying tag but PatientID).

    Positions/orientation in mm (LPS); times in seconds since midnight.
    """

    path: str
    sop_class: str
    modality: str
    patient_id: str
    study_uid: str
    series_uid: str
    study_date: str
    study_time: float | None
    series_number: int | None
    description: str
    protocol: str
    image_type: tuple[str, ...]
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    slice_thickness: float | None
    kernel: str
    contrast_agent: str
    bolus_start: float | None
    acquisition_time: float | None
    series_time: float | None
    gantry_tilt: float | None
    rows: int | None
    columns: int | None
    frames: int
    referenced_series: str = ""


def _text(ds: object, name: str) -> str:
    value = getattr(ds, name, None)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _float(ds: object, name: str) -> float | None:
    try:
        value = getattr(ds, name, None)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: object, name: str) -> tuple[float, ...] | None:
    value = getattr(ds, name, None)
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def read_header(path: str) -> FileHeader | str:
    """Header of one file, or the reason it is skipped (not DICOM, DICOMDIR, no series UID)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        return f"not a readable DICOM file ({type(exc).__name__})"
    meta_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    sop_class = str(getattr(ds, "SOPClassUID", "") or meta_class)
    if sop_class == _DICOMDIR or meta_class == _DICOMDIR:
        return "DICOMDIR"
    series_uid = _text(ds, "SeriesInstanceUID")
    if not series_uid:
        return "no SeriesInstanceUID"
    series_number = _float(ds, "SeriesNumber")
    frames = _float(ds, "NumberOfFrames")
    return FileHeader(
        path=path,
        sop_class=sop_class,
        modality=_text(ds, "Modality").upper(),
        patient_id=_text(ds, "PatientID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=series_uid,
        study_date=_text(ds, "StudyDate"),
        study_time=pr.dicom_time_seconds(_text(ds, "StudyTime")),
        series_number=None if series_number is None else int(series_number),
        description=_text(ds, "SeriesDescription"),
        protocol=_text(ds, "ProtocolName"),
        image_type=tuple(v.upper() for v in _text(ds, "ImageType").split("\\") if v),
        position=_floats(ds, "ImagePositionPatient"),
        orientation=_floats(ds, "ImageOrientationPatient"),
        slice_thickness=_float(ds, "SliceThickness"),
        kernel=_text(ds, "ConvolutionKernel"),
        contrast_agent=_text(ds, "ContrastBolusAgent"),
        bolus_start=pr.dicom_time_seconds(_text(ds, "ContrastBolusStartTime")),
        acquisition_time=pr.dicom_time_seconds(_text(ds, "AcquisitionTime")),
        series_time=pr.dicom_time_seconds(_text(ds, "SeriesTime")),
        gantry_tilt=_float(ds, "GantryDetectorTilt"),
        rows=None if _float(ds, "Rows") is None else int(_float(ds, "Rows") or 0),
        columns=None if _float(ds, "Columns") is None else int(_float(ds, "Columns") or 0),
        frames=1 if frames is None else int(frames),
        referenced_series=_referenced_series(ds),
    )


def _referenced_series(ds: object) -> str:
    """SeriesInstanceUID a DICOM-SEG or RTSTRUCT was drawn on ("" for images)."""
    for item in getattr(ds, "ReferencedSeriesSequence", []) or []:
        uid = str(getattr(item, "SeriesInstanceUID", "") or "")
        if uid:
            return uid
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []) or []:
        for study in getattr(ref, "RTReferencedStudySequence", []) or []:
            for series in getattr(study, "RTReferencedSeriesSequence", []) or []:
                uid = str(getattr(series, "SeriesInstanceUID", "") or "")
                if uid:
                    return uid
    return ""


def read_headers(paths: Sequence[str]) -> list[FileHeader | str]:
    """:func:`read_header` of each path (one work item of the parallel scan)."""
    return [read_header(p) for p in paths]


def find_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (symlinks not followed), sorted, hidden files included."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(full)
    return found


def _series_geometry(files: list[FileHeader], min_slices: int) -> tuple[str, str, bool]:
    """(reason, detail, axial) of a candidate series' geometry; reason "" when usable."""
    if any(f.frames > 1 for f in files):
        return "multiframe", "multi-frame (enhanced) object; export as single-frame slices", False
    if len(files) < min_slices:
        return "too_few_slices", f"{len(files)} slice(s) < {min_slices}", False
    orients = {f.orientation for f in files}
    sizes = {(f.rows, f.columns) for f in files}
    if None in orients or any(f.position is None for f in files):
        return "inconsistent_geometry", "ImagePositionPatient/ImageOrientationPatient missing", False
    o0 = np.asarray(files[0].orientation, dtype=float)
    if any(not np.allclose(np.asarray(o, dtype=float), o0, atol=1e-4) for o in orients) or len(sizes) > 1:
        return "inconsistent_geometry", "slices differ in orientation or matrix size", False
    row, col = o0[:3], o0[3:6]
    normal = np.cross(row, col)
    axial = bool(abs(normal[2]) > 0.8)
    tilt = max(abs(f.gantry_tilt or 0.0) for f in files)
    pos = np.asarray([f.position for f in files], dtype=float)
    along = pos @ normal
    order = np.argsort(along)
    pos, along = pos[order], along[order]
    gaps = np.diff(along)
    if np.any(gaps <= 1e-3):
        return "duplicate_slices", "several slices share one position (two acquisitions in one series?)", axial
    steps = np.diff(pos, axis=0)
    cosines = (steps @ normal) / np.linalg.norm(steps, axis=1)
    angle = float(np.degrees(np.arccos(np.clip(cosines.min(), -1.0, 1.0))))
    if tilt > 0.1 or angle > 0.5:
        return "gantry_tilt", f"gantry tilt {max(tilt, angle):.1f} deg (slices sheared); reformat without tilt", axial
    median = float(np.median(gaps))
    bad = np.abs(gaps - median) > 0.1 * median + 0.01
    if np.any(bad):
        return (
            "uneven_spacing",
            f"slice gaps {sorted({round(float(g), 2) for g in gaps[bad]})[:5]} mm vs {median:.3g} mm",
            axial,
        )
    return "", "", axial


def _exclusion(files: list[FileHeader], min_slices: int) -> tuple[str, str, bool]:
    """(reason, detail, axial) for a series; reason "" when it is a usable CT volume."""
    first = files[0]
    words = pr.normalise_text(f"{first.description} {first.protocol}")
    if first.sop_class == _DOSE_SR or (first.sop_class.startswith(_SR_PREFIX) and "dose" in words):
        return "dose_report", "radiation dose structured report", False
    if first.sop_class.startswith(_SR_PREFIX) or first.modality == "SR":
        return "structured_report", "structured report", False
    if first.sop_class == _SEG or first.modality == "SEG":
        return "segmentation", "DICOM-SEG object (usable as a mask)", False
    if first.sop_class == _RTSTRUCT or first.modality == "RTSTRUCT":
        return "rtstruct", "RT structure set (usable as a mask)", False
    if first.sop_class.startswith(_SC_PREFIX) or "SECONDARY CAPTURE" in " ".join(first.image_type):
        reason = (
            "dose_report" if any(w in words for w in _DOSE_WORDS) or "dose" in words.split() else "secondary_capture"
        )
        return reason, "secondary capture (screenshot)", False
    if first.modality != "CT":
        return "not_ct", f"modality {first.modality or '(none)'}", False
    if any("LOCALIZER" in t for t in first.image_type) or any(w in words.split() for w in _LOCALIZER_WORDS):
        return "localizer", "localizer / scout", False
    if any(w in words for w in _DOSE_WORDS) or "SCREEN SAVE" in first.image_type:
        return "dose_report", "dose screen", False
    if any(t in ("MIP", "MINIP", "VRT", "VOLUME", "PROJECTION IMAGE") for t in first.image_type) or any(
        f" {w} " in f" {words} " for w in _REFORMAT_WORDS
    ):
        return "reformat", "projection / rendering, not a slice volume", False
    if len({os.path.dirname(f.path) for f in files}) > 1:
        return "split_across_folders", "slices lie in several folders; move them into one folder", False
    return _series_geometry(files, min_slices)
