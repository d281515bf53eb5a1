"""Feature preprocessing and selection as scikit-learn transformers working on DataFrames.

Every step here is *fitted*: it learns which features to keep (or a median, a PCA basis …) from the
patients it is fitted on. Composed in a :class:`~sklearn.pipeline.Pipeline`, the whole chain is refitted
inside every cross-validation fold and on the training patients only, so the test patients never
influence which features are chosen — the leakage most published radiomics models suffer from.

All transformers take a pandas DataFrame (columns = FeatureTable names, index = ``patient_id``) and return
a DataFrame with the same index, so feature names survive to the fitted classifier and the report
(:meth:`get_feature_names_out`). Inputs to the selection steps must be complete: put a
:class:`TabularPreprocessor` (median / most-frequent imputation, one-hot encoding) first.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold

from rccgrade.errors import ModelError
from rccgrade.features.grouping import CorrelationGrouper
from rccgrade.features.harmonize import ComBat, combat_fit
from rccgrade.features.matrix import BinaryTargetMixin
from rccgrade.features.matrix import FrameSelector as _FrameSelector
from rccgrade.features.matrix import as_frame as _as_frame
from rccgrade.features.matrix import binary_labels as _binary_labels
from rccgrade.features.matrix import is_categorical_dtype as _is_categorical_dtype
from rccgrade.features.matrix import numeric_block as _numeric_block
from rccgrade.features.matrix import numeric_matrix as _numeric_matrix
from rccgrade.features.matrix import output_like as _output_like
from rccgrade.features.scores import abs_corr as _abs_corr
from rccgrade.features.scores import icc_mapping, neg_log_loss_binary, univariate_auc, univariate_pvalues
from rccgrade.features.stability_selection import StabilitySelector
from rccgrade.features.union import PrefixPCA, SourceUnion

log = logging.getLogger(__name__)

__all__ = [
    "ComBat",
    "CorrelationFilter",
    "CorrelationGrouper",
    "LassoSelector",
    "MRMRSelector",
    "NearConstantFilter",
    "PrefixPCA",
    "SourceUnion",
    "StabilityFilter",
    "StabilitySelector",
    "TabularPreprocessor",
    "UnivariateFilter",
    "combat_fit",
    "univariate_auc",
]


# --------------------------------------------------------------------------------------------------
# imputation and encoding
# --------------------------------------------------------------------------------------------------


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Median / most-frequent imputation and reference one-hot encoding, learned on training data.

    Numeric columns (int, float, bool) get the training median for missing values. Categorical columns
    (``category``, object or string dtype) get the training mode, then are encoded against the sorted
    training levels with the first level as reference (k − 1 indicator columns named
    ``<column>=<level>``), which keeps logistic-regression coefficients interpretable for the nomogram.
    A level unseen in training encodes as the reference (all zeros) and is logged. Columns entirely
    missing in training are dropped.

    Attributes:
        numeric_: Numeric input columns kept.
        medians_: Training median of each numeric column.
        categorical_: Categorical input columns kept.
        levels_: Sorted training levels of each categorical column.
        modes_: Most frequent training level of each categorical column.
    """

    def fit(self, X: Any, y: Any = None) -> TabularPreprocessor:
        """Learn column kinds, medians, modes and levels from the training patients."""
        X = _as_frame(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.numeric_: list[str] = []
        self.medians_: dict[str, float] = {}
        self.categorical_: list[str] = []
        self.levels_: dict[str, list[str]] = {}
        self.modes_: dict[str, str] = {}
        dropped: list[str] = []
        is_cat = [_is_categorical_dtype(dt) for dt in X.dtypes]
        cat_cols = [c for c, cat in zip(X.columns, is_cat, strict=True) if cat]
        num_cols = [c for c, cat in zip(X.columns, is_cat, strict=True) if not cat]
        if num_cols:
            num = pd.DataFrame(_numeric_block(X[num_cols]), columns=num_cols)
            medians = num.median(axis=0, skipna=True).to_numpy(dtype=np.float64)
            finite = np.isfinite(medians)
            self.numeric_ = [c for c, ok in zip(num_cols, finite, strict=True) if ok]
            self.medians_ = {c: float(m) for c, m, ok in zip(num_cols, medians, finite, strict=True) if ok}
            dropped.extend(c for c, ok in zip(num_cols, finite, strict=True) if not ok)
        for col in cat_cols:
            vals = X[col].dropna().astype(str)
            if vals.empty:
                dropped.append(col)
                continue
            counts = vals.value_counts()
            top = counts[counts == counts.max()].index
            self.categorical_.append(col)
            self.levels_[col] = sorted(vals.unique().tolist())
            self.modes_[col] = str(sorted(top.tolist())[0])
        if dropped:
            log.info("dropped %d feature(s) missing in every training patient: %s", len(dropped), dropped[:5])
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Numeric columns, then one indicator per non-reference level of each categorical column."""
        names = list(self.numeric_)
        for col in self.categorical_:
            names.extend(f"{col}={lvl}" for lvl in self.levels_[col][1:])
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        """Missing values are what this step is for (it imputes them)."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def transform(self, X: Any) -> pd.DataFrame:
        """Impute and encode; returns a float64 DataFrame with the input's index (an array for an array)."""
        X_in = X
        X = _as_frame(X, list(self.feature_names_in_), n_features=self.n_features_in_, step="TabularPreprocessor")
        needed = self.numeric_ + self.categorical_
        present = set(X.columns)
        missing = [c for c in needed if c not in present]
        if missing:
            raise ModelError(f"{len(missing)} feature(s) seen in training are missing: {missing[:5]}")
        parts: list[pd.DataFrame] = []
        if self.numeric_:
            num = _numeric_block(X[self.numeric_])
            med = np.asarray([self.medians_[c] for c in self.numeric_])
            num = np.where(np.isnan(num), med, num)
            parts.append(pd.DataFrame(num, index=X.index, columns=self.numeric_))
        dummies: dict[str, np.ndarray] = {}
        for col in self.categorical_:
            vals = X[col].astype(object).where(X[col].notna(), None)
            vals = np.asarray([self.modes_[col] if v is None else str(v) for v in vals], dtype=object)
            unseen = sorted(set(vals.tolist()) - set(self.levels_[col]))
            if unseen:
                log.warning("%s: level(s) %s unseen in training encoded as the reference level", col, unseen)
            for lvl in self.levels_[col][1:]:
                dummies[f"{col}={lvl}"] = (vals == lvl).astype(np.float64)
        if dummies:
            parts.append(pd.DataFrame(dummies, index=X.index))
        out = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0] if parts else pd.DataFrame(index=X.index)
        return _output_like(X_in, out)  # columns: numeric_, then the indicators = get_feature_names_out()


