"""Feature-level fusion (the ``combined`` arm) with a feature budget per source, learnt on the training folds.

Every source (``clinical``, ``radiomics``, ``kinetic``, ``deep:<roi>``: :func:`rccgrade.features.naming.
column_source`) keeps its own selection chain. On top of that, :class:`BudgetedSourceUnion` lets each source
contribute at most *b* of its selected features (its **budget**, from e.g. {0, 1, 2, 4, 8, 16}; 0 leaves the
source out), ranked by mRMR (relevance − redundancy, :class:`~rccgrade.features.selection.MRMRSelector`).
The budgets are chosen by an inner stratified CV on the patients the union is fitted on (the training
patients, or a training fold of an outer CV — never a test patient):

1. in each inner fold every source's chain is fitted on the fold's training part and ranks its output;
2. a budget vector is scored by the mean inner-validation AUC of a logistic regression (``C``) on the union
   of each source's top-*b* features;
3. greedy coordinate ascent from "all 0": each round tries every (source, budget) change and keeps the best
   one when it adds at least ``min_gain`` AUC (ties go to the smaller total budget); the first round always
   keeps its best change, so at least one source contributes.

A source of pure noise therefore stays at 0 unless it improves the inner-CV AUC, and the classifier is fitted
on the union of the chosen features only.

**Why a logistic scorer for every arm, trees included.** The budgets are scored by an L2 logistic regression
whatever the arm's classifier is: it is a deliberate, cheap proxy. The greedy search scores tens of budget
vectors × the inner folds (≈ 300 fits) every time the union is fitted, and the union is fitted ~36 times per arm
(final fit, tuning folds, nested outer folds), so the scorer's cost counts: LightGBM costs no more than the
proxy, a forest ≈ 3× the budget search. Measured on the demo tables (``bench/budget_scorer.py``,
``bench/results/budget_scorer.json``, docs/fusion.md), the budgets do depend on the scorer (identical in 1–2 of
5 splits; trees often keep fewer features), while the logistic proxy was the steadier guard against a pure-noise
source (kept out on every split; a forest scorer let it in once). ``models.combined_budget_scorer: arm`` scores
with the arm's own classifier instead.

Finally every source with a positive budget is refitted on all the
patients with an mRMR step of its budget before z-scoring, so the fitted arm keeps the usual shape
``Pipeline([("features", union), ("clf", classifier)])`` (explanations, bundles and the nomogram read it
unchanged).

Fitting is deterministic (seeded folds, deterministic chains). Refits on identical data and parameters (the
candidates of a hyper-parameter grid share the union's fit) are served from a small in-process cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from rccgrade.errors import ModelError
from rccgrade.features.fit_cache import recall_fitted_state, remember_fitted_state
from rccgrade.features.matrix import BinaryTargetMixin, as_frame, binary_labels
from rccgrade.features.selection import MRMRSelector, SourceUnion
from rccgrade.models.settings import ModelSettings
from rccgrade.models.source_gate import GatedSourceUnion

log = logging.getLogger(__name__)

__all__ = ["BudgetedSourceUnion", "budget_chain", "budgeted_union", "choose_budgets", "fusion_details"]


def budgeted_union(
    entries: Sequence[tuple[str, str, Any]], settings: ModelSettings, seed: int, classifier: str | None = None
) -> SourceUnion:
    """The ``combined`` arm's union: budgeted (``models.combined_selection: budgets``), gated (``gated``:
    :mod:`rccgrade.models.source_gate`) or plain (``union``).

    ``classifier`` is the arm's classifier: with ``models.combined_budget_scorer: arm`` it (untuned, package
    defaults) scores the budgets instead of the logistic proxy; ``auto`` or None keep the proxy.
    """
    if settings.combined_selection == "union":
        return SourceUnion(entries)
    if settings.combined_selection == "gated":
        return GatedSourceUnion(
            entries,
            alpha=settings.combined_gate_alpha,
            cv=settings.combined_budget_cv,
            repeats=settings.combined_gate_repeats,
            random_state=seed,
        )
    scorer = None
    if settings.combined_budget_scorer == "arm" and classifier not in (None, "auto", "logistic"):
        from rccgrade.models.classifiers import make_classifier

        scorer = make_classifier(str(classifier), seed)
    return BudgetedSourceUnion(
        entries,
        budgets=tuple(settings.combined_budgets),
        cv=settings.combined_budget_cv,
        random_state=seed,
        min_gain=settings.combined_min_gain,
        method=settings.selection.correlation_method,
        scorer=scorer,
    )


def budget_chain(chain: Pipeline, budget: int, method: str = "pearson") -> Pipeline:
    """``chain`` (ending in its ``scale`` step) with an mRMR step keeping ``budget`` features before scaling."""
    steps = list(clone(chain).steps)
    return Pipeline([*steps[:-1], ("budget", MRMRSelector(n_features=int(budget), method=method)), steps[-1]])


def _ranked(chain: Pipeline, X_tr: pd.DataFrame, y_tr: np.ndarray, X_va: pd.DataFrame, top: int, method: str) -> Any:
    """Fit ``chain`` on the fold's training part; its output columns ranked by mRMR (at most ``top``)."""
    fitted = clone(chain).fit(X_tr, y_tr)
    Z_tr = np.asarray(fitted.transform(X_tr), dtype=np.float64)
    Z_va = np.asarray(fitted.transform(X_va), dtype=np.float64)
    mrmr = MRMRSelector(n_features=min(top, Z_tr.shape[1]), method=method).fit(Z_tr, y_tr)  # type: ignore[arg-type]
    order = np.asarray(mrmr.ranking_, dtype=np.int64)
    return Z_tr[:, order], Z_va[:, order]


