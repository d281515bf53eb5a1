"""rccgrade.preprocess stage: canonical orientation, phase registration, ROI settings, slice images, QC.

Public API:
    * :func:`run_preprocess` — the stage (per-case status, registration quality, failures).
    * :func:`load_slices` — slice images ``(K, 3, H, W)`` of one ROI setting, by patient.
    * :func:`registered_paths` — registered phase NIfTIs and mask of a case (for radiomics).
    * :class:`PreprocessSettings` — the settings.
"""

from rccgrade.preprocess.pipeline import PreprocessResult, registered_paths, run_preprocess
from rccgrade.preprocess.settings import PreprocessSettings, RegistrationSettings, RoiSpec, parse_roi
from rccgrade.preprocess.slices import load_slices

__all__ = [
    "PreprocessResult",
    "PreprocessSettings",
    "RegistrationSettings",
    "RoiSpec",
    "load_slices",
    "parse_roi",
    "registered_paths",
    "run_preprocess",
]
