"""``classifier: auto``: choose an arm's classifier by cross-validation on the training patients only.

For an arm whose classifier is ``auto``, every candidate (``models.auto_candidates``: by default L2 logistic
regression on the LASSO-selected features — the "LR-LASSO" chain —, elastic-net logistic regression, SVM,
random forest, XGBoost, LightGBM) is scored on the arm's own CV folds of the **training patients**
(the outer folds of :func:`rccgrade.models.arms.fit_arms`):

* in each fold the arm's feature union (imputation, selection, budgets …) is fitted once on the fold's
  training part and shared by every candidate (the selection does not depend on the classifier);
* each candidate is tuned on that training part by its own inner stratified CV over its grid (the inner
  tuning stays inside the fold), then scores the held-out fold (ROC AUC).

The candidate with the highest mean held-out AUC wins (ties: the earlier candidate in the list, i.e. the
simpler model); the arm is then fitted with it exactly like an arm configured with that classifier. Test
patients never enter (only the training rows are passed in). The choice and the per-candidate scores are
returned as an :class:`AutoChoice`, recorded in ``ArmsResult.fusion`` and in the arm's bundle.

**Out-of-fold probabilities redo the choice.** With ``nested_oof`` (the default) an ``auto`` arm's OOF
probabilities — the ones the ``stacked`` arm, the threshold and the training-cohort statistics use — come from
:class:`AutoSearch`, which in every outer fold chooses the classifier again on the fold's training part only (its
own inner folds: ``stratified_folds(fold labels, cv_folds, seed)``), tunes the fold's choice and predicts the
held-out fold: the whole procedure is cross-validated, so the OOF AUC is not flattered by a choice that saw the
held-out patients. The record keeps the final choice and each outer fold's (``outer_folds``). The per-fold
choices are computed before the fitting loop (on ``n_jobs`` workers) and handed to the fold fits, which look
them up by a hash of their training data (an unseen training set is chosen afresh, so the lookup is only a cache).

With ``nested_oof: false`` the OOF fits reuse the choice and the hyper-parameters made on all training
patients (as that setting does for tuning): the training OOF AUC of an ``auto`` arm is then optimistic; the
record says so (``oof_choice: fixed``). Test-set numbers are unaffected either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from rccgrade.errors import ModelError
from rccgrade.models.classifiers import default_grid, make_classifier
from rccgrade.models.settings import ModelSettings
from rccgrade.models.tuning import fit_tuned, make_search, stratified_folds

log = logging.getLogger(__name__)

__all__ = ["AutoChoice", "AutoSearch", "choose_classifier", "resolve_auto", "unwrap_auto"]


@dataclass(frozen=True)
class AutoChoice:
    """The classifier ``auto`` chose for one arm.

    Attributes:
        chosen: The winning classifier name.
        scores: Candidate → mean held-out AUC over the training folds.
        fold_scores: Candidate → held-out AUC of each fold.
        n_folds: Number of folds.
    """

    chosen: str
    scores: dict[str, float]
    fold_scores: dict[str, list[float]]
    n_folds: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record (for the bundle and ``models.json``)."""
        return {
            "chosen": self.chosen,
            "scores": dict(self.scores),
            "fold_scores": {k: list(v) for k, v in self.fold_scores.items()},
            "n_folds": self.n_folds,
        }


def choose_classifier(
    union: Any,
    X: pd.DataFrame,
    y: pd.Series,
    folds: StratifiedKFold,
    candidates: Sequence[str],
    *,
    param_grids: Mapping[str, dict[str, list[Any]]] | None = None,
    search: str = "grid",
    n_iter: int = 20,
    scoring: str = "roc_auc",
    seed: int = 0,
) -> AutoChoice:
    """Score every candidate classifier on ``folds`` of the training patients; the best mean AUC wins.

    Args:
        union: The arm's unfitted feature step (``SourceUnion`` or a budgeted one).
        X: FeatureTable of the training patients only.
        y: Their 0/1 labels.
        folds: The arm's outer CV folds.
        candidates: Classifier names, in order of preference on ties.
        param_grids: Grid overrides (``models.param_grids``).

    Raises:
        ModelError: no candidate, or labels with a single class.
    """
    if not candidates:
        raise ModelError("classifier: auto has no candidate classifiers (models.auto_candidates)")
    lab = np.asarray(y).astype(np.int64)
    fold_scores: dict[str, list[float]] = {c: [] for c in candidates}
    for tr, va in folds.split(np.zeros(len(lab)), lab):
        feats = clone(union).fit(X.iloc[tr], lab[tr])
        Z_tr = feats.transform(X.iloc[tr])
        Z_va = feats.transform(X.iloc[va])
        inner = stratified_folds(lab[tr], folds.n_splits, seed)
        for name in candidates:
            grid = default_grid(name, dict(param_grids or {}))
            est = make_search(make_classifier(name, seed), grid, inner, search=search, n_iter=n_iter, seed=seed)
            fitted, _ = fit_tuned(est, Z_tr, pd.Series(lab[tr], index=Z_tr.index))
            fold_scores[name].append(float(roc_auc_score(lab[va], fitted.predict_proba(Z_va)[:, 1])))
    scores = {name: float(np.mean(v)) for name, v in fold_scores.items()}
    best = max(scores.values())
    chosen = next(name for name in candidates if scores[name] == best)
    log.info("classifier auto: %s (CV AUC %s)", chosen, {k: round(v, 3) for k, v in scores.items()})
    return AutoChoice(chosen=chosen, scores=scores, fold_scores=fold_scores, n_folds=folds.get_n_splits())


