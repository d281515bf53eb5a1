"""Synthetic triple-phase renal CT cohorts with known ground truth.

* :func:`generate_case` renders one patient (3 phases, mask, clinical values, truth).
* :func:`write_cohort` writes a cohort in the manifest format plus ``truth.csv``.
* :func:`sample_truth` draws the truth of many patients without rendering (fast).
* :func:`design_case` gives a case's anatomy, tumour parameters and image grid without rendering.
* :func:`transform_from_truth` rebuilds the applied inter-phase misalignment from a ``truth.csv`` row.

The generative model is described in ``docs/synthetic_cohort.md``.
"""

from rccgrade.synth.acquisition import CENTER_PROFILES, misalignment_transform, transform_from_truth
from rccgrade.synth.generator import CaseDesign, SynthCase, design_case, generate_case
from rccgrade.synth.latent import (
    CLINICAL_COLUMNS,
    COEFFICIENTS,
    INTERCEPT,
    LATENT_FACTORS,
    PatientDraw,
    draw_patient,
    patient_id,
    sample_truth,
)
from rccgrade.synth.writer import write_case, write_cohort

__all__ = [
    "CENTER_PROFILES",
    "CLINICAL_COLUMNS",
    "COEFFICIENTS",
    "INTERCEPT",
    "LATENT_FACTORS",
    "CaseDesign",
    "PatientDraw",
    "SynthCase",
    "design_case",
    "draw_patient",
    "generate_case",
    "misalignment_transform",
    "patient_id",
    "sample_truth",
    "transform_from_truth",
    "write_case",
    "write_cohort",
]
