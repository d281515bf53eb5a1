"""Settings of the synthetic cohort generator."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SynthSettings(BaseModel):
    """A synthetic cohort to generate when the study has no manifest of its own."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(200, ge=4)
    seed: int = 0
    size: Literal["small", "realistic"] = "small"
    format: Literal["nifti", "dicom"] = "nifti"
