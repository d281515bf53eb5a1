"""Out-of-distribution rule: is a new patient far outside the training distribution the bundle stores?

Split from :mod:`rccgrade.models.predict` (which re-exports every name).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from rccgrade.models.bundle import FeatureStats

OOD_RANGE_FACTOR = 1.0
"""A feature value is *outside* when it lies outside ``[min − k·span, max + k·span]`` of the training values, with
``k`` this factor and ``span = max − min`` (for a constant training feature, ``max(|median|, 1)``)."""

OOD_EXTREME_FACTOR = 10.0
"""A value beyond ``k = 10`` training spans is *extreme*: one extreme value makes the patient out of distribution."""

OOD_SHARE = 0.25
"""A patient is also out of distribution when more than this share of the model's (non-missing) features lie
outside. One merely-outside value among thousands of deep features is expected by chance on a small training
cohort and does not count alone."""

OOD_WITHHELD = "No probability is given: the model would extrapolate"
"""How an out-of-distribution reason ends when the prediction is withheld (``predict``)."""

OOD_KEPT = "Probability kept (in the statistics), but the model extrapolates"
"""How it ends when the probability is kept (external validation: leaving such patients out would flatter it)."""


def out_of_distribution(
    features: pd.DataFrame,
    distribution: Mapping[str, FeatureStats],
    factor: float = OOD_RANGE_FACTOR,
    *,
    extreme_factor: float = OOD_EXTREME_FACTOR,
    share: float = OOD_SHARE,
    probability_kept: bool = False,
) -> pd.Series:
    """Why each patient lies far outside the training distribution ("" when it does not).

    Rule: a value ``x`` of feature ``f`` is *outside* when ``x < min − k·span`` or ``x > max + k·span``, with
    ``min``/``max`` over the training patients, ``span = max − min`` (``max(|median|, 1)`` for a feature constant
    in training) and ``k = factor``; it is *extreme* beyond ``max(extreme_factor, factor)`` spans. A patient is
    out of distribution when any value is extreme, or when more than ``share`` of its judged features are outside.
    Missing values (imputed by the model) are not judged.

    Args:
        features: FeatureTable of the patients (index ``patient_id``).
        distribution: The bundle's :attr:`~rccgrade.models.bundle.ModelBundle.training_distribution`.
        factor: ``k`` (default :data:`OOD_RANGE_FACTOR`).
        extreme_factor: Spans beyond which one value suffices (default :data:`OOD_EXTREME_FACTOR`).
        share: Largest share of outside features that is tolerated (default :data:`OOD_SHARE`).
        probability_kept: The caller keeps the probability (external validation keeps every prediction in the
            statistics) — the reason then ends with :data:`OOD_KEPT` instead of :data:`OOD_WITHHELD`.

    Returns:
        A string Series indexed like ``features``: the features outside, with value and training range.
    """
    reasons = pd.Series("", index=features.index, dtype=object)
    n = len(features.index)
    judged = np.zeros(n, dtype=np.int64)
    n_out = np.zeros(n, dtype=np.int64)
    n_extreme = np.zeros(n, dtype=np.int64)
    hits: dict[int, list[tuple[float, str]]] = {}
    big = max(extreme_factor, factor)
    for name, stats in distribution.items():
        if name not in features.columns or not pd.api.types.is_numeric_dtype(features[name]):
            continue
        span = stats.max - stats.min
        if span <= 0:
            span = max(abs(stats.median), 1.0)
        values = features[name].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            beyond = np.maximum(stats.min - values, values - stats.max) / span  # spans beyond the training range
        finite = ~np.isnan(values)
        judged += finite
        outside = finite & (beyond > factor)
        n_out += outside
        n_extreme += finite & (beyond > big)
        for i in np.flatnonzero(outside):
            hits.setdefault(int(i), []).append(
                (float(beyond[i]), f"{name} = {values[i]:.4g} (training {stats.min:.4g}..{stats.max:.4g})")
            )
    for i, items in hits.items():
        if not (n_extreme[i] > 0 or n_out[i] > share * judged[i]):
            continue
        items.sort(key=lambda t: -t[0])  # the farthest first
        shown = "; ".join(t[1] for t in items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
        why = f"{n_extreme[i]} beyond {big:g}× the range" if n_extreme[i] else f"more than {share:.0%} of {judged[i]}"
        reasons.iloc[i] = (
            f"{len(items)} of {judged[i]} feature(s) far outside the training range (beyond {factor:g}× the range on "
            f"either side; {why}): {shown}. {OOD_KEPT if probability_kept else OOD_WITHHELD}"
        )
    return reasons
