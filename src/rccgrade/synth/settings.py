"""Settings of the synthetic cohort generator."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SynthSettings(BaseModel):
    """A synthetic cohort to generate when the study has no manifest of its own.

    Attributes:
        n: Number of patients.
        seed: Cohort seed (patient ``i`` uses ``SeedSequence([seed, i])``).
        size: ``small`` (48×96×96 voxels, ~3–5 mm; fast, for tests and the demo) or ``realistic``
            (0.6–0.9 mm in-plane, 256–512 matrix, 1–5 mm slices).
        format: ``nifti`` (one ``.nii.gz`` per phase) or ``dicom`` (one series folder per phase).
    """

    model_config = ConfigDict(extra="forbid")

    n: int = Field(200, ge=4)
    seed: int = Field(0, ge=0)
    size: Literal["small", "realistic"] = "small"
    format: Literal["nifti", "dicom"] = "nifti"
