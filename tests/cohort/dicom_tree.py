"""Build small synthetic PACS exports with pydicom (8×8 slices) for the index and mask tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT = "1.2.840.10008.5.1.4.1.1.2"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
PATIENT_NAME = "Doe^Johnathan"
BIRTH_DATE = "19510203"


def uid(*parts: object) -> str:
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


@dataclass
class Series:
    """One series to write; ``value`` fills the pixels (stored = HU + 1024)."""

    description: str
    n: int = 6
    value: int = 100
    acq_time: str | None = None
    bolus_start: str | None = None
    kernel: str = "B30f"
    thickness: float = 2.0
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    sop_class: str = CT
    modality: str = "CT"
    tilt: float = 0.0
    protocol: str = ""
    series_number: int = 1
    contrast: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def write_series(
    folder: Path, patient_id: str, study_uid: str, s: Series, rng: random.Random, *, flat_name: bool = True
) -> str:
    """Write ``s`` into ``folder`` with shuffled, mixed-case file names; returns its SeriesInstanceUID."""
    series_uid = uid("series", patient_id, study_uid, s.description, s.series_number)
    folder.mkdir(parents=True, exist_ok=True)
    exts = [".dcm", ".DCM", ".Dcm", "", ".IMA"]
    for k in range(s.n):
        sop = uid("sop", series_uid, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = s.sop_class
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = s.sop_class
        ds.SOPInstanceUID = sop
        ds.Modality = s.modality
        ds.PatientID = patient_id
        ds.PatientName = PATIENT_NAME
        ds.PatientBirthDate = BIRTH_DATE
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = "20240105"
        ds.StudyTime = "101500"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = s.series_number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = s.description
        if s.protocol:
            ds.ProtocolName = s.protocol
        ds.ImageType = list(s.image_type)
        if s.acq_time:
            ds.AcquisitionTime = s.acq_time
            ds.SeriesTime = s.acq_time
        if s.bolus_start:
            ds.ContrastBolusStartTime = s.bolus_start
        if s.contrast:
            ds.ContrastBolusAgent = s.contrast
        ds.ConvolutionKernel = s.kernel
        ds.SliceThickness = f"{s.thickness:g}"
        if s.tilt:
            ds.GantryDetectorTilt = f"{s.tilt:g}"
        shift = np.tan(np.radians(s.tilt)) * s.thickness * k
        ds.ImagePositionPatient = [f"{-10.0:g}", f"{-10.0 + shift:g}", f"{k * s.thickness:g}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["2", "2"]
        ds.Rows = 8
        ds.Columns = 8
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        for key, value in s.extra.items():
            setattr(ds, key, value)
        pixels = np.full((8, 8), s.value + 1024, dtype=np.uint16)
        pixels[0] = 24  # a row of air (-1000 HU), as every CT has
        ds.PixelData = pixels.tobytes()
        name = f"{rng.getrandbits(40):010x}{rng.choice(exts)}"
        ds.save_as(folder / name, enforce_file_format=True)
    return series_uid


def write_patient(
    root: Path, patient_id: str, series: list[Series], rng: random.Random, *, flat: bool = False
) -> dict[str, str]:
    """Write a study; each series in its own folder (or all in one folder when ``flat``)."""
    study_uid = uid("study", patient_id)
    uids: dict[str, str] = {}
    for i, s in enumerate(series):
        s.series_number = i + 1
        folder = root / f"export_{patient_id.lower()}" / ("all" if flat else f"S{rng.getrandbits(24):06x}")
        uids[s.description] = write_series(folder, patient_id, study_uid, s, rng)
    return uids
