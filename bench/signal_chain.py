"""The reference methods of bench/grade_signal.py: the plain hand-written chain, the oracle and the true-phenotype LR.

The plain chain is what a typical researcher writes by hand on the arterial radiomics features (issue 14's
anchor), fitted on the training patients only:

1. Mann–Whitney U test of every feature between the classes (two-sided), keep p < 0.05 (at least the
   single best feature when none passes);
2. correlation pruning: walk the kept features by ascending p-value and drop one whose |Pearson r| with an
   already kept feature exceeds 0.9;
3. z-score (training mean/SD), L1 logistic regression with the C chosen by 5-fold stratified CV on AUC
   (``LogisticRegressionCV``, liblinear, 20 values of C, scikit-learn's default ``max_iter`` = 100 as a
   hand-written script has it: with 5000 iterations the nearly unpenalised C = 1e4 fits fail to converge on
   near-separable splits and one fit took 80 s instead of 3 s, with the same selected features and test AUC on
   the splits checked); keep the non-zero coefficients (at least the
   feature with the smallest p-value when L1 drops all);
4. a plain logistic regression (sklearn default: L2, C = 1) on the kept features, z-scored.

The ``+ clinical`` variant appends the clinical columns (median-imputed, ``sex`` one-hot, z-scored; all
statistics from training patients) after step 3, so they skip selection, as a hand-written model would.

Missing or non-finite radiomics values are imputed with the training median first (the synthetic cohorts
have none; the step exists so a hostile table cannot crash the chain into a confident number).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

P_THRESHOLD = 0.05
R_THRESHOLD = 0.9
N_CS = 20
L1_MAX_ITER = 100


@dataclass(frozen=True)
class PlainChainFit:
    """A fitted plain chain.

    Attributes:
        radiomics: Selected radiomics columns (after U test, pruning and L1), in selection order.
        clinical: Clinical design columns appended after selection (empty without clinical).
        n_univariate: Features passing the U test.
        n_pruned: Features left after the correlation pruning.
        medians: Training medians used for imputation (every input column).
        clinical_levels: One-hot levels of each categorical clinical column.
        scaler: Scaler of the final design matrix (training statistics).
        model: The final logistic regression.
    """

    radiomics: tuple[str, ...]
    clinical: tuple[str, ...]
    n_univariate: int
    n_pruned: int
    medians: pd.Series
    clinical_levels: dict[str, tuple[str, ...]]
    scaler: StandardScaler
    model: LogisticRegression


def _numeric(x: pd.DataFrame, medians: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
    x = x.apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan).astype(float)
    med = x.median() if medians is None else medians
    return x.fillna(med).fillna(0.0), med


def _clinical_design(
    clin: pd.DataFrame, medians: pd.Series | None, levels: dict[str, tuple[str, ...]] | None
) -> tuple[pd.DataFrame, pd.Series, dict[str, tuple[str, ...]]]:
    numeric = [c for c in clin.columns if pd.api.types.is_numeric_dtype(clin[c])]
    categorical = [c for c in clin.columns if c not in numeric]
    num, med = _numeric(clin[numeric], medians)
    if levels is None:
        levels = {c: tuple(sorted(clin[c].dropna().astype(str).unique()))[1:] for c in categorical}
    parts = [num]
    for c, lv in levels.items():
        for level in lv:
            parts.append(pd.DataFrame({f"{c}={level}": (clin[c].astype(str) == level).astype(float)}, index=clin.index))
    return pd.concat(parts, axis=1), med, levels


def univariate_pvalues(x: pd.DataFrame, y: np.ndarray) -> pd.Series:
    """Two-sided Mann–Whitney p-value of every column (constant columns: p = 1)."""
    pos, neg = x[y == 1], x[y == 0]
    out = {}
    for c in x.columns:
        a, b = pos[c].to_numpy(), neg[c].to_numpy()
        if np.ptp(np.concatenate([a, b])) == 0:
            out[c] = 1.0
        else:
            out[c] = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return pd.Series(out)


def prune_correlated(x: pd.DataFrame, order: list[str], threshold: float = R_THRESHOLD) -> list[str]:
    """Walk ``order``; keep a column unless |Pearson r| with an already kept column exceeds ``threshold``."""
    if not order:
        return []
    corr = np.abs(np.corrcoef(x[order].to_numpy(), rowvar=False))
    corr = np.atleast_2d(np.nan_to_num(corr, nan=0.0))
    kept: list[int] = []
    for i in range(len(order)):
        if all(corr[i, j] <= threshold for j in kept):
            kept.append(i)
    return [order[i] for i in kept]


def fit_plain_chain(rad: pd.DataFrame, y: pd.Series, seed: int, clinical: pd.DataFrame | None = None) -> PlainChainFit:
    """Fit the plain chain on training patients (``rad``: radiomics columns; ``y``: 0/1 labels, same index)."""
    yv = y.loc[rad.index].to_numpy().astype(int)
    x, med = _numeric(rad)
    p = univariate_pvalues(x, yv).sort_values(kind="mergesort")
    passing = [c for c in p.index if p[c] < P_THRESHOLD] or [str(p.index[0])]
    pruned = prune_correlated(x, passing)
    sx = StandardScaler().fit(x[pruned])
    z = sx.transform(x[pruned])
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # sklearn 1.8 deprecates ``penalty``; the meaning is unchanged until 1.10
        warnings.simplefilter("ignore", FutureWarning)
        l1 = LogisticRegressionCV(
            Cs=N_CS,
            cv=cv,
            penalty="l1",
            solver="liblinear",
            scoring="roc_auc",
            max_iter=L1_MAX_ITER,
            random_state=seed,
        ).fit(z, yv)
    nz = [c for c, w in zip(pruned, l1.coef_[0], strict=True) if w != 0.0] or [pruned[0]]
    design = x[nz]
    clin_cols: list[str] = []
    levels: dict[str, tuple[str, ...]] = {}
    medians = med
    if clinical is not None and clinical.shape[1]:
        cd, cmed, levels = _clinical_design(clinical.loc[rad.index], None, None)
        clin_cols = list(cd.columns)
        design = pd.concat([design, cd], axis=1)
        medians = pd.concat([med, cmed])
    scaler = StandardScaler().fit(design)
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(design), yv)
    return PlainChainFit(tuple(nz), tuple(clin_cols), len(passing), len(pruned), medians, levels, scaler, model)


def predict_plain_chain(fit: PlainChainFit, rad: pd.DataFrame, clinical: pd.DataFrame | None = None) -> np.ndarray:
    """Probability of high grade for new patients (training statistics only)."""
    x, _ = _numeric(rad[list(fit.radiomics)], fit.medians[list(fit.radiomics)])
    design = x
    if fit.clinical:
        if clinical is None:
            raise ValueError("this chain was fitted with clinical columns; pass them")
        num_cols = [c for c in clinical.columns if c not in fit.clinical_levels]
        cd, _, _ = _clinical_design(clinical.loc[rad.index], fit.medians[num_cols], fit.clinical_levels)
        design = pd.concat([design, cd[list(fit.clinical)]], axis=1)
    return fit.model.predict_proba(fit.scaler.transform(design))[:, 1]


def fit_predict_lr(x_train: pd.DataFrame, y_train: pd.Series, x_test: pd.DataFrame) -> np.ndarray:
    """Plain LR (z-scored, default L2, C = 1) fitted on training rows; probabilities of the test rows."""
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(x_train), y_train.loc[x_train.index])
    return model.predict_proba(scaler.transform(x_test))[:, 1]