def choose_budgets(
    blocks: Sequence[tuple[str, Pipeline, pd.DataFrame]],
    y: np.ndarray,
    budgets: Sequence[int],
    *,
    cv: int = 5,
    random_state: int = 0,
    min_gain: float = 0.005,
    C: float = 1.0,
    method: str = "pearson",
    scorer: Any = None,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Budget per source by inner CV (see the module docstring).

    Args:
        blocks: ``(source, unfitted chain, its columns of the patients)``.
        y: 0/1 labels of those patients.
        budgets: Allowed budgets (sorted, with 0 and at least one positive value).
        scorer: Unfitted classifier that scores a budget vector (None: ``LogisticRegression(C)``, the
            deliberate cheap proxy — see the module docstring; ``bench/budget_scorer.py`` measures how often
            a tree scorer would choose other budgets).

    Returns:
        ``(source → budget, trace)``; ``trace`` holds ``score`` (inner-CV AUC of the chosen budgets) and
        ``path`` (the accepted budget vectors with their scores).
    """
    budgets = sorted({int(b) for b in budgets} | {0})
    top = max(budgets)
    n_splits = int(min(cv, np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        raise ModelError("choosing the source budgets needs at least 2 training patients of each class")
    folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y))
    names = [name for name, _, _ in blocks]
    ranked: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    for tr, va in folds:
        ranked.append({name: _ranked(chain, X.iloc[tr], y[tr], X.iloc[va], top, method) for name, chain, X in blocks})
    scores: dict[tuple[int, ...], float] = {}

    def score(vector: tuple[int, ...]) -> float:
        if vector in scores:
            return scores[vector]
        if not any(vector):
            scores[vector] = 0.5
            return 0.5
        aucs = []
        for (tr, va), blocks_f in zip(folds, ranked, strict=True):
            Z_tr = np.hstack([blocks_f[n][0][:, :b] for n, b in zip(names, vector, strict=True) if b])
            Z_va = np.hstack([blocks_f[n][1][:, :b] for n, b in zip(names, vector, strict=True) if b])
            if scorer is None:
                model = LogisticRegression(C=C, max_iter=5000).fit(Z_tr, y[tr])
                aucs.append(roc_auc_score(y[va], model.decision_function(Z_va)))
            else:
                model = clone(scorer).fit(Z_tr, y[tr])
                aucs.append(roc_auc_score(y[va], model.predict_proba(Z_va)[:, 1]))
        scores[vector] = float(np.mean(aucs))
        return scores[vector]

    current = tuple(0 for _ in names)
    best = score(current)
    path = [{"budgets": dict(zip(names, current, strict=True)), "score": best}]
    for round_ in range(4 * len(names)):
        moves = [(*current[:i], b, *current[i + 1 :]) for i in range(len(names)) for b in budgets if b != current[i]]
        moves = [v for v in moves if any(v)]  # at least one source always contributes
        ranked_moves = sorted(moves, key=lambda v: (-score(v), sum(v), v))
        cand = ranked_moves[0]
        if round_ > 0 and score(cand) < best + min_gain:
            break
        current, best = cand, score(cand)
        path.append({"budgets": dict(zip(names, current, strict=True)), "score": best})
    return dict(zip(names, current, strict=True)), {"score": best, "path": path, "folds": n_splits}


class BudgetedSourceUnion(BinaryTargetMixin, SourceUnion):
    """:class:`~rccgrade.features.selection.SourceUnion` whose sources get feature budgets learnt by inner CV.

    Args:
        transformers: ``(source, prefix, chain)`` triples; each chain ends with its ``scale`` step.
        budgets: Budgets a source may get (0 = leave it out).
        cv: Folds of the inner CV.
        random_state: Seed of the inner folds.
        min_gain: Inner-CV AUC a change must add to be accepted.
        C: Inverse ridge strength of the scoring logistic regression.
        method: Correlation of the mRMR ranking (``pearson`` or ``spearman``).
        scorer: Unfitted classifier scoring the budgets instead of the logistic regression (None: logistic).

    Attributes:
        budgets_: Source → chosen budget (0: left out; None: too few patients for the inner CV, so every
            source keeps all its selected features, as the plain union does).
        budget_trace_: Inner-CV score and the accepted steps of the search.
        transformers_: The fitted chains of the sources with a positive budget (as in ``SourceUnion``).
    """

    __module__ = "rccgrade.models.fusion"

    def __init__(
        self,
        transformers: Sequence[tuple[str, str, Any]],
        budgets: Sequence[int] = (0, 1, 2, 4, 8, 16),
        cv: int = 5,
        random_state: int = 0,
        min_gain: float = 0.005,
        C: float = 1.0,
        method: str = "pearson",
        scorer: Any = None,
    ) -> None:
        super().__init__(transformers)
        self.budgets = budgets
        self.cv = cv
        self.random_state = random_state
        self.min_gain = min_gain
        self.C = C
        self.method = method
        self.scorer = scorer

    def fit(self, X: Any, y: Any = None) -> BudgetedSourceUnion:
        """Choose the budgets by inner CV, then fit each kept source's chain with its budget."""
        X = as_frame(X, step="BudgetedSourceUnion")
        lab = binary_labels(y, "BudgetedSourceUnion")
        if recall_fitted_state(self, X, lab):
            return self
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        columns = self.source_columns(X)
        blocks = [(name, est, X[columns[name]]) for name, _, est in self.transformers]
        try:
            chosen, trace = choose_budgets(
                blocks,
                lab,
                self.budgets,
                cv=self.cv,
                random_state=self.random_state,
                min_gain=self.min_gain,
                C=self.C,
                method=self.method,
                scorer=self.scorer,
            )
            log.info("combined: source budgets %s (inner-CV AUC %.3f)", chosen, trace["score"])
        except ModelError as exc:  # too few patients for the inner CV (a small fold): every source, no budget
            log.warning("combined: no budgets (%s); every source keeps its selected features", exc)
            chosen = {name: None for name, _, _ in blocks}
            trace = {"score": None, "fallback": str(exc)}
        self.budgets_ = chosen
        self.budget_trace_ = trace
        self.transformers_ = []
        self.columns_ = {}
        for name, prefix, est in self.transformers:
            if chosen[name] == 0:
                continue
            budgeted = clone(est) if chosen[name] is None else budget_chain(est, chosen[name], self.method)
            fitted = budgeted.fit(X[columns[name]], lab)
            self.transformers_.append((name, prefix, fitted))
            self.columns_[name] = columns[name]
        remember_fitted_state(self, X, lab)
        return self


def fusion_details(model: Any) -> dict[str, Any]:
    """What a fitted fusion arm learnt, JSON-able: ``stacking_weights`` (arm → weight on its logit, and the
    ``stacking_intercept``) for ``stacked``; ``budgets`` (source → features kept) and ``budget_cv_auc`` for a
    budgeted ``combined``; empty for any other arm."""
    from rccgrade.models.stacking import StackedClassifier

    if isinstance(model, StackedClassifier):
        return {
            "stacking_weights": model.weights_,
            "stacking_intercept": float(np.ravel(model.meta_.intercept_)[0]),
            "stacking_meta": type(model.meta_).__name__,
        }
    union = getattr(model, "named_steps", {}).get("features")
    if isinstance(union, GatedSourceUnion):
        return {"gate": {name: dict(g) for name, g in union.gate_.items()}}
    if isinstance(union, BudgetedSourceUnion):
        score = union.budget_trace_["score"]
        return {"budgets": dict(union.budgets_), "budget_cv_auc": None if score is None else float(score)}
    return {}
