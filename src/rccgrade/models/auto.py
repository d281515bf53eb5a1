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

The OOF probabilities of the chosen arm come from the usual nested refits of the chosen classifier; the
choice itself (the best of a few candidates on the same folds) is not refitted per fold, so the training
OOF AUC of an ``auto`` arm can be slightly optimistic. Test-set numbers are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from rccgrade.errors import ModelError
from rccgrade.models.classifiers import default_grid, make_classifier
from rccgrade.models.settings import ModelSettings
from rccgrade.models.tuning import fit_tuned, make_search, stratified_folds

log = logging.getLogger(__name__)

__all__ = ["AutoChoice", "choose_classifier", "resolve_auto"]


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


def resolve_auto(
    arm: str, settings: ModelSettings, union: Any, X: pd.DataFrame, y: pd.Series, folds: StratifiedKFold, seed: int
) -> tuple[ModelSettings, dict[str, Any]]:
    """Settings with ``auto`` replaced by the classifier chosen for ``arm``, and the record of the choice.

    An arm whose classifier is not ``auto`` returns ``settings`` unchanged and an empty record.
    """
    if settings.arm_classifiers.get(arm, settings.classifier) != "auto":
        return settings, {}
    choice = choose_classifier(
        union,
        X,
        y,
        folds,
        settings.auto_candidates,
        param_grids=settings.param_grids,
        search=settings.search,
        n_iter=settings.n_iter,
        scoring=settings.scoring,
        seed=seed,
    )
    chosen = settings.model_copy(update={"arm_classifiers": {**settings.arm_classifiers, arm: choice.chosen}})
    return chosen, {"auto": choice.as_dict()}
