"""Settings of the cohort stage (how the manifest is read and how strictly it is validated)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_CLINICAL_RANGES: dict[str, tuple[float, float]] = {
    "age": (0.0, 120.0),
    "age_years": (0.0, 120.0),
    "bmi": (5.0, 150.0),
    "weight_kg": (0.5, 500.0),
    "height_cm": (30.0, 260.0),
    "size_cm": (0.0, 50.0),
    "tumor_size_cm": (0.0, 50.0),
    "tumour_size_cm": (0.0, 50.0),
    "tumor_size_mm": (0.0, 500.0),
    "tumour_size_mm": (0.0, 500.0),
}
"""Plausible [low, high] ranges of common clinical variables (names matched case-insensitively).

Only variables whose unit is fixed by their name (age in years, BMI in kg/m², ``_cm``/``_mm``/``_kg``) have a
default; laboratory values differ by unit between centres (platelets per µL or 10⁹/L), so declare their ranges
with ``cohort.clinical_ranges``. A value outside its range is an error (``clinical_out_of_range``).
"""


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
        column_map: Variable name → the column of this cohort that holds it (``hemoglobin: haemoglobin``),
            applied as soon as the manifest and clinical CSV are read (:mod:`rccgrade.cohort.column_map`).
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
        clinical_ranges: Column → plausible ``[low, high]`` of a numeric clinical variable, on top of
            :data:`DEFAULT_CLINICAL_RANGES` (same name, case-insensitive: this one wins). A value outside
            is an error (``clinical_out_of_range``) in validate and at predict time.
        clinical_max_abs: Every numeric clinical value, whatever its column, must be finite and at most
            this in absolute value (``1e30`` is a typo or a unit error, never a patient); None: finite only.
        min_slices: Fewest voxels along every axis of an image or mask (``not_3d`` below it): a
            single slice, or two, is not a volume that radiomics or the 2.5D slices can use.
        max_nonfinite_fraction: Largest fraction of NaN/±inf voxels an image may hold *outside* the
            tumour before it is an error (``nonfinite_voxels``); below it, a warning. Any non-finite voxel
            inside the mask, and an image with no finite voxel, are always errors. Default 0: any is an error.
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
    column_map: dict[str, str] = {}
    clinical_columns: list[str] | None = None
    phases: list[str] = ["arterial", "nephrographic", "excretory"]
    require_labels: bool = True
    spacing_rtol: float = Field(1e-3, ge=0)
    origin_atol_voxels: float = Field(0.01, ge=0)
    direction_atol: float = Field(1e-3, ge=0)
    numeric_parse_fraction: float = Field(0.8, gt=0.5, le=1.0)
    clinical_ranges: dict[str, tuple[float, float]] = {}
    clinical_max_abs: float | None = Field(1e9, gt=0)
    min_slices: int = Field(3, ge=2)
    max_nonfinite_fraction: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("clinical_ranges")
    @classmethod
    def _ranges_ordered(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (low, high) in value.items():
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"clinical_ranges[{name!r}] must be finite with low <= high, got [{low}, {high}]")
        return value

    def clinical_range(self, column: str) -> tuple[float, float] | None:
        """The plausible range of a clinical column (configured first, then the defaults), or None."""
        for table in (self.clinical_ranges, DEFAULT_CLINICAL_RANGES):
            for name, bounds in table.items():
                if name.lower() == column.lower():
                    return (float(bounds[0]), float(bounds[1]))
        return None
