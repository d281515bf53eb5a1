"""Model arms: clinical, radiomics, deep per ROI, combined (feature-level fusion) and stacked (late fusion).

Every arm is one scikit-learn estimator that takes the *whole* FeatureTable and picks its own columns by
prefix (``clin:``, ``rad:``, ``deep:<roi>:``), so all arms share one interface for fitting, tuning,
cross-validation, bundling and prediction:

``Pipeline([("features", SourceUnion([per-source chain …])), ("clf", classifier)])``

with each per-source chain = impute/encode → (ComBat) → (PCA) → selection steps → z-score. The
``combined`` arm runs the chains of several sources side by side and fits one classifier on the union of
their selected features. ``stacked`` fits a logistic regression on the logits of the other arms'
out-of-fold training probabilities.

Everything fitted — imputation medians, selected features, LASSO penalty, scaler, hyper-parameters, the
decision threshold — is learnt from the training patients only; out-of-fold probabilities refit the whole
chain (tuning included, by default) in every fold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from rccgrade.errors import ConfigError, ModelError
from rccgrade.features.clinical import clinical_table  # noqa: F401 - re-exported
from rccgrade.features.naming import (  # noqa: F401 - re-exported: the names' home is features.naming
    SINGLE_SOURCES,
    deep_rois,
    expand_sources,
    source_prefix,
)
from rccgrade.features.selection import SourceUnion, icc_mapping
from rccgrade.features.table import validate_table
from rccgrade.models.arm_tasks import fit_arm_tasks
from rccgrade.models.auto import AutoSearch, resolve_auto, unwrap_auto
from rccgrade.models.chain import source_chain
from rccgrade.models.classifiers import default_grid, make_classifier
from rccgrade.models.fusion import budgeted_union, fusion_details
from rccgrade.models.settings import ModelSettings
from rccgrade.models.split import repeated_cv_oof
from rccgrade.models.stacking import _EPS, StackedClassifier, make_meta  # noqa: F401 - StackedClassifier re-exported
from rccgrade.models.stacking import logit as _logit
from rccgrade.models.tuning import make_search, stratified_folds

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# arm construction
# --------------------------------------------------------------------------------------------------


def arm_sources(arm: str, settings: ModelSettings, columns: Sequence[str]) -> list[str]:
    """Sources an arm draws its features from."""
    if arm == "combined":
        sources = expand_sources(settings.combined_sources, columns)
        present = [s for s in sources if any(c.startswith(source_prefix(s)) for c in columns)]
        if not present:
            raise ModelError(f"the combined arm found none of its sources {sources} in the feature table")
        return present
    if arm == "stacked":
        raise ModelError("the stacked arm has no sources of its own; it combines the other arms")
    source_prefix(arm)
    return [arm]


def classifier_name(arm: str, settings: ModelSettings) -> str:
    """Classifier used by an arm (per-arm override, else the default)."""
    return settings.arm_classifiers.get(arm, settings.classifier)


def build_arm(
    arm: str,
    columns: Sequence[str],
    settings: ModelSettings,
    seed: int = 0,
    stability: Mapping[str, float] | None = None,
    centers: Mapping[str, str] | None = None,
    classifier: str | None = None,
) -> Pipeline:
    """An unfitted arm estimator (takes the whole FeatureTable); ``classifier`` overrides the settings'."""
    entries = [
        (s, source_prefix(s), source_chain(s, settings, seed, stability, centers))
        for s in arm_sources(arm, settings, columns)
    ]
    clf = classifier or classifier_name(arm, settings)
    union = budgeted_union(entries, settings, seed, clf) if arm == "combined" else SourceUnion(entries)
    return Pipeline([("features", union), ("clf", make_classifier(clf, seed))])


# --------------------------------------------------------------------------------------------------
# fitting all arms
# --------------------------------------------------------------------------------------------------


def choose_threshold(y: Any, score: Any) -> float:
    """Probability cut-off maximising Youden's J on training (out-of-fold) probabilities.

    Delegates to :func:`rccgrade.stats.thresholds.youden_threshold` (midpoints between distinct scores,
    ties to the highest cut-off); a patient is called high grade when ``probability >= threshold``. When
    every score is identical no cut-off separates anything: that score is returned (and logged).
    """
    from rccgrade.errors import StatsError
    from rccgrade.stats.thresholds import youden_threshold

    try:
        return float(youden_threshold(y, score).threshold)
    except StatsError as exc:
        value = float(np.asarray(score, dtype=np.float64).ravel()[0])
        log.warning("no Youden threshold (%s); using the constant score %.4g", exc, value)
        return value


