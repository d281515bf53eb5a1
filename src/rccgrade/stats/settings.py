"""Settings of the evaluation statistics (CIs, bootstrap, threshold, calibration, DCA)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EvaluationSettings(BaseModel):
    """Settings of the evaluation statistics (CIs, bootstrap, DCA thresholds).

    Attributes:
        ci_method: AUC confidence interval: ``delong`` (pROC's default; normal on the AUC scale) or
            ``bootstrap`` (stratified percentile bootstrap).
        ci_level: Confidence level of every interval.
        n_bootstrap: Bootstrap replicates for AUC CIs when ``ci_method == "bootstrap"``.
        bootstrap_stratified: Resample positives and negatives separately (pROC's default).
        seed_offset: Added to the study seed to seed the evaluation's resampling, so it does not share a
            random stream with model fitting.
        roc_band_bootstrap: Replicates of the pointwise ROC confidence band drawn in the figures (0 = none).
        threshold_method: How the decision threshold is chosen on training data (Youden's J).
        calibration_bins: Number of bins of the binned calibration curve.
        calibration_strategy: ``quantile`` (equal-size bins) or ``uniform`` (equal-width bins).
        lowess_frac: Neighbourhood fraction of the LOWESS smoothed calibration curve (rms uses 2/3).
        hl_groups: Number of risk groups of the Hosmer–Lemeshow test (deciles).
        dca_threshold_min: First threshold probability of the decision curves.
        dca_threshold_max: Last threshold probability of the decision curves.
        dca_threshold_step: Step between threshold probabilities.
        multiple_testing: Correction of the pairwise DeLong p-values across arms.
    """

    model_config = ConfigDict(extra="forbid")

    ci_method: Literal["delong", "bootstrap"] = "delong"
    ci_level: float = Field(0.95, gt=0.0, lt=1.0)
    n_bootstrap: int = Field(2000, ge=100)
    bootstrap_stratified: bool = True
    seed_offset: int = 8
    roc_band_bootstrap: int = Field(500, ge=0)
    threshold_method: Literal["youden"] = "youden"
    calibration_bins: int = Field(10, ge=2)
    calibration_strategy: Literal["quantile", "uniform"] = "quantile"
    lowess_frac: float = Field(2.0 / 3.0, gt=0.0, le=1.0)
    hl_groups: int = Field(10, ge=3)
    dca_threshold_min: float = Field(0.0, ge=0.0, lt=1.0)
    dca_threshold_max: float = Field(0.99, gt=0.0, lt=1.0)
    dca_threshold_step: float = Field(0.01, gt=0.0, lt=1.0)
    multiple_testing: Literal["holm", "none"] = "holm"

    @model_validator(mode="after")
    def _check_dca_range(self) -> EvaluationSettings:
        if self.dca_threshold_max <= self.dca_threshold_min:
            raise ValueError("dca_threshold_max must be greater than dca_threshold_min")
        return self
