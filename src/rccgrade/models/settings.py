"""Settings of classifiers, arms and the split (feature selection: :mod:`rccgrade.features.settings`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rccgrade.features.settings import SelectionSettings, SelectionStep  # re-exported: selection lives in features/

ClassifierName = Literal["logistic", "logistic_enet", "svm", "random_forest", "xgboost", "lightgbm"]


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
