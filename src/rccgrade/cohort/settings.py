"""Settings of the cohort stage (how the manifest is read and how strictly it is validated)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CohortSettings(BaseModel):
    """Where the cohort is, how to read it and how strictly to validate it.

    Attributes:
        manifest: Manifest CSV (paths inside are relative to its folder).
        clinical_csv: Optional separate clinical CSV joined on ``patient_id``.
        mask_phase: Phase the masks were drawn on.
        label: Tumour label in multi-label masks (None: mask must be binary). A manifest
            ``label`` column overrides it per case.
        mask_segment: Tumour segment / ROI name in DICOM-SEG, RTSTRUCT or Slicer masks (case-insensitive);
            a manifest ``mask_segment`` column overrides it per case.
        lesions: What a mask with several lesions means: ``largest`` / ``each`` (``rccgrade lesions``
            keeps the largest or writes one row per lesion; validate warns) or ``error`` (validate
            refuses the case).
        min_lesion_volume_mm3: Connected components smaller than this are specks, not lesions.
        clinical_types: Clinical column → numeric/categorical; others are inferred.
        clinical_columns: Clinical columns to use (None: every non-reserved column).
        phases: Phases every case must have (manifest columns of the same names).
        require_labels: A case without grade/high_grade is unusable (turn off for prediction-only
            cohorts).
        spacing_rtol: Relative tolerance on voxel spacing when comparing mask and image geometry.
        origin_atol_voxels: Tolerance on the origin, in voxels of the image (0.01 = 1% of a voxel).
        direction_atol: Absolute tolerance on direction cosines.
        numeric_parse_fraction: When inferring a clinical column's type, the column is numeric if at
            least this fraction of its non-missing values parse as numbers; the others are then
            reported as ``clinical_wrong_type`` (a typo such as "unknown" in an age column) rather
            than silently turning the column categorical. 1.0 = numeric only if every value parses.
    """

    model_config = ConfigDict(extra="forbid")

    manifest: Path | None = None
    clinical_csv: Path | None = None
    mask_phase: str = "arterial"
    label: int | None = None
    mask_segment: str | None = None
    lesions: Literal["largest", "each", "error"] = "largest"
    min_lesion_volume_mm3: float = Field(10.0, ge=0)
    clinical_types: dict[str, Literal["numeric", "categorical"]] = {}
    clinical_columns: list[str] | None = None
    phases: list[str] = ["arterial", "nephrographic", "excretory"]
    require_labels: bool = True
    spacing_rtol: float = Field(1e-3, ge=0)
    origin_atol_voxels: float = Field(0.01, ge=0)
    direction_atol: float = Field(1e-3, ge=0)
    numeric_parse_fraction: float = Field(0.8, gt=0.5, le=1.0)
