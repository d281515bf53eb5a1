"""Settings of classifiers, arms and the split (feature selection: :mod:`rccgrade.features.settings`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rccgrade.features.settings import SelectionSettings, SelectionStep  # re-exported: selection lives in features/

ClassifierName = Literal["logistic", "logistic_enet", "svm", "random_forest", "xgboost", "lightgbm"]
AutoClassifier = Literal["auto"]
"""``classifier: auto`` picks a classifier per arm by cross-validation on the training patients."""


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
            (0: off). Selection is refitted in every fold; the tuning too when ``nested_oof`` is true (else
            the hyper-parameters tuned on all training patients are reused: slightly optimistic).
        selection: Selection settings of the radiomics and deep sources.
        clinical_steps: Selection steps of the clinical source (few variables: near-constant filter only).
        combined_sources: Sources fused by ``combined``: ``clinical``, ``radiomics``, ``deep:<roi>`` or
            ``deep:*``.
        stacked_arms: Arms whose OOF probabilities the ``stacked`` arm combines; None: every single-source arm.
        threshold: How the decision threshold is chosen on training (OOF) probabilities.
        auto_candidates: Classifiers ``classifier: auto`` chooses among (``logistic`` is the L2 logistic
            regression on the LASSO-selected features: the "LR-LASSO" chain; ``logistic_enet`` the elastic-net
            one), by cross-validated AUC on the training folds (:mod:`rccgrade.models.auto`).
        stacking_meta: Meta-model of ``stacked``: ``nonnegative`` (logistic regression with weights ≥ 0, so a
            noise source gets weight 0; :mod:`rccgrade.models.stacking`) or ``logistic`` (unconstrained).
        stacking_c: Inverse ridge strength of the meta-model (scikit-learn's ``C``); None: no penalty.
        combined_selection: How ``combined`` fuses its sources. ``budgets`` (the default): each source keeps at
            most a budget of its selected features (mRMR order), the budgets chosen by inner CV on the training
            patients (:mod:`rccgrade.models.fusion`); ``gated`` (``configs/extended.yaml``): every selected
            feature of each source whose inner-CV fold AUCs exceed 0.5 (one-sided corrected t-test, p <
            ``combined_gate_alpha``; :mod:`rccgrade.models.source_gate`); ``union``: every source's selected
            features (the reference study). docs/fusion.md gives the measurements behind each.
        combined_gate_alpha: Significance level of the ``gated`` source gate.
        combined_gate_repeats: Repeats of the gate's inner k-fold CV (its fold AUCs are tested with the
            corrected resampled t-test, :func:`rccgrade.stats.corrected_resampled_ttest`).
        combined_budgets: Budgets a source may get (0 = leave the source out).
        combined_budget_cv: Folds of the inner CV that chooses the budgets (or gates the sources).
        combined_min_gain: Inner-CV AUC a change of budget must add to be accepted (favours fewer features).
        combined_budget_scorer: What scores the budgets: ``logistic`` (an L2 logistic regression whatever the
            arm's classifier: a cheap proxy, see :mod:`rccgrade.models.fusion`) or ``arm`` (the arm's own
            classifier with its package defaults, untuned; ``auto`` keeps the proxy).
    """

    model_config = ConfigDict(extra="forbid")

    arms: list[str] = ["clinical", "radiomics", "deep:*", "combined", "stacked"]
    classifier: ClassifierName | AutoClassifier = "logistic"
    arm_classifiers: dict[str, ClassifierName | AutoClassifier] = {}
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
    auto_candidates: list[ClassifierName] = [
        "logistic",
        "logistic_enet",
        "svm",
        "random_forest",
        "xgboost",
        "lightgbm",
    ]
    stacking_meta: Literal["nonnegative", "logistic"] = "nonnegative"
    stacking_c: float | None = Field(1.0, gt=0)
    combined_selection: Literal["budgets", "gated", "union"] = "budgets"
    combined_gate_alpha: float = Field(0.01, gt=0, lt=1)
    combined_gate_repeats: int = Field(3, ge=1)
    combined_budgets: list[int] = [0, 1, 2, 4, 8, 16]
    combined_budget_cv: int = Field(5, ge=2)
    combined_min_gain: float = Field(0.005, ge=0, lt=0.5)
    combined_budget_scorer: Literal["logistic", "arm"] = "logistic"

    @field_validator("auto_candidates")
    @classmethod
    def _candidates(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one classifier for classifier: auto")
        if len(set(value)) != len(value):
            raise ValueError(f"lists a classifier twice: {value}")
        return value

    @field_validator("combined_budgets")
    @classmethod
    def _budgets(cls, value: list[int]) -> list[int]:
        if any(b < 0 for b in value):
            raise ValueError(f"budgets are numbers of features (>= 0); got {value}")
        if not any(b > 0 for b in value):
            raise ValueError(f"needs at least one budget above 0 (0 alone would leave every source out); got {value}")
        return sorted(set(value))