# --------------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------------


def _largest_tie_count(arr: np.ndarray) -> np.ndarray:
    """Per column, how many rows share its most common value (``np.unique(col, return_counts=True)[1].max()``).

    One sort of the whole matrix instead of a ``np.unique`` per column; shape (p,) from (n, p).
    """
    n, p = arr.shape
    if n == 0:
        return np.zeros(p, dtype=np.int64)
    s = np.sort(arr, axis=0).T  # (p, n): each row a sorted column
    new = np.ones((p, n), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]  # a run of equal values starts here (and at every column's first row)
    starts = np.flatnonzero(new.ravel())
    lengths = np.diff(np.append(starts, n * p))  # runs never cross columns: each column's first row starts one
    return np.maximum.reduceat(lengths, np.flatnonzero(starts % n == 0)).astype(np.int64)


class NearConstantFilter(_FrameSelector):
    """Drop features that (almost) never vary in the training patients.

    Args:
        max_frequency: Drop a feature whose most common value is shared by more than this fraction of
            training patients (0.95 by default: a binary variable positive in < 5% carries little).
        min_variance: Drop a feature whose variance is at most this value.
    """

    def __init__(self, max_frequency: float = 0.95, min_variance: float = 0.0) -> None:
        self.max_frequency = max_frequency
        self.min_variance = min_variance

    def fit(self, X: Any, y: Any = None) -> NearConstantFilter:
        """Find the near-constant features."""
        X = _as_frame(X)
        self._set_input(X)
        arr = _numeric_matrix(X, "NearConstantFilter")
        n = arr.shape[0]
        var = arr.var(axis=0) if n else np.zeros(arr.shape[1])
        self.support_ = (var > self.min_variance) & (_largest_tie_count(arr) / max(n, 1) <= self.max_frequency)
        return self


