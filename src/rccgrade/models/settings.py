"""Settings of feature selection, classifiers, arms and the split."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SelectionStep = Literal["near_constant", "stability", "univariate", "correlation", "lasso", "mrmr"]
ClassifierName = Literal["logistic", "svm", "random_forest", "xgboost", "lightgbm"]


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
    mrmr_features: int = Field(20, ge=1)
    deep_pca: int | float | None = None
    combat: bool = False
    combat_empirical_bayes: bool = True


class ModelSettings(BaseModel):
    """Settings of feature selection, classifiers, arms and the split.

    Attributes:
        arms: Model arms to fit: ``clinical``, ``radiomics``, ``deep:<roi>`` (``deep:*`` = every ROI in the
            feature table), ``combined`` (feature-level fusion of all sources) and ``stacked`` (logistic
            regression on the other arms' out-of-fold probabilities).
        classifier: Classifier of every arm unless overridden in ``arm_classifiers``.
        arm_classifiers: Arm name → classifier override.
        param_grids: Classifier name → hyper-parameter grid (keys are the classifier's parameters); a
            classifier absent here uses the built-in grid of :mod:`rccgrade.models.classifiers`.
        search: ``grid`` (exhaustive) or ``random`` (``n_iter`` seeded draws).
        n_iter: Candidates drawn by a random search.
        cv_folds: Folds of the stratified CV used for tuning and out-of-fold probabilities.
        scoring: scikit-learn scorer used by the tuning.
        nested_oof: Out-of-fold training probabilities rerun the tuning inside each fold (honest, slower);
            False reuses the hyper-parameters tuned on all training patients.
        test_size: Test fraction of the stratified random split (used when the manifest has no ``split``).
        cv_repeats: Repeats of stratified k-fold CV on the training patients for repeated OOF estimates
            (0: off).
        selection: Selection settings of the radiomics and deep sources.
        clinical_steps: Selection steps of the clinical source (few variables: near-constant filter only).
        combined_sources: Sources fused by ``combined``: ``clinical``, ``radiomics``, ``deep:<roi>`` or
            ``deep:*``.
        stacked_arms: Arms whose OOF probabilities the ``stacked`` arm combines; None: every single-source arm.
        threshold: How the decision threshold is chosen on training (OOF) probabilities.
    """

    model_config = ConfigDict(extra="forbid")

    arms: list[str] = ["clinical", "radiomics", "deep:*", "combined", "stacked"]
    classifier: ClassifierName = "logistic"
    arm_classifiers: dict[str, ClassifierName] = {}
    param_grids: dict[str, dict[str, list[Any]]] = {}
    search: Literal["grid", "random"] = "grid"
    n_iter: int = Field(20, ge=1)
    cv_folds: int = Field(5, ge=2)
    scoring: str = "roc_auc"
    nested_oof: bool = True
    test_size: float = Field(0.3, gt=0, lt=1)
    cv_repeats: int = Field(0, ge=0)
    selection: SelectionSettings = SelectionSettings()
    clinical_steps: list[SelectionStep] = ["near_constant"]
    combined_sources: list[str] = ["clinical", "radiomics", "deep:*"]
    stacked_arms: list[str] | None = None
    threshold: Literal["youden"] = "youden"
