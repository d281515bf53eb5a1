"""ROC analysis: AUC, DeLong variance/covariance, confidence intervals and tests, bootstrap, curve points.

Conventions (as R's pROC with ``direction = "<"``): label 1 is the positive class (high grade) and a
*higher* score means *more likely positive*; the direction is never flipped automatically, so an AUC below
0.5 is reported as such. Ties between a positive and a negative patient count one half.

DeLong's variance uses the fast midrank algorithm of Sun & Xu (2014, IEEE Signal Process. Lett. 21:1389),
O(n log n) per model instead of the O(m·n) placement values, and gives exactly the same numbers as pROC.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike, as_labels, as_scores, check_level, make_rng

__all__ = [
    "AucCI",
    "DelongResult",
    "DelongTestResult",
    "auc",
    "auc_ci",
    "bootstrap_auc",
    "compare_models",
    "delong",
    "delong_matrix",
    "delong_test",
    "delong_test_unpaired",
    "holm",
    "roc_ci_band",
    "roc_curve_points",
]


@dataclass(frozen=True)
class DelongResult:
    """AUCs of k models on the same patients and DeLong's covariance matrix of those AUCs.

    Attributes:
        aucs: Shape (k,), the AUC of each model.
        covariance: Shape (k, k); the diagonal holds the variances.
        n_positive: Number of positive patients (m).
        n_negative: Number of negative patients (n).
    """

    aucs: np.ndarray
    covariance: np.ndarray
    n_positive: int
    n_negative: int

    @property
    def variances(self) -> np.ndarray:
        """DeLong variance of each AUC (the covariance diagonal)."""
        return np.diag(self.covariance).copy()


@dataclass(frozen=True)
class AucCI:
    """An AUC with its confidence interval.

    Attributes:
        auc: Point estimate on all patients.
        lower: Lower confidence limit.
        upper: Upper confidence limit.
        level: Confidence level, e.g. 0.95.
        method: ``"delong"`` or ``"bootstrap"``.
        se: Standard error (DeLong: sqrt of the variance; bootstrap: SD of the replicates).
    """

    auc: float
    lower: float
    upper: float
    level: float
    method: str
    se: float


@dataclass(frozen=True)
class DelongTestResult:
    """DeLong's test of the difference between two AUCs (two-sided).

    Paired (same patients): Z against the standard normal. Unpaired (independent cohorts): pROC's D against
    Student's t with Welch–Satterthwaite degrees of freedom ``df``.

    Attributes:
        z: Test statistic (auc_1 − auc_2) / SE (pROC's Z when paired, D when unpaired).
        p_value: Two-sided p-value (a probability, not its logarithm).
        auc_1: AUC of the first model.
        auc_2: AUC of the second model.
        difference: auc_1 − auc_2.
        se: Standard error of the difference.
        paired: Whether the two AUCs were measured on the same patients.
        df: Degrees of freedom of the t reference distribution (unpaired test), or ``None`` (paired: normal).
    """

    z: float
    p_value: float
    auc_1: float
    auc_2: float
    difference: float
    se: float
    paired: bool
    df: float | None = None


def _split(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of positives (k, m) and negatives (k, n) from scores (k, N)."""
    pos = y == 1
    return scores[:, pos], scores[:, ~pos]


def _fast_delong(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sun & Xu's midrank DeLong: AUCs (k,) and covariance (k, k) from scores of positives/negatives."""
    m = pos.shape[1]
    n = neg.shape[1]
    tx = sps.rankdata(pos, axis=1)
    ty = sps.rankdata(neg, axis=1)
    tz = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v_pos = (tz[:, :m] - tx) / n  # structural components of the positives (placement values)
    v_neg = 1.0 - (tz[:, m:] - ty) / m  # structural components of the negatives
    s_pos = np.atleast_2d(np.cov(v_pos)) if m > 1 else np.zeros((pos.shape[0], pos.shape[0]))
    s_neg = np.atleast_2d(np.cov(v_neg)) if n > 1 else np.zeros((pos.shape[0], pos.shape[0]))
    return aucs, s_pos / m + s_neg / n


def _prepare(y: ArrayLike, scores: Mapping[str, ArrayLike] | ArrayLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    yy = as_labels(y)
    if isinstance(scores, Mapping):
        if not scores:
            raise StatsError("no scores given: pass at least one model's scores")
        names = [str(k) for k in scores]
        mat = np.vstack([as_scores(v, yy.size, name=f"score of {k!r}") for k, v in scores.items()])
    else:
        arr = np.asarray(scores)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise StatsError(f"scores must be (n_models, n_patients) or a dict of arrays; got shape {arr.shape}")
        mat = np.vstack([as_scores(row, yy.size, name=f"score {i}") for i, row in enumerate(arr)])
        names = [str(i) for i in range(mat.shape[0])]
    return yy, mat, names


def auc(y: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney form; ties count one half).

    Args:
        y: 0/1 labels, 1 = positive class.
        score: One score per patient; higher = more likely positive.

    Returns:
        The AUC in [0, 1].

    Raises:
        StatsError: one class only, NaN scores or length mismatch.
    """
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    pos, neg = _split(yy, s[None, :])
    m, n = pos.shape[1], neg.shape[1]
    ranks = sps.rankdata(np.concatenate([pos[0], neg[0]]))
    return float((ranks[:m].sum() - m * (m + 1) / 2.0) / (m * n))


def delong(y: ArrayLike, scores: Mapping[str, ArrayLike] | ArrayLike) -> DelongResult:
    """AUCs of one or more models on the same patients and DeLong's covariance matrix.

    Args:
        y: 0/1 labels, 1 = positive class.
        scores: A dict ``name -> scores``, an array (k, N), or a single score vector (N,).

    Returns:
        :class:`DelongResult` with ``aucs`` (k,) and ``covariance`` (k, k) in the order given.

    Raises:
        StatsError: invalid labels or scores (see :func:`auc`).
    """
    yy, mat, _ = _prepare(y, scores)
    pos, neg = _split(yy, mat)
    aucs, cov = _fast_delong(pos, neg)
    return DelongResult(aucs=aucs, covariance=cov, n_positive=pos.shape[1], n_negative=neg.shape[1])


def _normal_ci(est: float, se: float, level: float) -> tuple[float, float]:
    z = sps.norm.ppf(0.5 + level / 2.0)
    lo, hi = est - z * se, est + z * se
    return float(min(max(lo, 0.0), 1.0)), float(min(max(hi, 0.0), 1.0))


def bootstrap_auc(
    y: ArrayLike,
    scores: Mapping[str, ArrayLike] | ArrayLike,
    *,
    n_bootstrap: int = 2000,
    seed: int | np.random.Generator = 0,
    stratified: bool = True,
    chunk: int = 256,
) -> np.ndarray:
    """Bootstrap replicates of the AUC of one or more models (resampling patients, shared across models).

    Vectorised: each chunk of replicates is ranked in one call. Stratified resampling (pROC's default)
    keeps the numbers of positives and negatives fixed, so every replicate has both classes.

    Args:
        y: 0/1 labels.
        scores: As in :func:`delong`.
        n_bootstrap: Number of replicates.
        seed: Seed or Generator; the same seed gives the same replicates.
        stratified: Resample positives and negatives separately.
        chunk: Replicates ranked at once (memory ~ chunk × N × 8 bytes).

    Returns:
        Array (n_bootstrap, k) of AUCs; non-stratified replicates with one class only are NaN.
    """
    if n_bootstrap < 1:
        raise StatsError(f"n_bootstrap must be at least 1; got {n_bootstrap}")
    yy, mat, _ = _prepare(y, scores)
    rng = make_rng(seed)
    pos, neg = _split(yy, mat)
    k, m = pos.shape
    n = neg.shape[1]
    out = np.empty((n_bootstrap, k))
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        if stratified:
            ip = rng.integers(0, m, size=(b, m))
            ineg = rng.integers(0, n, size=(b, n))
            sp = pos[:, ip]  # (k, b, m)
            sn = neg[:, ineg]  # (k, b, n)
            ranks = sps.rankdata(np.concatenate([sp, sn], axis=2), axis=2)
            out[start : start + b] = ((ranks[:, :, :m].sum(axis=2) - m * (m + 1) / 2.0) / (m * n)).T
        else:
            idx = rng.integers(0, m + n, size=(b, m + n))
            yb = yy[idx]  # (b, N)
            sb = mat[:, idx]  # (k, b, N)
            ranks = sps.rankdata(sb, axis=2)
            mb = yb.sum(axis=1).astype(float)
            nb = (m + n) - mb
            with np.errstate(invalid="ignore", divide="ignore"):
                r_pos = (ranks * yb[None]).sum(axis=2)
                vals = (r_pos - mb * (mb + 1) / 2.0) / (mb * nb)
            vals[:, (mb == 0) | (nb == 0)] = np.nan
            out[start : start + b] = vals.T
    return out


def auc_ci(
    y: ArrayLike,
    score: ArrayLike,
    method: Literal["delong", "bootstrap"] = "delong",
    level: float = 0.95,
    *,
    n_bootstrap: int = 2000,
    seed: int | np.random.Generator = 0,
    stratified: bool = True,
) -> AucCI:
    """AUC with a confidence interval.

    ``"delong"`` is pROC's ``ci.auc(method="delong")``: a normal interval on the AUC scale,
    AUC ± z·sqrt(var_DeLong), clipped to [0, 1]. ``"bootstrap"`` is the percentile interval of
    stratified bootstrap replicates (pROC's default bootstrap).

    Raises:
        StatsError: invalid inputs or unknown method.
    """
    level = check_level(level)
    res = delong(y, score)
    est = float(res.aucs[0])
    if method == "delong":
        se = float(np.sqrt(max(res.covariance[0, 0], 0.0)))
        lo, hi = _normal_ci(est, se, level)
        return AucCI(auc=est, lower=lo, upper=hi, level=level, method="delong", se=se)
    if method == "bootstrap":
        reps = bootstrap_auc(y, score, n_bootstrap=n_bootstrap, seed=seed, stratified=stratified)[:, 0]
        reps = reps[np.isfinite(reps)]
        if reps.size < 2:
            raise StatsError("too few valid bootstrap replicates for a CI; use stratified=True or more patients")
        alpha = 1.0 - level
        lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
        return AucCI(
            auc=est, lower=float(lo), upper=float(hi), level=level, method="bootstrap", se=float(reps.std(ddof=1))
        )
    raise StatsError(f"unknown CI method {method!r}; use 'delong' or 'bootstrap'")


def delong_test(y: ArrayLike, score1: ArrayLike, score2: ArrayLike) -> DelongTestResult:
    """Paired DeLong test of AUC(score1) = AUC(score2) on the same patients (pROC ``roc.test``).

    Z = (AUC1 − AUC2) / sqrt(var1 + var2 − 2·cov); p = 2·Φ(−|Z|).

    Raises:
        StatsError: invalid inputs, or identical scores (zero variance of the difference).
    """
    res = delong(y, {"1": score1, "2": score2})
    a1, a2 = (float(v) for v in res.aucs)
    c = res.covariance
    var = c[0, 0] + c[1, 1] - 2.0 * c[0, 1]
    if not var > 0:
        raise StatsError(
            "the two models' AUC difference has zero variance (identical or perfectly concordant scores); "
            "DeLong's test is undefined — compare different models"
        )
    se = float(np.sqrt(var))
    z = (a1 - a2) / se
    return DelongTestResult(
        z=z, p_value=float(2.0 * sps.norm.sf(abs(z))), auc_1=a1, auc_2=a2, difference=a1 - a2, se=se, paired=True
    )


def delong_test_unpaired(y1: ArrayLike, score1: ArrayLike, y2: ArrayLike, score2: ArrayLike) -> DelongTestResult:
    """Unpaired DeLong test between AUCs measured on two independent cohorts (pROC ``paired = FALSE``).

    As pROC's ``roc.test(roc1, roc2, method = "delong", paired = FALSE)``:
    D = (AUC1 − AUC2) / sqrt(V1 + V2), with V each AUC's DeLong variance, and the two-sided p-value from
    Student's t with Welch–Satterthwaite degrees of freedom
    df = (V1 + V2)² / (V1² / (N1 − 1) + V2² / (N2 − 1)), N being each cohort's number of patients.

    Args:
        y1, score1: 0/1 labels and scores of the first cohort, shape (N1,).
        y2, score2: The same for the second cohort, shape (N2,).

    Returns:
        A :class:`DelongTestResult` with ``paired=False``, ``z`` = D and ``df``.

    Raises:
        StatsError: a cohort lacks one class, or both variances are zero (perfect separation in both).
    """
    r1 = delong(y1, score1)
    r2 = delong(y2, score2)
    a1, a2 = float(r1.aucs[0]), float(r2.aucs[0])
    v1, v2 = float(r1.covariance[0, 0]), float(r2.covariance[0, 0])
    var = v1 + v2
    if not var > 0:
        raise StatsError("both AUCs have zero DeLong variance (perfect separation); the unpaired test is undefined")
    n1 = r1.n_positive + r1.n_negative
    n2 = r2.n_positive + r2.n_negative
    df = var**2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    se = float(np.sqrt(var))
    d = (a1 - a2) / se
    return DelongTestResult(
        z=d,
        p_value=float(2.0 * sps.t.sf(abs(d), df)),
        auc_1=a1,
        auc_2=a2,
        difference=a1 - a2,
        se=se,
        paired=False,
        df=float(df),
    )


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down; monotone; capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise StatsError("p-values must be one-dimensional")
    if p.size == 0:
        return p.copy()
    if np.isnan(p).any():
        raise StatsError("p-values contain NaN; cannot adjust")
    order = np.argsort(p, kind="stable")
    k = p.size
    adj_sorted = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adj_sorted
    return out


def compare_models(
    y: ArrayLike, scores: Mapping[str, ArrayLike], *, level: float = 0.95, correction: Literal["holm", "none"] = "holm"
) -> pd.DataFrame:
    """Paired DeLong tests between every pair of models, with Holm correction across the family.

    Args:
        y: 0/1 labels.
        scores: ``model name -> scores`` (at least two models, same patients, same order).
        level: Confidence level of the CI of each AUC difference.
        correction: ``"holm"`` (default) or ``"none"`` (then ``p_adjusted`` equals ``p_value``).

    Returns:
        One row per pair: ``model_1, model_2, auc_1, auc_2, difference, ci_lower, ci_upper, se, z,
        p_value, p_adjusted``. Pairs with identical scores get z = 0, p = 1.
    """
    level = check_level(level)
    if len(scores) < 2:
        raise StatsError("compare_models needs at least two models")
    res = delong(y, scores)
    names = [str(k) for k in scores]
    zq = sps.norm.ppf(0.5 + level / 2.0)
    rows = []
    for i, j in itertools.combinations(range(len(names)), 2):
        a1, a2 = float(res.aucs[i]), float(res.aucs[j])
        var = res.covariance[i, i] + res.covariance[j, j] - 2.0 * res.covariance[i, j]
        se = float(np.sqrt(max(var, 0.0)))
        diff = a1 - a2
        if se > 0:
            z = diff / se
            p = float(2.0 * sps.norm.sf(abs(z)))
        else:
            z, p = 0.0, 1.0
        rows.append(
            {
                "model_1": names[i],
                "model_2": names[j],
                "auc_1": a1,
                "auc_2": a2,
                "difference": diff,
                "ci_lower": diff - zq * se,
                "ci_upper": diff + zq * se,
                "se": se,
                "z": z,
                "p_value": p,
            }
        )
    out = pd.DataFrame(rows)
    if correction == "holm":
        out["p_adjusted"] = holm(out["p_value"].to_numpy())
    elif correction == "none":
        out["p_adjusted"] = out["p_value"]
    else:
        raise StatsError(f"unknown multiple-testing correction {correction!r}; use 'holm' or 'none'")
    return out


def delong_matrix(y: ArrayLike, scores_by_arm: Mapping[str, ArrayLike], *, adjusted: bool = True) -> pd.DataFrame:
    """Square matrix (arms × arms) of paired DeLong p-values (Holm-adjusted by default); diagonal NaN.

    With a single arm the 1×1 matrix is NaN (nothing to compare), after the inputs are validated.
    """
    names = [str(k) for k in scores_by_arm]
    mat = pd.DataFrame(np.nan, index=pd.Index(names, name="arm"), columns=names)
    if len(names) < 2:
        delong(y, scores_by_arm)
        return mat
    table = compare_models(y, scores_by_arm, correction="holm" if adjusted else "none")
    for row in table.itertuples(index=False):
        mat.loc[row.model_1, row.model_2] = row.p_adjusted
        mat.loc[row.model_2, row.model_1] = row.p_adjusted
    return mat


def roc_curve_points(y: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """Empirical ROC curve: one row per distinct threshold, from (0, 0) to (1, 1).

    A patient is called positive when ``score >= threshold``. The first row has threshold +inf.

    Returns:
        DataFrame with columns ``threshold, fpr, tpr, specificity, sensitivity``.
    """
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    thr = np.unique(s)[::-1]
    pos = np.sort(s[yy == 1])
    neg = np.sort(s[yy == 0])
    tpr = (pos.size - np.searchsorted(pos, thr, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thr, side="left")) / neg.size
    thr = np.concatenate([[np.inf], thr])
    tpr = np.concatenate([[0.0], tpr])
    fpr = np.concatenate([[0.0], fpr])
    return pd.DataFrame({"threshold": thr, "fpr": fpr, "tpr": tpr, "specificity": 1.0 - fpr, "sensitivity": tpr})


def _tpr_at_fpr(pos_sorted: np.ndarray, neg_sorted: np.ndarray, fpr_grid: np.ndarray) -> np.ndarray:
    """Highest sensitivity reachable at each false-positive rate of the grid (step ROC curve, vectorised)."""
    thr = np.unique(np.concatenate([pos_sorted, neg_sorted]))[::-1]
    tpr = (pos_sorted.size - np.searchsorted(pos_sorted, thr, side="left")) / pos_sorted.size
    fpr = (neg_sorted.size - np.searchsorted(neg_sorted, thr, side="left")) / neg_sorted.size
    fpr = np.concatenate([[0.0], fpr])
    tpr = np.concatenate([[0.0], tpr])
    idx = np.searchsorted(fpr, fpr_grid + 1e-12, side="right") - 1
    return tpr[np.clip(idx, 0, tpr.size - 1)]


def roc_ci_band(
    y: ArrayLike,
    score: ArrayLike,
    *,
    fpr_grid: ArrayLike | None = None,
    level: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int | np.random.Generator = 0,
) -> pd.DataFrame:
    """Pointwise bootstrap confidence band of sensitivity at fixed false-positive rates (pROC ``ci.se``).

    Stratified bootstrap: positives and negatives are resampled separately.

    Returns:
        DataFrame with columns ``fpr, tpr, tpr_lower, tpr_upper`` (``tpr`` from all patients).
    """
    level = check_level(level)
    yy = as_labels(y)
    s = as_scores(score, yy.size)
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid, dtype=float)
    rng = make_rng(seed)
    pos, neg = s[yy == 1], s[yy == 0]
    reps = np.empty((n_bootstrap, grid.size))
    for b in range(n_bootstrap):
        ps = np.sort(pos[rng.integers(0, pos.size, pos.size)])
        ns = np.sort(neg[rng.integers(0, neg.size, neg.size)])
        reps[b] = _tpr_at_fpr(ps, ns, grid)
    alpha = 1.0 - level
    lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    est = _tpr_at_fpr(np.sort(pos), np.sort(neg), grid)
    return pd.DataFrame({"fpr": grid, "tpr": est, "tpr_lower": lo, "tpr_upper": hi})