class StabilityFilter(_FrameSelector):
    """Drop features whose test–retest / perturbation ICC is below a threshold.

    The ICC table comes from the radiomics stability analysis (mask/image perturbations). It is a fixed
    property of each feature's definition, not of the labels, so this step does not leak; it still lives
    in the pipeline so the kept features are recorded with the model.

    Args:
        icc: Feature → ICC, as a mapping, a Series, or a DataFrame with columns ``feature``/``icc`` (or an
            ``icc`` column indexed by feature). Keys may carry the ``rad:`` prefix or not.
        threshold: Minimum ICC to keep a feature (0.75 = "good" reliability, Koo & Li 2016).
        keep_missing: Keep (True) or drop (False) features absent from the ICC table.
        prefix: Only columns starting with this prefix are judged; the others pass through. None: all.
    """

    def __init__(
        self,
        icc: Mapping[str, float] | pd.Series | pd.DataFrame | None = None,
        threshold: float = 0.75,
        keep_missing: bool = True,
        prefix: str | None = None,
    ) -> None:
        self.icc = icc
        self.threshold = threshold
        self.keep_missing = keep_missing
        self.prefix = prefix

    def fit(self, X: Any, y: Any = None) -> StabilityFilter:
        """Look each feature up in the ICC table."""
        X = _as_frame(X)
        self._set_input(X)
        _numeric_matrix(X, "StabilityFilter")  # selection steps work on complete numeric features
        table = icc_mapping(self.icc)
        support = np.ones(X.shape[1], dtype=bool)
        n_missing = 0
        for j, col in enumerate(X.columns):
            if self.prefix is not None and not col.startswith(self.prefix):
                continue
            value = table.get(col, table.get(col.split(":", 1)[-1]))
            if value is None or not np.isfinite(value):
                n_missing += 1
                support[j] = self.keep_missing
            else:
                support[j] = value >= self.threshold
        if n_missing and table:
            log.info(
                "%d feature(s) not in the ICC table were %s", n_missing, "kept" if self.keep_missing else "dropped"
            )
        self.support_ = support
        return self


class UnivariateFilter(BinaryTargetMixin, _FrameSelector):
    """Keep features whose class difference is significant after Benjamini–Hochberg FDR control.

    Args:
        test: ``"mannwhitney"`` (two-sided Mann–Whitney U, asymptotic with tie correction) or ``"ttest"``
            (Welch's t-test).
        alpha: FDR level; features with BH-adjusted p (q-value) below it are kept.
        fdr: Apply BH adjustment (True) or use raw p-values (False).
        min_features: When fewer pass, keep this many with the smallest p-values, so a pipeline never runs
            out of features (0 disables). The choice is still made on training data only.
        max_features: Keep at most this many (smallest p first); None: no cap.

    Attributes:
        pvalues_: Raw p-value per input feature.
        qvalues_: BH-adjusted p-values (equal to ``pvalues_`` when ``fdr=False``).
    """

    def __init__(
        self,
        test: Literal["mannwhitney", "ttest"] = "mannwhitney",
        alpha: float = 0.05,
        fdr: bool = True,
        min_features: int = 1,
        max_features: int | None = None,
    ) -> None:
        self.test = test
        self.alpha = alpha
        self.fdr = fdr
        self.min_features = min_features
        self.max_features = max_features

    def fit(self, X: Any, y: Any) -> UnivariateFilter:
        """Test every feature between the two classes."""
        X = _as_frame(X)
        self._set_input(X)
        arr = _numeric_matrix(X, "UnivariateFilter")
        lab = _binary_labels(y, "UnivariateFilter")
        p = univariate_pvalues(arr, lab, self.test)
        q = stats.false_discovery_control(p, method="bh") if self.fdr and p.size else p.copy()
        order = np.argsort(p, kind="stable")
        support = q < self.alpha
        if support.sum() < self.min_features:
            support[order[: self.min_features]] = True
        if self.max_features is not None and support.sum() > self.max_features:
            keep = [j for j in order if support[j]][: self.max_features]
            support = np.zeros_like(support)
            support[keep] = True
        self.pvalues_ = p
        self.qvalues_ = q
        self.support_ = support
        return self