def describe_model(model: Any) -> pd.DataFrame:
    """Selected features of a fitted arm with their coefficient (or importance) for the report.

    Returns:
        DataFrame with columns ``feature``, ``coefficient`` (per standard deviation of the feature, NaN
        when the classifier has none), ``importance`` (tree importances, NaN otherwise), ``mean`` and
        ``sd`` (training mean/SD used for z-scoring, to turn coefficients back into original units for a
        nomogram). Logistic regression adds an ``(intercept)`` row.
    """
    if isinstance(model, StackedClassifier):
        names = [n for n, _ in model.estimators_]
        rows = pd.DataFrame({"feature": [f"logit p({n})" for n in names], "coefficient": model.meta_.coef_.ravel()})
        intercept = pd.DataFrame({"feature": ["(intercept)"], "coefficient": [float(model.meta_.intercept_[0])]})
        out = pd.concat([rows, intercept], ignore_index=True)
        out["importance"] = np.nan
        out["mean"] = np.nan
        out["sd"] = np.nan
        return out
    union: SourceUnion = model.named_steps["features"]
    clf = model.named_steps["clf"]
    names = list(union.get_feature_names_out())
    means, sds = [], []
    for _, _, chain in union.transformers_:
        scaler = chain.named_steps["scale"]
        means.extend(scaler.mean_.tolist())
        sds.extend(scaler.scale_.tolist())
    coef = np.asarray(clf.coef_).ravel() if hasattr(clf, "coef_") else np.full(len(names), np.nan)
    imp = np.asarray(clf.feature_importances_) if hasattr(clf, "feature_importances_") else np.full(len(names), np.nan)
    out = pd.DataFrame({"feature": names, "coefficient": coef, "importance": imp, "mean": means, "sd": sds})
    sizes = group_sizes(model)
    if sizes:  # a near-duplicate grouping ran: say how many correlated features each one stands for
        out["represents"] = [sizes.get(n, 1) for n in names]
    if hasattr(clf, "intercept_"):
        out = pd.concat(
            [out, pd.DataFrame({"feature": ["(intercept)"], "coefficient": [float(np.ravel(clf.intercept_)[0])]})],
            ignore_index=True,
        )
    return out


def group_sizes(model: Any) -> dict[str, int]:
    """Selected feature → number of near-duplicates it represents (itself included), from the ``group`` steps.

    Empty when no chain of the arm groups near-duplicates.
    """
    union = getattr(model, "named_steps", {}).get("features")
    sizes: dict[str, int] = {}
    for _, _, chain in getattr(union, "transformers_", []):
        grouper = chain.named_steps.get("group")
        if grouper is not None:
            sizes.update(grouper.group_sizes())
    return sizes


@dataclass
class ArmsResult:
    """Everything fitted by :func:`fit_arms`.

    Attributes:
        arms: Arm names in fitting order (``deep:*`` expanded).
        models: Arm → fitted estimator (takes the whole FeatureTable).
        train_ids: Training patients.
        test_ids: Test patients (may be empty).
        y_train: Training labels.
        train_proba: Apparent probabilities of the training patients (patients × arms).
        oof_proba: Out-of-fold probabilities of the training patients (patients × arms).
        test_proba: Probabilities of the test patients (patients × arms).
        thresholds: Arm → Youden threshold chosen on the OOF probabilities.
        selected: Arm → selected features with coefficients (:func:`describe_model`).
        best_params: Arm → tuned hyper-parameters.
        repeated_oof: Arm → repeated-CV OOF probabilities (when ``cv_repeats > 0``).
        skipped: Configured single-source arm → why it was not fitted (its source is absent from the table).
        fusion: Arm → what fusion and ``auto`` learnt (:func:`rccgrade.models.fusion.fusion_details`: stacking
            weights, source budgets; ``auto``: the chosen classifier and its CV scores), JSON-able.
        settings: The settings used.
        seed: The seed used.
    """

    arms: list[str]
    models: dict[str, Any]
    train_ids: list[str]
    test_ids: list[str]
    y_train: pd.Series
    train_proba: pd.DataFrame
    oof_proba: pd.DataFrame
    test_proba: pd.DataFrame
    thresholds: dict[str, float]
    selected: dict[str, pd.DataFrame]
    best_params: dict[str, dict[str, Any]]
    settings: ModelSettings
    seed: int
    repeated_oof: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fusion: dict[str, dict[str, Any]] = field(default_factory=dict)


def _check_inputs(table: pd.DataFrame, y: pd.Series, train_ids: Sequence[str]) -> tuple[list[str], pd.Series]:
    validate_table(table)
    train = [str(p) for p in train_ids]
    missing = [p for p in train if p not in table.index]
    if missing:
        raise ModelError(f"{len(missing)} training patient(s) have no features: {missing[:5]}", patient_id=missing[0])
    y_train = y.reindex(train)
    unlabeled = y_train.index[y_train.isna()].tolist()
    if unlabeled:
        raise ModelError(f"training patient(s) without a label: {unlabeled[:5]}", patient_id=str(unlabeled[0]))
    y_train = y_train.astype(np.int64)
    if set(y_train.unique().tolist()) != {0, 1}:
        raise ModelError("the training patients must include both low- and high-grade cases")
    return train, y_train


