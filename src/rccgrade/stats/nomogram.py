"""Nomogram of a logistic regression model: points per predictor, total points → probability of high grade.

Construction (as R's ``rms::nomogram``): the model is first rewritten on the predictors' *original* units
(undoing a standardising scaler), so ``logit p = b0 + Σ b_j x_j``. For predictor j with allowed range
[lo_j, hi_j] (or a set of levels), its contribution b_j·x_j varies by R_j = |b_j|·(hi_j − lo_j). The
predictor with the largest R_j gets the 0–100 point scale; every other predictor is scaled by the same
factor, with 0 points at its least risky value:

    points_j(x) = 100 · (b_j·x − min_j b_j·x) / max_k R_k

Total points T = Σ points_j map back to the linear predictor exactly:
``logit p = b0 + Σ_j min_j(b_j x) + T · max_k R_k / 100``. Values outside the range extrapolate linearly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import StatsError

__all__ = ["Nomogram", "build_nomogram", "nice_ticks", "nomogram_from_estimator", "nomogram_table", "ranges_from_data"]

RangeSpec = tuple[float, float] | Sequence[float]

_PROB_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    """About ``n`` (at least two) round-number ticks (steps of 1, 2, 2.5 or 5 × 10^k) within [lo, hi]."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return np.array([lo])
    for m in range(max(n, 2), max(n, 2) + 12):
        raw = (hi - lo) / (m - 1)
        mag = 10.0 ** np.floor(np.log10(raw))
        step = min((s * mag for s in (1.0, 2.0, 2.5, 5.0, 10.0) if s * mag >= raw * (1 - 1e-9)), default=10.0 * mag)
        start = np.ceil(lo / step - 1e-9) * step
        ticks = np.round(np.arange(start, hi + step * 1e-9, step), 12)
        ticks = ticks[(ticks >= lo - 1e-12) & (ticks <= hi + 1e-12)]
        if ticks.size >= 2:
            return np.where(ticks == 0, 0.0, ticks)  # no "-0"
    return np.array([lo, hi])