class CorrelationFilter(BinaryTargetMixin, _FrameSelector):
    """Remove redundancy: of features correlated above a threshold keep the more relevant one.

    Features are ranked by relevance |AUC − 0.5| (univariate AUC on the training patients) and taken in
    that order; a feature is kept when its |r| with every feature already kept is at most ``threshold``.

    Args:
        threshold: Maximum absolute correlation between two kept features (0.9).
        method: ``"pearson"`` or ``"spearman"``.
    """

    def __init__(self, threshold: float = 0.9, method: Literal["pearson", "spearman"] = "pearson") -> None:
        self.threshold = threshold
        self.method = method

    def fit(self, X: Any, y: Any) -> CorrelationFilter:
        """Greedy relevance-ordered pruning of correlated features."""
        X = _as_frame(X)
        self._set_input(X)
        arr = _numeric_matrix(X, "CorrelationFilter")
        lab = _binary_labels(y, "CorrelationFilter")
        relevance = np.abs(univariate_auc(arr, lab) - 0.5)
        corr = _abs_corr(arr, self.method)
        order = np.argsort(-relevance, kind="stable")
        kept: list[int] = []
        for j in order:
            if not kept or np.all(corr[j, kept] <= self.threshold):
                kept.append(int(j))
        support = np.zeros(arr.shape[1], dtype=bool)
        support[kept] = True
        self.relevance_ = relevance
        self.support_ = support
        return self


