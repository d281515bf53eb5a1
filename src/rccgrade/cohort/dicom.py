"""Write a 3D image as a DICOM CT series (one file per slice), deterministically.

Used by the synthetic cohort generator (``--format dicom``) and by tests that prove the DICOM
reader: the files carry real geometry (ImagePositionPatient per slice, ImageOrientationPatient,
PixelSpacing, SliceThickness) and a real RescaleSlope/RescaleIntercept, so a reader that forgets
to sort slices or to rescale to HU gets visibly wrong numbers.

Every UID is either given or derived from the patient id and series description with
:func:`pydicom.uid.generate_uid` (hash of the entropy sources) and no date/time tags are written,
so re-running the writer produces byte-identical files.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.errors import ImageError

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
"""SOP Class UID of CT Image Storage."""

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _uid(*parts: str) -> str:
    """A deterministic UID under pydicom's root, hashed from ``parts``."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def series_file_prefix(series_uid: str) -> str:
    """Short file-name prefix unique to a series, so several series can share one folder."""
    return "IM" + hashlib.sha1(series_uid.encode()).hexdigest()[:8]


def write_dicom_series(
    image: sitk.Image,
    folder: str | Path,
    *,
    patient_id: str,
    series_description: str,
    series_uid: str | None = None,
    study_uid: str | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = -1024.0,
    modality: str = "CT",
    series_number: int = 1,
) -> Path:
    """Write ``image`` (HU values) as one DICOM file per axial slice into ``folder``.

    Stored pixel values are ``round((HU - intercept) / slope)`` as 16-bit integers (unsigned when
    they are all ≥ 0, else signed); a reader applying ``HU = stored * slope + intercept`` recovers
    the HU values to within ``slope / 2``.

    Geometry: slice ``k`` gets ``ImagePositionPatient`` = the physical point of voxel ``(0, 0, k)``
    (mm, LPS), ``ImageOrientationPatient`` = the first two columns of the direction matrix,
    ``PixelSpacing`` = (row spacing, column spacing) = (spacing[1], spacing[0]) and
    ``SliceThickness``/``SpacingBetweenSlices`` = spacing[2]. A left-handed direction matrix
    (third axis opposite to row × column) is read back by DICOM readers with the slice axis
    flipped: the same physical image, stored in the other order.

    Args:
        image: 3D scalar image in HU.
        folder: Output folder (created). Existing files of the same series are overwritten.
        patient_id: PatientID (and PatientName) tag; also seeds the derived UIDs.
        series_description: SeriesDescription tag (e.g. the phase name); seeds the series UID.
        series_uid: SeriesInstanceUID; default derived from patient id + description.
        study_uid: StudyInstanceUID; default derived from the patient id, so all phases of a
            patient share one study.
        rescale_slope: RescaleSlope written to every slice.
        rescale_intercept: RescaleIntercept (HU) written to every slice.
        modality: Modality tag (CT Image Storage is used for CT, MR Image Storage for MR).
        series_number: SeriesNumber tag.

    Returns:
        The folder written to.

    Raises:
        ImageError: image not 3D/scalar, slope zero, or HU values that do not fit 16 bits with
            this slope/intercept (the message says which slope would fit).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    folder = Path(folder)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(
            f"write_dicom_series needs a 3D scalar image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s); pass one 3D volume",
            patient_id=patient_id,
            path=folder,
        )
    if rescale_slope == 0:
        raise ImageError("rescale_slope must not be 0", patient_id=patient_id, path=folder)

    hu = sitk.GetArrayFromImage(image).astype(np.float64)  # (z, y, x)
    stored = np.rint((hu - rescale_intercept) / rescale_slope)
    lo, hi = float(stored.min()), float(stored.max())
    if lo >= 0 and hi <= np.iinfo(np.uint16).max:
        stored_arr, pixel_representation = stored.astype(np.uint16), 0
    elif lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
        stored_arr, pixel_representation = stored.astype(np.int16), 1
    else:
        needed = (float(hu.max()) - float(hu.min())) / 65535.0
        raise ImageError(
            f"HU range {hu.min():.1f}..{hu.max():.1f} does not fit 16-bit stored values with slope "
            f"{rescale_slope} and intercept {rescale_intercept}; use rescale_slope >= {needed:.4g}",
            patient_id=patient_id,
            path=folder,
        )

    study_uid = study_uid or _uid("rccgrade-study", patient_id)
    series_uid = series_uid or _uid("rccgrade-series", patient_id, series_description)
    frame_uid = _uid("rccgrade-frame", study_uid)
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else _MR_IMAGE_STORAGE
    prefix = series_file_prefix(series_uid)

    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    row_cos = direction[:, 0]  # direction of increasing column index (image x)
    col_cos = direction[:, 1]  # direction of increasing row index (image y)
    spacing = image.GetSpacing()
    nx, ny, nz = image.GetSize()
    folder.mkdir(parents=True, exist_ok=True)

    for k in range(nz):
        sop_uid = _uid("rccgrade-sop", series_uid, str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.PatientName = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = series_description
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = k + 1
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
        ds.SliceLocation = _ds(float(np.dot(np.cross(row_cos, col_cos), position)))
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        ds.SliceThickness = _ds(spacing[2])
        ds.SpacingBetweenSlices = _ds(spacing[2])
        ds.Rows = ny
        ds.Columns = nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = pixel_representation
        ds.RescaleIntercept = _ds(rescale_intercept)
        ds.RescaleSlope = _ds(rescale_slope)
        ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.PixelData = np.ascontiguousarray(stored_arr[k]).tobytes()
        ds.save_as(folder / f"{prefix}_{k:04d}.dcm", enforce_file_format=True)

    log.debug("wrote %d DICOM slices of %s/%s to %s", nz, patient_id, series_description, folder)
    return folder