def fit_arms(
    table: pd.DataFrame,
    y: pd.Series,
    train_ids: Sequence[str],
    settings: ModelSettings | None = None,
    seed: int = 0,
    stability: pd.Series | pd.DataFrame | Mapping[str, float] | None = None,
    centers: pd.Series | Mapping[str, str] | None = None,
    test_ids: Sequence[str] | None = None,
    n_jobs: int = 1,
) -> ArmsResult:
    """Fit every configured arm on the training patients and predict the others.

    Args:
        table: FeatureTable of all patients (training and test).
        y: ``high_grade`` (0/1) indexed by ``patient_id``; only training labels are used for fitting.
        train_ids: Training patients.
        settings: Model settings (defaults when None).
        seed: Seed of every random step (folds, LASSO CV, classifiers).
        stability: ICC per radiomics feature from the stability analysis (None: no stability filter).
        centers: Centre per patient (needed when ComBat is on).
        test_ids: Patients to predict; default every patient of ``table`` not in ``train_ids``.
        n_jobs: Worker processes fitting arms and outer folds in parallel (:mod:`rccgrade.models.arm_tasks`);
            the numbers are identical for any value.

    Returns:
        :class:`ArmsResult` with fitted arms, apparent/OOF/test probabilities, thresholds and selected features.

    Raises:
        ModelError: missing features or labels, or no arm left to fit. A single-source arm whose columns are
            absent is skipped (logged, listed in ``ArmsResult.skipped``).
        ConfigError: unknown arm/source/classifier.
    """
    settings = settings or ModelSettings()
    train, y_train = _check_inputs(table, y, train_ids)
    train_set = set(train)
    tests = [str(p) for p in test_ids] if test_ids is not None else [p for p in table.index if p not in train_set]
    absent = [p for p in tests if p not in table.index]
    if absent:
        raise ModelError(f"{len(absent)} test patient(s) have no features: {absent[:5]}", patient_id=absent[0])
    overlap = sorted(set(tests) & train_set)
    if overlap:
        raise ModelError(f"patients in both the training and the test set: {overlap[:5]}", patient_id=overlap[0])
    X_train = table.loc[train]
    X_test = table.loc[tests]
    icc = icc_mapping(stability) if stability is not None else None
    center_map = (
        None if centers is None else {str(k): (None if pd.isna(v) else str(v)) for k, v in dict(centers).items()}
    )
    arms = expand_sources(settings.arms, list(table.columns))
    skipped: dict[str, str] = {}
    for arm in list(arms):
        if arm in ("combined", "stacked"):
            continue
        prefix = source_prefix(arm)
        if not any(c.startswith(prefix) for c in table.columns):
            skipped[arm] = f"no '{prefix}' columns in the feature table"
            log.warning("arm %s skipped: %s", arm, skipped[arm])
            arms.remove(arm)
    if not [a for a in arms if a != "stacked"]:
        raise ModelError(f"no arm can be fitted: {skipped or 'no arms configured'} (models.arms)")
    folds = stratified_folds(y_train, settings.cv_folds, seed)

    models: dict[str, Any] = {}
    train_p: dict[str, np.ndarray] = {}
    oof_p: dict[str, np.ndarray] = {}
    test_p: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    selected: dict[str, pd.DataFrame] = {}
    best_params: dict[str, dict[str, Any]] = {}
    repeated: dict[str, pd.DataFrame] = {}
    fusion: dict[str, dict[str, Any]] = {}
    single = [a for a in arms if a != "stacked"]
    per_arm: dict[str, ModelSettings] = {}
    precomputed: dict[str, dict[str, str]] = {}
    for arm in single:  # classifier: auto is chosen by inner CV on the training patients (and in each outer fold)
        union = build_arm(arm, list(table.columns), settings, seed, icc, center_map, "logistic").steps[0][1]
        per_arm[arm], fusion[arm] = resolve_auto(arm, settings, union, X_train, y_train, folds, seed, n_jobs)
        if "precomputed" in fusion[arm].get("auto", {}):
            precomputed[arm] = fusion[arm]["auto"].pop("precomputed")

    def make(arm: str) -> tuple[Any, Any]:
        arm_settings = per_arm[arm]
        est = build_arm(arm, list(table.columns), arm_settings, seed, icc, center_map)
        clf_name = classifier_name(arm, arm_settings)
        grid = {f"clf__{k}": v for k, v in default_grid(clf_name, settings.param_grids).items()}
        search = make_search(
            est, grid, folds, search=settings.search, n_iter=settings.n_iter, scoring=settings.scoring, seed=seed
        )
        if arm in precomputed:  # auto with nested OOF: every outer fold redoes the choice (models.auto)
            search = AutoSearch(est, settings, seed, precomputed[arm])
        return est, search

    log.info("fitting arm(s) %s on %d training patients", single, len(train))
    fits = fit_arm_tasks(single, make, X_train, y_train, X_test, folds, nested_oof=settings.nested_oof, n_jobs=n_jobs)
    for arm in single:
        fit = fits[arm]
        fit.model, fit.params = unwrap_auto(fit.model, fit.params)
        models[arm] = fit.model
        best_params[arm] = fit.params
        oof_p[arm] = fit.oof_proba
        train_p[arm] = fit.train_proba
        test_p[arm] = fit.test_proba
        thresholds[arm] = choose_threshold(y_train, oof_p[arm])
        selected[arm] = describe_model(fit.model)
        fusion[arm].update(fusion_details(fit.model))
        if settings.cv_repeats > 0:  # like the OOF probabilities: nested_oof reruns the tuning in every fold
            est, search = make(arm)
            repeated[arm] = repeated_cv_oof(
                clone(search) if settings.nested_oof else clone(est).set_params(**fit.params),
                X_train,
                y_train,
                n_splits=folds.n_splits,
                n_repeats=settings.cv_repeats,
                seed=seed,
            )
    if "stacked" in arms:
        base = settings.stacked_arms or [a for a in arms if a not in ("stacked", "combined")]
        base = expand_sources(base, list(table.columns))
        unknown = [a for a in base if a not in models]
        if settings.stacked_arms is not None and (unknown or len(base) < 2):
            raise ConfigError(
                f"the stacked arm needs at least two fitted arms to combine; requested {base}, not fitted: {unknown} "
                "(models.stacked_arms / models.arms)"
            )
        if len(base) < 2:
            skipped["stacked"] = f"needs at least two single-source arms to combine; fitted: {base}"
            log.warning("arm stacked skipped: %s", skipped["stacked"])
    if "stacked" in arms and "stacked" not in skipped:
        oof = np.column_stack([oof_p[a] for a in base])
        stacked = StackedClassifier.from_fitted(
            [(a, models[a]) for a in base],
            oof,
            y_train,
            folds.n_splits,
            seed,
            settings.stacking_meta,
            settings.stacking_c,
        )
        meta = make_meta(settings.stacking_meta, settings.stacking_c)
        oof_p["stacked"] = cross_val_predict(meta, _logit(oof), y_train, cv=folds, method="predict_proba")[:, 1]
        models["stacked"] = stacked
        best_params["stacked"] = {}
        train_p["stacked"] = stacked.meta_.predict_proba(_logit(np.column_stack([train_p[a] for a in base])))[:, 1]
        test_p["stacked"] = stacked.predict_proba(X_test)[:, 1] if len(tests) else np.empty(0)
        thresholds["stacked"] = choose_threshold(y_train, oof_p["stacked"])
        selected["stacked"] = describe_model(stacked)
        fusion["stacked"] = fusion_details(stacked)
    fitted_arms = [a for a in arms if a in models]
    return ArmsResult(
        arms=fitted_arms,
        models=models,
        train_ids=train,
        test_ids=tests,
        y_train=y_train,
        train_proba=pd.DataFrame({a: train_p[a] for a in fitted_arms}, index=pd.Index(train, name="patient_id")),
        oof_proba=pd.DataFrame({a: oof_p[a] for a in fitted_arms}, index=pd.Index(train, name="patient_id")),
        test_proba=pd.DataFrame({a: test_p[a] for a in fitted_arms}, index=pd.Index(tests, name="patient_id")),
        thresholds=thresholds,
        selected=selected,
        best_params=best_params,
        settings=settings,
        seed=seed,
        repeated_oof=repeated,
        skipped=skipped,
        fusion={a: fusion[a] for a in fitted_arms if a in fusion},
    )


def predict_arms(result: ArmsResult, table: pd.DataFrame, arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Probability of high grade from each fitted arm for the patients of ``table``.

    Returns:
        DataFrame indexed by ``patient_id`` with one column per arm.
    """
    validate_table(table)
    arms = list(arms) if arms is not None else result.arms
    unknown = [a for a in arms if a not in result.models]
    if unknown:
        raise ModelError(f"arm(s) {unknown} were not fitted; fitted arms: {result.arms}")
    return pd.DataFrame({a: result.models[a].predict_proba(table)[:, 1] for a in arms}, index=table.index)


def oof_folds(y_train: pd.Series, settings: ModelSettings, seed: int) -> StratifiedKFold:
    """The stratified folds :func:`fit_arms` uses for tuning and OOF probabilities."""
    return stratified_folds(y_train, settings.cv_folds, seed)
