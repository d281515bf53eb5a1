"""The corrected resampled t-test: is a cross-validated score better than a fixed value?

Repeated k-fold cross-validation gives ``J = repeats × k`` held-out scores (e.g. fold AUCs). They are not
independent: every two folds share most of their training patients, so the one-sample t-test that treats them
as a sample of ``J`` is anti-conservative, and the more so the more repeats are added. Nadeau and Bengio
(2003, *Inference for the generalization error*, Machine Learning 52:239–281) correct the variance of the
mean for that overlap,

    t = (mean − null) / sqrt((1/J + n_test/n_train) · s²),    df = J − 1,

where ``s²`` is the sample variance of the ``J`` scores and ``n_test/n_train`` the ratio of held-out to
training patients of one fold (``1/(k − 1)`` for k-fold CV). Bouckaert and Frank (2004, *Evaluating the
replicability of significance tests for comparing learning algorithms*, PAKDD) recommend it with repeated
k-fold CV: it keeps its error rate near the nominal level where the naive test's grows with the repeats.

rccgrade uses it to gate the sources of the ``combined`` arm (:mod:`rccgrade.models.source_gate`): a source
enters when its repeated inner-CV fold AUCs exceed 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike

__all__ = ["ResampledTTestResult", "corrected_resampled_ttest"]


@dataclass(frozen=True)
class ResampledTTestResult:
    """One corrected resampled t-test.

    Attributes:
        mean: Mean of the ``J`` resampled scores.
        t: Test statistic (mean − null) / corrected SE (±inf when every score is identical and differs from
            the null, 0 when all equal the null).
        df: Degrees of freedom, ``J − 1``.
        p_value: p-value for ``alternative``.
        se: Corrected standard error of the mean, ``sqrt((1/J + test_train_ratio) · s²)``.
        n_scores: ``J``.
        test_train_ratio: Held-out over training patients of one resample.
        alternative: ``greater`` (one-sided: mean > null), ``less`` or ``two-sided``.
    """

    mean: float
    t: float
    df: int
    p_value: float
    se: float
    n_scores: int
    test_train_ratio: float
    alternative: str


def corrected_resampled_ttest(
    scores: ArrayLike,
    test_train_ratio: float,
    *,
    null: float = 0.5,
    alternative: Literal["greater", "less", "two-sided"] = "greater",
) -> ResampledTTestResult:
    """Nadeau–Bengio corrected resampled t-test of ``J`` cross-validated scores against ``null``.

    Args:
        scores: The ``J`` held-out scores of repeated CV, ``(J,)`` (any order; e.g. ``repeats × k`` fold AUCs).
        test_train_ratio: Held-out / training patients of one resample (``1/(k − 1)`` for k-fold CV; 0 gives
            the naive one-sample t-test).
        null: Value the mean is tested against (0.5: an AUC of chance).
        alternative: ``greater`` (the default), ``less`` or ``two-sided``.

    Raises:
        StatsError: fewer than 2 scores, a score that is not finite, a negative or non-finite ratio, or an
            unknown ``alternative``.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1 or a.size < 2:
        raise StatsError(f"the corrected resampled t-test needs 2 or more scores in one dimension; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise StatsError(f"scores must be finite numbers; got {a[~np.isfinite(a)][:3].tolist()}")
    ratio = float(test_train_ratio)
    if not np.isfinite(ratio) or ratio < 0:
        raise StatsError(f"test_train_ratio is held-out over training patients (>= 0); got {test_train_ratio!r}")
    if alternative not in ("greater", "less", "two-sided"):
        raise StatsError(f"alternative must be 'greater', 'less' or 'two-sided'; got {alternative!r}")
    J = a.size
    mean = float(a.mean())
    identical = bool(np.ptp(a) == 0)  # (their float variance need not be exactly 0)
    se = 0.0 if identical else float(np.sqrt((1.0 / J + ratio) * a.var(ddof=1)))
    diff = float(a[0]) - null if identical else mean - null
    if identical:  # certain, in whichever direction they lie
        t = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        t = diff / se
    if alternative == "greater":
        p = float(stats.t.sf(t, J - 1))
    elif alternative == "less":
        p = float(stats.t.cdf(t, J - 1))
    else:
        p = float(2 * stats.t.sf(abs(t), J - 1))
    return ResampledTTestResult(
        mean=mean,
        t=float(t),
        df=J - 1,
        p_value=p,
        se=se,
        n_scores=J,
        test_train_ratio=ratio,
        alternative=alternative,
    )