def data_key(X: pd.DataFrame, y: Any) -> str:
    """Hash of a training set (features and labels): the key of a precomputed choice.

    Built from the content (row hashes of every column, the index, the column names), not from the frame's memory
    layout, so a copy sent to a worker process hashes the same.
    """
    rows = pd.util.hash_pandas_object(X, index=True).to_numpy()
    return str(joblib.hash((rows, list(map(str, X.columns)), np.asarray(y).astype(np.int64))))


def _choose(settings: ModelSettings, union: Any, X: pd.DataFrame, y: Any, n_splits: int, seed: int) -> AutoChoice:
    """:func:`choose_classifier` on ``(X, y)`` with its own folds ``stratified_folds(y, n_splits, seed)``."""
    return choose_classifier(
        union,
        X,
        y,
        stratified_folds(np.asarray(y), n_splits, seed),
        settings.auto_candidates,
        param_grids=settings.param_grids,
        search=settings.search,
        n_iter=settings.n_iter,
        scoring=settings.scoring,
        seed=seed,
    )


class AutoSearch(BaseEstimator):
    """``classifier: auto`` as one estimator: choose the classifier on the data it is fitted on, then tune it.

    Cross-validating this estimator (the outer OOF folds) redoes the choice inside every fold.

    Args:
        estimator: The arm's unfitted ``Pipeline([("features", union), ("clf", any classifier)])``.
        settings: Model settings (candidates, grids, search, ``cv_folds``).
        seed: Seed of the folds and classifiers.
        precomputed: Data hash (:func:`data_key`) → classifier already chosen on exactly that training set.

    Attributes:
        choice_: The chosen classifier's name.
        best_estimator_: The arm fitted with it (tuned).
        best_params_: Its tuned hyper-parameters (``clf__…``).
    """

    def __init__(
        self, estimator: Any, settings: ModelSettings, seed: int = 0, precomputed: dict[str, str] | None = None
    ) -> None:
        self.estimator = estimator
        self.settings = settings
        self.seed = seed
        self.precomputed = precomputed

    def fit(self, X: pd.DataFrame, y: Any) -> AutoSearch:
        """Choose (or look up) the classifier on ``(X, y)``, then tune and fit the arm with it."""
        st = self.settings
        chosen = (self.precomputed or {}).get(data_key(X, y))
        if chosen is None:
            chosen = _choose(st, self.estimator.steps[0][1], X, y, st.cv_folds, self.seed).chosen
        est = clone(self.estimator).set_params(clf=make_classifier(chosen, self.seed))
        grid = {f"clf__{k}": v for k, v in default_grid(chosen, st.param_grids).items()}
        folds = stratified_folds(np.asarray(y), st.cv_folds, self.seed)
        search = make_search(est, grid, folds, search=st.search, n_iter=st.n_iter, scoring=st.scoring, seed=self.seed)
        self.best_estimator_, self.best_params_ = fit_tuned(search, X, y)
        self.choice_ = chosen
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of the fitted arm."""
        return self.best_estimator_.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Classes of the fitted arm."""
        return self.best_estimator_.predict(X)


def unwrap_auto(model: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A fitted :class:`AutoSearch` → its fitted arm and tuned parameters; anything else unchanged."""
    if isinstance(model, AutoSearch):
        return model.best_estimator_, dict(model.best_params_)
    return model, params


def resolve_auto(
    arm: str,
    settings: ModelSettings,
    union: Any,
    X: pd.DataFrame,
    y: pd.Series,
    folds: StratifiedKFold,
    seed: int,
    n_jobs: int = 1,
) -> tuple[ModelSettings, dict[str, Any]]:
    """Settings with ``auto`` replaced by the classifier chosen for ``arm``, and the record of the choice.

    With ``settings.nested_oof`` the choice is also made inside every outer fold of ``folds`` (on the fold's
    training part only), recorded under ``outer_folds`` and in ``precomputed`` (data hash → choice, for
    :class:`AutoSearch`; popped by the caller before the record is stored). An arm whose classifier is not
    ``auto`` returns ``settings`` unchanged and an empty record.
    """
    if settings.arm_classifiers.get(arm, settings.classifier) != "auto":
        return settings, {}
    lab = np.asarray(y).astype(np.int64)
    parts: list[tuple[pd.DataFrame, np.ndarray]] = [(X, lab)]
    if settings.nested_oof:
        parts += [(X.iloc[tr], lab[tr]) for tr, _ in folds.split(np.zeros(len(lab)), lab)]
    jobs = (delayed(_choose)(settings, union, Xp, yp, folds.n_splits, seed) for Xp, yp in parts)
    if n_jobs > 1 and len(parts) > 1:
        choices = Parallel(n_jobs=min(n_jobs, len(parts)), backend="loky")(jobs)
    else:
        choices = [fn(*a, **kw) for fn, a, kw in jobs]
    choice, per_fold = choices[0], choices[1:]
    record = choice.as_dict()
    record["oof_choice"] = "per_fold" if settings.nested_oof else "fixed"
    if per_fold:
        record["outer_folds"] = [{"chosen": c.chosen, "scores": dict(c.scores)} for c in per_fold]
        record["precomputed"] = {data_key(Xp, yp): c.chosen for (Xp, yp), c in zip(parts, choices, strict=True)}
    chosen = settings.model_copy(update={"arm_classifiers": {**settings.arm_classifiers, arm: choice.chosen}})
    return chosen, {"auto": record}
