"""Settings of the cohort stage (how the manifest is read)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class CohortSettings(BaseModel):
    """Where the cohort is and how to read it.

    Attributes:
        manifest: Manifest CSV (paths inside are relative to its folder).
        clinical_csv: Optional separate clinical CSV joined on ``patient_id``.
        mask_phase: Phase the masks were drawn on.
        label: Tumour label in multi-label masks (None: mask must be binary).
        clinical_types: Clinical column → numeric/categorical; others are inferred.
        clinical_columns: Clinical columns to use (None: every non-reserved column).
    """

    model_config = ConfigDict(extra="forbid")

    manifest: Path | None = None
    clinical_csv: Path | None = None
    mask_phase: str = "arterial"
    label: int | None = None
    clinical_types: dict[str, Literal["numeric", "categorical"]] = {}
    clinical_columns: list[str] | None = None
