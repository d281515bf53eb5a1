"""Feature-level fusion with a signal gate per source (``models.combined_selection: gated``).

Every source (``clinical``, ``radiomics``, ``kinetic``, ``deep:<roi>``) keeps its own selection chain, exactly
as in the plain union of the reference study (:class:`~rccgrade.features.selection.SourceUnion`); a source
enters the ``combined`` arm only when an inner cross-validation on the patients the union is fitted on (the
training patients, or a training fold of an outer CV — never a test patient) shows that it carries signal:

1. in each of ``cv`` stratified inner folds the source's chain is fitted on the fold's training part, and an
   L2 logistic regression (``C``) on **all** the chain's output features scores the fold's held-out part;
2. a one-sided one-sample t-test asks whether the folds' held-out AUCs exceed 0.5 (``cv − 1`` degrees of
   freedom);
3. the source enters when ``p < alpha`` (default 0.01); when no source passes, the one with the smallest ``p``
   enters, so the arm always has features.

Why the fold AUCs and not one test on the pooled out-of-fold scores: the pooled scores come from ``cv``
different models trained on overlapping patients, so a rank test that treats them as one independent sample
is anti-conservative. Measured on 30 pure-noise sources (2,048 Gaussian columns, the 347 training patients of
a 496-patient synthetic cohort, rccgrade's noise chain): the pooled Mann–Whitney test gave p < 0.01 for 3 of
30 (expected 0.3), the fold t-test for none (smallest p 0.019), while real sources of that cohort (clinical,
radiomics, kinetic: fold AUCs 0.71–0.80) all gave p < 0.001. ``alpha`` 0.01 follows from that calibration
(not from the accuracy benchmark): a source must be convincingly better than chance on every fold to enter.

Why a gate and not a search (the ``budgets`` option): a search over budget vectors scores tens of candidate
unions on the same inner folds and keeps the best, so the chosen vector's inner-CV AUC is the maximum of many
noisy estimates and its choice follows that noise. On the issue-14 benchmark (``bench/grade_signal.py``,
``bench/results/signal.md``) the budgeted ``combined`` lost to its own radiomics arm on average, e.g. by
choosing 4 kinetic and 1 clinical feature over any radiomics feature on a split where the radiomics arm scored
0.79 and the chosen union 0.73. The gate asks one question per source, with a fixed error rate, and keeps a
passing source whole, as the reference study's union does; a pure-noise source passes with probability
about ``alpha``.

Shapes: ``X`` is a FeatureTable ``(n_patients, n_columns)`` whose column prefixes name the sources; ``y`` is
0/1 ``(n_patients,)``. The fitted transformer outputs the concatenated chain outputs of the sources that
passed, so the arm keeps the shape ``Pipeline([("features", union), ("clf", classifier)])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import ttest_1samp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from rccgrade.errors import ModelError
from rccgrade.features.fit_cache import recall_fitted_state, remember_fitted_state
from rccgrade.features.matrix import BinaryTargetMixin, as_frame, binary_labels
from rccgrade.features.selection import SourceUnion

__all__ = ["GatedSourceUnion", "source_signal"]


def source_signal(
    chain: Any, X: Any, y: np.ndarray, *, cv: int = 5, random_state: int = 0, C: float = 1.0
) -> dict[str, Any]:
    """Inner-CV evidence that one source separates the classes.

    Args:
        chain: The source's unfitted selection chain (ends with its ``scale`` step).
        X: The source's columns of the patients, ``(n_patients, n_columns)``.
        y: 0/1 labels ``(n_patients,)``.
        cv: Inner stratified folds (fewer when a class has fewer patients).
        random_state: Seed of the folds.
        C: Inverse ridge strength of the scoring logistic regression.

    Returns:
        ``auc`` (mean of the folds' held-out AUCs), ``fold_aucs``, ``p`` (one-sided one-sample t-test of the
        fold AUCs against 0.5; 0 or 1 when every fold has the same AUC) and ``folds``. A fold whose chain
        keeps no feature scores AUC 0.5 (no information).

    Raises:
        ModelError: fewer than 2 patients of a class.
    """
    n_splits = int(min(cv, np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        raise ModelError("gating the sources of combined needs at least 2 training patients of each class")
    aucs: list[float] = []
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    for tr, va in folds.split(np.zeros(len(y)), y):
        fitted = clone(chain).fit(X.iloc[tr], y[tr])
        Z_tr = np.asarray(fitted.transform(X.iloc[tr]), dtype=np.float64)
        if Z_tr.shape[1] == 0:
            aucs.append(0.5)
            continue
        Z_va = np.asarray(fitted.transform(X.iloc[va]), dtype=np.float64)
        model = LogisticRegression(C=C, max_iter=5000).fit(Z_tr, y[tr])
        aucs.append(float(roc_auc_score(y[va], model.decision_function(Z_va))))
    a = np.asarray(aucs)
    if np.ptp(a) == 0:
        p = 0.0 if a[0] > 0.5 else 1.0
    else:
        p = float(ttest_1samp(a, 0.5, alternative="greater").pvalue)
    return {"auc": float(a.mean()), "fold_aucs": aucs, "p": p, "folds": n_splits}


class GatedSourceUnion(BinaryTargetMixin, SourceUnion):
    """:class:`~rccgrade.features.selection.SourceUnion` that keeps only the sources passing a signal gate.

    Args:
        transformers: ``(source, prefix, chain)`` triples; each chain ends with its ``scale`` step.
        alpha: Significance level of the one-sided gate (see the module docstring).
        cv: Folds of the inner CV.
        random_state: Seed of the inner folds.
        C: Inverse ridge strength of the scoring logistic regression.

    Attributes:
        gate_: Source → ``{"auc", "fold_aucs", "p", "folds", "kept"}`` (``p`` None and kept when the inner CV was
            impossible: too few patients of a class, so every source is kept, as the plain union does).
        transformers_: The fitted chains of the kept sources (as in ``SourceUnion``).
    """

    __module__ = "rccgrade.models.source_gate"

    def __init__(
        self,
        transformers: Sequence[tuple[str, str, Any]],
        alpha: float = 0.01,
        cv: int = 5,
        random_state: int = 0,
        C: float = 1.0,
    ) -> None:
        super().__init__(transformers)
        self.alpha = alpha
        self.cv = cv
        self.random_state = random_state
        self.C = C

    def fit(self, X: Any, y: Any = None) -> GatedSourceUnion:
        """Gate every source by inner CV, then fit the kept sources' chains on all the patients."""
        X = as_frame(X, step="GatedSourceUnion")
        lab = binary_labels(y, "GatedSourceUnion")
        if recall_fitted_state(self, X, lab):
            return self
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        columns = self.source_columns(X)
        gate: dict[str, dict[str, Any]] = {}
        for name, _, est in self.transformers:
            try:
                gate[name] = source_signal(
                    est, X[columns[name]], lab, cv=self.cv, random_state=self.random_state, C=self.C
                )
            except ModelError:  # a tiny outer fold: no gate, every source (the plain union)
                gate[name] = {"auc": None, "p": None, "folds": 0}
        passed = {n for n, g in gate.items() if g["p"] is None or g["p"] < self.alpha}
        if not passed:
            passed = {min(gate, key=lambda n: (gate[n]["p"], n))}
        for name in gate:
            gate[name]["kept"] = name in passed
        self.gate_ = gate
        self.transformers_ = []
        self.columns_ = {}
        for name, prefix, est in self.transformers:
            if name in passed:
                self._fit_source(name, prefix, est, X[columns[name]], lab)  # shared with the single-source arms
        remember_fitted_state(self, X, lab)
        return self
