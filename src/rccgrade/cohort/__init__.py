"""rccgrade.cohort: manifest loading, the Case/Cohort types, image IO and validation."""

from rccgrade.cohort.dicom import write_dicom_series
from rccgrade.cohort.integrity import check_case_clinical, check_case_images
from rccgrade.cohort.io import ImageGeometry, image_geometry, read_image, read_image_information, read_mask
from rccgrade.cohort.manifest import load_cohort
from rccgrade.cohort.types import PHASES, Case, Cohort, Problem
from rccgrade.cohort.validate import ValidationReport, check_case, validate_cohort

__all__ = [
    "PHASES",
    "Case",
    "Cohort",
    "ImageGeometry",
    "Problem",
    "ValidationReport",
    "check_case",
    "check_case_clinical",
    "check_case_images",
    "image_geometry",
    "load_cohort",
    "read_image",
    "read_image_information",
    "read_mask",
    "validate_cohort",
    "write_dicom_series",
]
