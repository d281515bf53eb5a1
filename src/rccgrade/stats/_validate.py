"""Input checks shared by the statistics modules.

Every public statistic accepts labels as 0/1 (or booleans) and scores as real numbers, one per patient.
These helpers turn them into clean numpy arrays or raise :class:`~rccgrade.errors.StatsError` with a
message that says what is wrong and how to fix it, instead of returning NaN or a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rccgrade.errors import StatsError

ArrayLike = npt.ArrayLike | Sequence[Any]


def as_labels(y: ArrayLike, *, name: str = "y", require_both: bool = True) -> np.ndarray:
    """Return ``y`` as an int8 array of 0/1 labels (1 = positive class, e.g. high grade).

    Args:
        y: Binary labels: 0/1, booleans or floats equal to 0/1.
        name: Name used in error messages.
        require_both: Raise when only one class is present (AUC, DeLong …).

    Raises:
        StatsError: empty, not one-dimensional, missing values, values other than 0/1, or one class only.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise StatsError(f"{name} must be one-dimensional (one label per patient); got shape {arr.shape}")
    if arr.size == 0:
        raise StatsError(f"{name} is empty: at least one positive and one negative patient are needed")
    if arr.dtype == bool:
        out = arr.astype(np.int8)
    else:
        try:
            num = arr.astype(float)
        except (TypeError, ValueError):
            raise StatsError(
                f"{name} must hold 0/1 labels (1 = positive class); got values such as {arr[:3].tolist()}"
            ) from None
        if np.isnan(num).any():
            raise StatsError(f"{name} has {int(np.isnan(num).sum())} missing label(s); drop those patients first")
        bad = ~np.isin(num, (0.0, 1.0))
        if bad.any():
            raise StatsError(
                f"{name} must hold 0/1 labels (1 = positive class); found {np.unique(num[bad])[:5].tolist()}"
            )
        out = num.astype(np.int8)
    if require_both:
        n_pos = int(out.sum())
        if n_pos == 0 or n_pos == out.size:
            only = "positive" if n_pos else "negative"
            raise StatsError(
                f"{name} contains only {only} patients ({out.size}); this statistic needs both classes — "
                "check the outcome column and the cohort split"
            )
    return out


def as_scores(score: ArrayLike, n: int, *, name: str = "score", probability: bool = False) -> np.ndarray:
    """Return ``score`` as a float64 array of length ``n``.

    Args:
        score: One predicted score (or probability) per patient; higher means more likely positive.
        n: Expected length (the number of labels).
        name: Name used in error messages.
        probability: Also require every value to lie in [0, 1].

    Raises:
        StatsError: length mismatch, non-numeric values, NaN/inf, or probabilities outside [0, 1].
    """
    arr = np.asarray(score)
    if arr.ndim != 1:
        raise StatsError(f"{name} must be one-dimensional (one score per patient); got shape {arr.shape}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise StatsError(f"{name} must be numeric; got values such as {arr[:3].tolist()}") from None
    if arr.size != n:
        raise StatsError(f"{name} has {arr.size} values but there are {n} labels; give one score per patient")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise StatsError(
            f"{name} has {int(bad.sum())} missing or infinite value(s) (first at position {int(np.argmax(bad))}); "
            "predict every patient or drop those without a prediction from the evaluation"
        )
    if probability and ((arr < 0).any() or (arr > 1).any()):
        raise StatsError(f"{name} must be probabilities in [0, 1]; got range [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def check_level(level: float) -> float:
    """Check a confidence level lies strictly between 0 and 1."""
    if not 0.0 < float(level) < 1.0:
        raise StatsError(f"confidence level must be between 0 and 1 (e.g. 0.95); got {level}")
    return float(level)


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed (or the Generator itself); ``None`` is refused for reproducibility."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise StatsError("a seed is required for resampling so results are reproducible; pass seed=<int>")
    return np.random.default_rng(int(seed))