class LassoSelector(BinaryTargetMixin, _FrameSelector):
    """Keep the features with a non-zero coefficient in an L1- (or elastic-net-) penalised logistic regression.

    The penalty strength C is chosen by stratified cross-validation *within* the data the selector is
    fitted on (the training patients, or a training fold of an outer CV), on the log-loss. Features are
    z-scored internally first, so the penalty treats them alike whatever their units.

    Args:
        Cs: Number of C values on a log grid from 1e-3 to 10 (or an explicit list); with z-scored
            features C > 10 is practically unpenalised.
        cv: Folds of the inner stratified CV.
        max_features: Keep at most this many (largest |coefficient| first); None: all non-zero.
        class_weight: ``"balanced"`` (default) reweights classes by inverse frequency.
        random_state: Seed of the inner CV's shuffling.
        l1_ratio: 1.0 = LASSO (liblinear); below 1 = elastic net (saga) with this L1 share, which keeps
            groups of correlated informative features together instead of picking one of them at random.

    Attributes:
        C_: The chosen penalty strength.
        coef_: Coefficient of every input feature (per standardised unit) at ``C_``.

    When no coefficient is non-zero at the chosen C, the single feature with the largest |AUC − 0.5| is
    kept (and logged) so the downstream classifier has an input.
    """

    def __init__(
        self,
        Cs: int | Sequence[float] = 20,
        cv: int = 5,
        max_features: int | None = None,
        class_weight: str | None = "balanced",
        random_state: int | None = 0,
        l1_ratio: float = 1.0,
    ) -> None:
        self.Cs = Cs
        self.cv = cv
        self.max_features = max_features
        self.class_weight = class_weight
        self.random_state = random_state
        self.l1_ratio = l1_ratio

    def fit(self, X: Any, y: Any) -> LassoSelector:
        """Fit the L1 path with inner CV and keep the non-zero coefficients."""
        X = _as_frame(X)
        self._set_input(X)
        arr = _numeric_matrix(X, "LassoSelector")
        lab = _binary_labels(y, "LassoSelector")
        sd = arr.std(axis=0)
        z = (arr - arr.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        n_splits = int(min(self.cv, np.bincount(lab).min()))
        if n_splits < 2:
            raise ModelError("LassoSelector needs at least 2 patients of each class in the training data")
        Cs = list(np.logspace(-3, 1, self.Cs)) if isinstance(self.Cs, int) else list(self.Cs)
        if not 0.0 < self.l1_ratio <= 1.0:
            raise ModelError(f"LassoSelector: l1_ratio must be in (0, 1], got {self.l1_ratio}")
        model = LogisticRegressionCV(
            Cs=Cs,
            l1_ratios=(float(self.l1_ratio),),
            cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state),
            solver="liblinear" if self.l1_ratio >= 1.0 else "saga",
            scoring=neg_log_loss_binary,  # the stock "neg_log_loss", without its per-call input checks
            class_weight=self.class_weight,
            max_iter=5000,
            random_state=self.random_state,
            use_legacy_attributes=False,
        )
        with warnings.catch_warnings():
            if self.l1_ratio < 1.0:  # saga's tolerance on a path of strong penalties: selection is what counts
                warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(z, lab)
        coef = np.asarray(model.coef_, dtype=np.float64).ravel()
        support = coef != 0
        if not support.any():
            rel = np.abs(univariate_auc(arr, lab) - 0.5)
            support[int(np.argmax(rel))] = True
            log.info("LASSO kept no feature at C=%.3g; keeping the most relevant one", float(np.ravel(model.C_)[0]))
        if self.max_features is not None and support.sum() > self.max_features:
            order = np.argsort(-np.abs(coef), kind="stable")[: self.max_features]
            support = np.zeros_like(support)
            support[order] = True
        self.C_ = float(np.ravel(model.C_)[0])
        self.coef_ = coef
        self.support_ = support
        return self


class MRMRSelector(BinaryTargetMixin, _FrameSelector):
    """Minimum-redundancy maximum-relevance selection (correlation variant, difference scheme).

    Greedy: start with the most relevant feature, then repeatedly add the feature maximising
    relevance − mean |r| with the features already chosen. Relevance is 2·|AUC − 0.5| (in [0, 1], like
    |r|), so both terms share a scale and the result is deterministic (no mutual-information estimator).

    Args:
        n_features: How many features to keep.
        method: Correlation used for redundancy (``"pearson"`` or ``"spearman"``).
    """

    def __init__(self, n_features: int = 20, method: Literal["pearson", "spearman"] = "pearson") -> None:
        self.n_features = n_features
        self.method = method

    def fit(self, X: Any, y: Any) -> MRMRSelector:
        """Choose ``n_features`` features greedily."""
        X = _as_frame(X)
        self._set_input(X)
        arr = _numeric_matrix(X, "MRMRSelector")
        lab = _binary_labels(y, "MRMRSelector")
        rel = 2.0 * np.abs(univariate_auc(arr, lab) - 0.5)
        corr = _abs_corr(arr, self.method)
        k = min(self.n_features, arr.shape[1])
        chosen: list[int] = []
        redundancy = np.zeros(arr.shape[1])
        available = np.ones(arr.shape[1], dtype=bool)
        for step in range(k):
            score = rel - (redundancy / step if step else 0.0)
            score = np.where(available, score, -np.inf)
            j = int(np.argmax(score))
            chosen.append(j)
            available[j] = False
            redundancy += corr[:, j]
        support = np.zeros(arr.shape[1], dtype=bool)
        support[chosen] = True
        self.ranking_ = np.asarray(chosen)
        self.support_ = support
        return self
