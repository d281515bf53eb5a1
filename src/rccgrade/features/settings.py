"""Settings of feature selection (the per-source chains of :mod:`rccgrade.features.selection`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SelectionStep = Literal[
    "near_constant", "stability", "group", "univariate", "correlation", "lasso", "stability_selection", "mrmr"
]

__all__ = ["SelectionSettings", "SelectionStep"]


class SelectionSettings(BaseModel):
    """Feature selection applied to each source, fitted on training patients only.

    Attributes:
        steps: Selection steps, in order (imputation/encoding always runs first, z-scoring last).
        near_constant_max_frequency: Drop a feature whose most common value covers more than this fraction.
        stability_threshold: Minimum ICC (radiomics features only) to keep a feature.
        stability_keep_missing: Keep radiomics features absent from the ICC table.
        univariate_test: ``mannwhitney`` or ``ttest``.
        univariate_alpha: Benjamini–Hochberg FDR level.
        univariate_min_features: Keep at least this many (smallest p) when fewer pass the FDR.
        univariate_max_features: Keep at most this many; None: no cap.
        correlation_threshold: Maximum |r| between two kept features.
        correlation_method: ``pearson`` or ``spearman``.
        lasso_cs: Number of C values (log grid 1e-3 … 10) searched by the LASSO's inner CV.
        lasso_cv: Folds of the LASSO's inner stratified CV.
        lasso_max_features: Keep at most this many LASSO features; None: all non-zero.
        lasso_l1_ratio: 1.0 = LASSO; below 1 = elastic net (for ``lasso`` and ``stability_selection``).
        group_threshold: ``group`` step: |r| at or above which features are near-duplicates.
        group_method: ``group`` step: ``spearman`` or ``pearson``.
        group_linkage: ``group`` step: ``complete`` or ``average`` hierarchical linkage on 1 − |r|.
        group_representative: ``group`` step: ``relevance`` (largest |AUC − 0.5|) or ``medoid``.
        stability_subsamples: ``stability_selection``: half-samples (complementary pairs).
        stability_selection_threshold: ``stability_selection``: selection frequency π_thr to keep a feature.
        stability_max_false_positives: ``stability_selection``: bound on the expected number of noise
            features kept (Meinshausen–Bühlmann); None: no error control.
        mrmr_features: Features kept by mRMR (when ``mrmr`` is a step).
        deep_pca: PCA of deep features before selection: components (int), variance fraction (float) or None.
        combat: ComBat-harmonise radiomics and deep features by ``center`` (needs centres for all patients).
        combat_empirical_bayes: Parametric empirical-Bayes ComBat (True) or raw location/scale (False).
    """

    model_config = ConfigDict(extra="forbid")

    steps: list[SelectionStep] = ["near_constant", "stability", "univariate", "correlation", "lasso"]
    near_constant_max_frequency: float = Field(0.95, gt=0, le=1)
    stability_threshold: float = 0.75
    stability_keep_missing: bool = True
    univariate_test: Literal["mannwhitney", "ttest"] = "mannwhitney"
    univariate_alpha: float = Field(0.05, gt=0, le=1)
    univariate_min_features: int = Field(10, ge=0)
    univariate_max_features: int | None = Field(None, ge=1)
    correlation_threshold: float = Field(0.9, gt=0, le=1)
    correlation_method: Literal["pearson", "spearman"] = "pearson"
    lasso_cs: int = Field(20, ge=2)
    lasso_cv: int = Field(5, ge=2)
    lasso_max_features: int | None = Field(None, ge=1)
    lasso_l1_ratio: float = Field(1.0, gt=0, le=1)
    group_threshold: float = Field(0.95, gt=0, le=1)
    group_method: Literal["pearson", "spearman"] = "spearman"
    group_linkage: Literal["complete", "average"] = "complete"
    group_representative: Literal["relevance", "medoid"] = "relevance"
    stability_subsamples: int = Field(100, ge=2)
    stability_selection_threshold: float = Field(0.75, gt=0.5, le=1)
    stability_max_false_positives: float | None = Field(1.0, gt=0)
    mrmr_features: int = Field(20, ge=1)
    deep_pca: int | float | None = None
    combat: bool = False
    combat_empirical_bayes: bool = True
