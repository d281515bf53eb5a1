"""Feature-level fusion with a signal gate per source (``models.combined_selection: gated``).

Every source (``clinical``, ``radiomics``, ``kinetic``, ``deep:<roi>``) keeps its own selection chain, exactly
as in the plain union of the reference study (:class:`~rccgrade.features.selection.SourceUnion`); a source
enters the ``combined`` arm only when an inner cross-validation on the patients the union is fitted on (the
training patients, or a training fold of an outer CV — never a test patient) shows that it carries signal:

1. in each of ``repeats × cv`` stratified inner folds (``RepeatedStratifiedKFold``, default 3 × 5) the source's
   chain is fitted on the fold's training part, and an L2 logistic regression (``C``) on **all** the chain's
   output features scores the fold's held-out part;
2. the corrected resampled t-test of Nadeau and Bengio (:func:`rccgrade.stats.corrected_resampled_ttest`,
   one-sided, ``n_test/n_train = 1/(cv − 1)``) asks whether the fold AUCs exceed 0.5;
3. the source enters when ``p < alpha`` (default 0.01); when no source passes, the one with the smallest ``p``
   enters, so the arm always has features.

The gate asks whether a source beats chance, not whether it adds to the others. A forward inclusion that
asked the second question (the best source first, each other one only when the same corrected test showed that
it raised the union's fold AUCs, p < 0.05) was built and measured (commit c320eda,
``bench/results/signal_forward_c1.json``): on the first issue-14 cohort it lost to this gate on all 10 splits
(−0.036 AUC) and to its own radiomics arm on 9, because an added source's true gain (radiomics next to the
kinetic source: +0.031 on the test patients, mean of the 10 splits) is too small against the inner-CV noise to
reach significance. It was removed.

Why fold AUCs and not one test on the pooled out-of-fold scores: the pooled scores come from different models
trained on overlapping patients, so a rank test that treats them as one independent sample is
anti-conservative. Why the corrected test on repeats: the first gate's one-sample t-test on the 5 AUCs of one
5-fold CV had 4 degrees of freedom, so one bad fold kept out a good source (on a demo's 140 training patients a
radiomics source with test AUC 0.825 had p = 0.021), yet it was not conservative: the folds share their
training patients. The corrected test widens the standard error for that overlap and gains degrees of freedom
from the repeats. Measured on fresh pure-noise sources (2,048 Gaussian columns; ``bench/gate_calibration.py``,
``bench/results/gate_calibration.json``): no fold-based test keeps the nominal 1 %, because a noise source's
fold AUCs are all high when the sample itself holds, by chance, a column correlated with the labels (|r| ≈ 0.4
at 140 patients) — every fold of the same patients confirms it, and only a permutation test (hundreds of times
the cost) would not. ``alpha`` 0.01 is kept from the null calibration, not from the accuracy benchmark.

Why a gate and not a search (the ``budgets`` option): a search over budget vectors scores tens of candidate
unions on the same inner folds and keeps the best, so the chosen vector's inner-CV AUC is the maximum of many
noisy estimates and its choice follows that noise. On the issue-14 benchmark (``bench/grade_signal.py``,
``bench/results/signal.md``) the budgeted ``combined`` lost to its own radiomics arm on average, e.g. by
choosing 4 kinetic and 1 clinical feature over any radiomics feature on a split where the radiomics arm scored
0.79 and the chosen union 0.73. The gate asks one question per source, with a fixed error rate, and keeps a
passing source whole, as the reference study's union does; a pure-noise source passes rarely (at ``alpha`` 0.01:
6 % of fresh 2,048-column noise sources at 140 patients, none of 80 at 347; measured as above).

Shapes: ``X`` is a FeatureTable ``(n_patients, n_columns)`` whose column prefixes name the sources; ``y`` is
0/1 ``(n_patients,)``. The fitted transformer outputs the concatenated chain outputs of the sources that
passed, so the arm keeps the shape ``Pipeline([("features", union), ("clf", classifier)])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold

from rccgrade.errors import ModelError
from rccgrade.features.fit_cache import recall_fitted_state, remember_fitted_state
from rccgrade.features.matrix import BinaryTargetMixin, as_frame, binary_labels
from rccgrade.features.selection import SourceUnion
from rccgrade.stats.resampled import corrected_resampled_ttest

__all__ = ["GatedSourceUnion", "source_signal"]


def _inner_folds(
    y: np.ndarray, cv: int, repeats: int, random_state: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """``repeats × k`` stratified folds and ``k = min(cv, patients of the smaller class)``.

    Raises:
        ModelError: fewer than 2 patients of a class.
    """
    n_splits = int(min(cv, np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        raise ModelError("gating the sources of combined needs at least 2 training patients of each class")
    folds = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=int(repeats), random_state=random_state)
    return list(folds.split(np.zeros(len(y)), y)), n_splits


def _signal(
    chain: Any, X: Any, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], n_splits: int, C: float
) -> dict[str, Any]:
    """The gate record of one source on the given folds (see :func:`source_signal`)."""
    aucs: list[float] = []
    for tr, va in folds:
        fitted = clone(chain).fit(X.iloc[tr], y[tr])
        Z_tr = np.asarray(fitted.transform(X.iloc[tr]), dtype=np.float64)
        if Z_tr.shape[1] == 0:
            aucs.append(0.5)
            continue
        Z_va = np.asarray(fitted.transform(X.iloc[va]), dtype=np.float64)
        model = LogisticRegression(C=C, max_iter=5000).fit(Z_tr, y[tr])
        aucs.append(float(roc_auc_score(y[va], model.decision_function(Z_va))))
    test = corrected_resampled_ttest(aucs, 1.0 / (n_splits - 1), null=0.5, alternative="greater")
    repeats = len(folds) // n_splits
    return {"auc": test.mean, "fold_aucs": aucs, "p": test.p_value, "folds": n_splits, "repeats": repeats}


def source_signal(
    chain: Any, X: Any, y: np.ndarray, *, cv: int = 5, repeats: int = 3, random_state: int = 0, C: float = 1.0
) -> dict[str, Any]:
    """Repeated inner-CV evidence that one source separates the classes.

    Args:
        chain: The source's unfitted selection chain (ends with its ``scale`` step).
        X: The source's columns of the patients, ``(n_patients, n_columns)``.
        y: 0/1 labels ``(n_patients,)``.
        cv: Inner stratified folds (fewer when a class has fewer patients).
        repeats: Repeats of the stratified k-fold CV (``RepeatedStratifiedKFold``), each with other folds.
        random_state: Seed of the folds.
        C: Inverse ridge strength of the scoring logistic regression.

    Returns:
        ``auc`` (mean of the ``repeats × folds`` held-out AUCs), ``fold_aucs``, ``p`` (one-sided corrected
        resampled t-test of the fold AUCs against 0.5: :func:`rccgrade.stats.corrected_resampled_ttest` with
        ``n_test/n_train = 1/(folds − 1)``), ``folds`` and ``repeats``. A fold whose chain keeps no feature
        scores AUC 0.5 (no information).

    Raises:
        ModelError: fewer than 2 patients of a class.
    """
    folds, n_splits = _inner_folds(y, cv, repeats, random_state)
    return _signal(chain, X, y, folds, n_splits, C)


class GatedSourceUnion(BinaryTargetMixin, SourceUnion):
    """:class:`~rccgrade.features.selection.SourceUnion` that keeps only the sources passing a signal gate.

    Args:
        transformers: ``(source, prefix, chain)`` triples; each chain ends with its ``scale`` step.
        alpha: Significance level of the one-sided gate (see the module docstring).
        cv: Folds of the inner CV.
        repeats: Repeats of the inner CV (each with other folds).
        random_state: Seed of the inner folds.
        C: Inverse ridge strength of the scoring logistic regression.

    Attributes:
        gate_: Source → ``{"auc", "fold_aucs", "p", "folds", "repeats", "kept"}`` (``p`` None and kept when the
            inner CV was impossible: too few patients of a class, so every source is kept, as the plain union
            does).
        transformers_: The fitted chains of the kept sources (as in ``SourceUnion``).
    """

    __module__ = "rccgrade.models.source_gate"

    def __init__(
        self,
        transformers: Sequence[tuple[str, str, Any]],
        alpha: float = 0.01,
        cv: int = 5,
        repeats: int = 3,
        random_state: int = 0,
        C: float = 1.0,
    ) -> None:
        super().__init__(transformers)
        self.alpha = alpha
        self.cv = cv
        self.repeats = repeats
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
        try:
            folds, n_splits = _inner_folds(lab, self.cv, self.repeats, self.random_state)  # one set for every source
        except ModelError:  # a tiny outer fold: no gate, every source (the plain union)
            folds, n_splits = [], 0
        for name, _, est in self.transformers:
            no_gate = {"auc": None, "p": None, "folds": 0}
            gate[name] = _signal(est, X[columns[name]], lab, folds, n_splits, self.C) if folds else no_gate
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
