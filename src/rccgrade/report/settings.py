"""Settings of the HTML report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReportSettings(BaseModel):
    """What the HTML report shows and how.

    Attributes:
        enabled: Write ``report.html`` at the end of the study.
        title: Title printed at the top of the report.
        numeric_test: Test of a numeric clinical variable between grades in Table 1: ``auto`` (Welch's
            t-test when both groups pass a Shapiro–Wilk test at ``normality_alpha``, else Mann–Whitney U),
            ``ttest`` (always Welch) or ``mannwhitney`` (always Mann–Whitney U).
        normality_alpha: Significance level of the Shapiro–Wilk test used by ``auto``.
        fisher_below: Categorical variables use Fisher's exact test instead of the χ² test when an
            expected cell count is below this value (the usual rule of five).
        decimals: Decimals of AUCs and other proportions in tables.
        gradcam_cases: Test patients shown in the Grad-CAM gallery (the most confident high- and low-grade
            predictions of the best deep arm, alternately); 0 hides the gallery.
        max_features: Largest number of selected features listed per arm.
        embed: How figures are embedded: ``png`` (base64 raster, smallest file for many points) or ``svg``
            (inline vector when the figure exists as SVG; PNG otherwise).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    title: str = "Preoperative prediction of ccRCC WHO/ISUP grade from triple-phase CT"
    numeric_test: Literal["auto", "ttest", "mannwhitney"] = "auto"
    normality_alpha: float = Field(0.05, gt=0, lt=1)
    fisher_below: float = Field(5.0, ge=0)
    decimals: int = Field(3, ge=1, le=6)
    gradcam_cases: int = Field(6, ge=0)
    max_features: int = Field(25, ge=1)
    embed: Literal["png", "svg"] = "png"