@dataclass(frozen=True)
class Nomogram:
    """A fitted nomogram (immutable).

    Attributes:
        feature_names: Predictors, in the model's column order.
        coef: Coefficients per original unit of each predictor.
        intercept: Intercept on original units.
        lows: Lowest allowed value of each predictor.
        highs: Highest allowed value of each predictor.
        levels: For categorical predictors, the allowed levels (else None).
        labels: Display names.
        min_effect: min over the range of coef·x for each predictor.
        lp_per_point: Linear-predictor units per point (max_k R_k / 100).
    """

    feature_names: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    lows: np.ndarray
    highs: np.ndarray
    levels: tuple[tuple[float, ...] | None, ...]
    labels: tuple[str, ...]
    min_effect: np.ndarray = field(repr=False)
    lp_per_point: float = 0.0

    @property
    def max_points(self) -> np.ndarray:
        """Points of each predictor at its most risky allowed value (the largest is 100)."""
        return np.abs(self.coef) * (self.highs - self.lows) / self.lp_per_point

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [f for f in self.feature_names if f not in X.columns]
            if missing:
                raise StatsError(f"nomogram: columns missing from the data: {missing}")
            arr = X[list(self.feature_names)].to_numpy(dtype=float)
        else:
            arr = np.atleast_2d(np.asarray(X, dtype=float))
            if arr.shape[1] != len(self.feature_names):
                raise StatsError(
                    f"nomogram: expected {len(self.feature_names)} columns "
                    f"{list(self.feature_names)}, got {arr.shape[1]}"
                )
        if not np.isfinite(arr).all():
            raise StatsError("nomogram: the data contain missing values; impute them first")
        return arr

    def points(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Points of each predictor and ``total`` for each patient (rows of X)."""
        arr = self._matrix(X)
        pts = (arr * self.coef[None, :] - self.min_effect[None, :]) / self.lp_per_point
        out = pd.DataFrame(pts, columns=list(self.feature_names))
        if isinstance(X, pd.DataFrame):
            out.index = X.index
        out["total"] = pts.sum(axis=1)
        return out

    def linear_predictor_from_points(self, total: np.ndarray | float) -> np.ndarray:
        """Log-odds corresponding to total points."""
        return self.intercept + self.min_effect.sum() + np.asarray(total, dtype=float) * self.lp_per_point

    def probability_from_points(self, total: np.ndarray | float) -> np.ndarray:
        """Probability of the positive class (high grade) for total points."""
        return 1.0 / (1.0 + np.exp(-self.linear_predictor_from_points(total)))

    def points_for_probability(self, prob: np.ndarray | float) -> np.ndarray:
        """Total points giving probability ``prob`` (inverse of :meth:`probability_from_points`)."""
        q = np.asarray(prob, dtype=float)
        lp = np.log(q / (1.0 - q))
        return (lp - self.intercept - self.min_effect.sum()) / self.lp_per_point

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Probability via total points (equals the model's prediction)."""
        return self.probability_from_points(self.points(X)["total"].to_numpy())


def build_nomogram(
    coef: Sequence[float] | np.ndarray,
    intercept: float,
    feature_names: Sequence[str],
    ranges: Mapping[str, RangeSpec],
    *,
    scaler: Any = None,
    labels: Mapping[str, str] | None = None,
    categorical: Sequence[str] = (),
) -> Nomogram:
    """Build a nomogram from logistic-regression coefficients.

    Args:
        coef: Coefficients (on the scaled inputs when ``scaler`` is given).
        intercept: Intercept (same scale as ``coef``).
        feature_names: Predictor names in column order.
        ranges: For each predictor a tuple ``(low, high)`` in original units, or a *list* of its levels for a
            categorical/binary predictor (a tuple is also read as levels when the predictor is named in
            ``categorical`` or has other than two entries).
        scaler: Optional fitted standardiser with ``mean_`` and ``scale_`` (e.g. sklearn's
            ``StandardScaler``) applied before the model, so points are on original units.
        labels: Optional display names.
        categorical: Predictors whose ``ranges`` entry lists levels.

    Raises:
        StatsError: mismatched lengths, a missing range, or all coefficients zero.
    """
    names = tuple(str(f) for f in feature_names)
    b = np.asarray(coef, dtype=float).ravel()
    if b.size != len(names):
        raise StatsError(f"nomogram: {b.size} coefficients but {len(names)} feature names")
    b0 = float(np.asarray(intercept, dtype=float).ravel()[0])
    if scaler is not None:
        mean = getattr(scaler, "mean_", None)
        scale = getattr(scaler, "scale_", None)
        mean = np.zeros(b.size) if mean is None else np.asarray(mean, dtype=float)
        scale = np.ones(b.size) if scale is None else np.asarray(scale, dtype=float)
        if mean.size != b.size or scale.size != b.size:
            raise StatsError("nomogram: the scaler was fitted on a different number of features than the model")
        b0 = b0 - float(np.sum(b * mean / scale))
        b = b / scale
    lows, highs, levels = [], [], []
    for f in names:
        if f not in ranges:
            raise StatsError(f"nomogram: no range given for predictor {f!r}; pass ranges={{'{f}': (low, high)}}")
        spec = ranges[f]
        vals = np.asarray(spec, dtype=float).ravel()
        if vals.size == 0 or not np.isfinite(vals).all():
            raise StatsError(f"nomogram: range of {f!r} must be finite numbers; got {spec!r}")
        is_cat = f in categorical or isinstance(spec, list) or vals.size != 2
        levels.append(tuple(float(v) for v in np.unique(vals)) if is_cat else None)
        lows.append(float(vals.min()))
        highs.append(float(vals.max()))
    lo = np.array(lows)
    hi = np.array(highs)
    min_eff = np.minimum(b * lo, b * hi)
    spans = np.abs(b) * (hi - lo)
    if not spans.max() > 0:
        raise StatsError("nomogram: every predictor has zero effect over its range; nothing to draw")
    lab = labels or {}
    return Nomogram(
        feature_names=names,
        coef=b,
        intercept=b0,
        lows=lo,
        highs=hi,
        levels=tuple(levels),
        labels=tuple(str(lab.get(f, f)) for f in names),
        min_effect=min_eff,
        lp_per_point=float(spans.max() / 100.0),
    )


def nomogram_from_estimator(
    estimator: Any,
    feature_names: Sequence[str],
    ranges: Mapping[str, RangeSpec],
    *,
    labels: Mapping[str, str] | None = None,
    categorical: Sequence[str] = (),
) -> Nomogram:
    """Nomogram of a fitted binary ``LogisticRegression`` or a ``Pipeline`` of optional scaler(s) + it.

    The only step allowed before the classifier is a ``StandardScaler``; anything else (feature selection,
    PCA, other scalers …) makes points not expressible per original predictor and is refused.
    """
    from sklearn.preprocessing import StandardScaler

    steps = list(getattr(estimator, "steps", [("model", estimator)]))
    *pre, (_, clf) = steps
    if not hasattr(clf, "coef_") or not hasattr(clf, "intercept_"):
        raise StatsError("nomogram: the final estimator must be a fitted linear logistic model (coef_, intercept_)")
    coef = np.asarray(clf.coef_, dtype=float)
    if coef.ndim == 2 and coef.shape[0] != 1:
        raise StatsError("nomogram: only binary logistic models are supported")
    scaler = None
    for name, step in pre:
        if step in (None, "passthrough"):
            continue
        if not isinstance(step, StandardScaler):
            raise StatsError(
                f"nomogram: pipeline step {name!r} ({type(step).__name__}) is not a standardiser; a nomogram needs "
                "the model's inputs to be the original predictors"
            )
        if scaler is not None:
            raise StatsError("nomogram: more than one scaling step in the pipeline is not supported")
        scaler = step
    return build_nomogram(
        coef.ravel(),
        float(np.ravel(clf.intercept_)[0]),
        feature_names,
        ranges,
        scaler=scaler,
        labels=labels,
        categorical=categorical,
    )


def ranges_from_data(X: pd.DataFrame, max_levels: int = 5) -> dict[str, RangeSpec]:
    """Ranges for :func:`build_nomogram` from training data: a tuple (min, max), or the list of levels of a
    column with at most ``max_levels`` distinct values (e.g. sex [0, 1])."""
    out: dict[str, RangeSpec] = {}
    for c in X.columns:
        v = pd.to_numeric(X[c], errors="coerce").dropna().to_numpy(float)
        if v.size == 0:
            raise StatsError(f"nomogram: column {c!r} has no numeric values")
        u = np.unique(v)
        out[str(c)] = [float(x) for x in u] if u.size <= max_levels else (float(u.min()), float(u.max()))
    return out


def nomogram_table(nomo: Nomogram, n_ticks: int = 6) -> pd.DataFrame:
    """The nomogram's scales as a table (also what the figure draws).

    Returns:
        Long DataFrame with ``axis, label, value, points``: one block per predictor (its tick values and
        their points), then ``axis == "probability"`` rows (a probability and the total points giving it,
        within the achievable 0 – Σ max points).
    """
    rows = []
    for j, f in enumerate(nomo.feature_names):
        n_j = int(np.clip(nomo.max_points[j] / 100.0 * n_ticks + 1, 2, n_ticks))
        vals = (
            np.asarray(nomo.levels[j]) if nomo.levels[j] is not None else nice_ticks(nomo.lows[j], nomo.highs[j], n_j)
        )
        pts = (vals * nomo.coef[j] - nomo.min_effect[j]) / nomo.lp_per_point
        rows += [
            {"axis": f, "label": nomo.labels[j], "value": float(v), "points": float(p)}
            for v, p in zip(vals, pts, strict=True)
        ]
    total_max = float(nomo.max_points.sum())
    probs = np.asarray(_PROB_TICKS)
    tp = nomo.points_for_probability(probs)
    keep = (tp >= -1e-9) & (tp <= total_max + 1e-9)
    rows += [
        {"axis": "probability", "label": "Probability of high grade", "value": float(p), "points": float(t)}
        for p, t in zip(probs[keep], tp[keep], strict=True)
    ]
    return pd.DataFrame(rows, columns=["axis", "label", "value", "points"])
