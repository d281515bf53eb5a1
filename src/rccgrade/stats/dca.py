"""Decision curve analysis (Vickers & Elkin 2006): net benefit and interventions avoided.

Matches R's ``dcurves::dca()`` for binary outcomes (and the Python ``dcurves`` port):

* a patient is *treated* when ``p >= threshold``; at a threshold of exactly 0 the comparison uses 1e-9
  instead (R replaces 0 by ``10e-10``), so a prediction of exactly 0 is not treated;
* net benefit = TP/n − FP/n · pt/(1 − pt) − harm;
* net interventions avoided (per ``nper`` patients) = (NB_model − NB_treat-all) / (pt/(1 − pt)) · nper,
  which is −inf/NaN at pt = 0, as in R;
* "Treat All" treats everybody, "Treat None" nobody (net benefit 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike, as_labels, as_scores

__all__ = ["decision_curve", "default_thresholds", "net_benefit"]

_ZERO_THRESHOLD = 1e-9  # R dcurves: 10e-10


def default_thresholds(start: float = 0.0, stop: float = 0.99, step: float = 0.01) -> np.ndarray:
    """Thresholds ``start, start+step, …, stop`` (inclusive), rounded to avoid floating drift."""
    if step <= 0 or stop < start:
        raise StatsError(f"invalid threshold range {start}–{stop} step {step}")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 10)


def _check_thresholds(thresholds: ArrayLike) -> np.ndarray:
    t = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise StatsError("thresholds must be a non-empty 1-D sequence of probabilities")
    if (t < 0).any() or (t >= 1).any() or not np.isfinite(t).all():
        raise StatsError(f"thresholds must lie in [0, 1); got range [{t.min()}, {t.max()}]")
    return t


def _rates(y: np.ndarray, p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test-positive, true-positive and false-positive rates (per patient) at each threshold, vectorised."""
    n = y.size
    eff = np.where(t == 0.0, _ZERO_THRESHOLD, t)
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    tp = pos.size - np.searchsorted(pos, eff, side="left")
    fp = neg.size - np.searchsorted(neg, eff, side="left")
    return (tp + fp) / n, tp / n, fp / n


def net_benefit(y: ArrayLike, p: ArrayLike, thresholds: ArrayLike, harm: float = 0.0) -> np.ndarray:
    """Net benefit of treating patients with ``p >= threshold`` at each threshold probability.

    Args:
        y: 0/1 outcomes.
        p: Predicted probabilities in [0, 1].
        thresholds: Threshold probabilities in [0, 1).
        harm: Harm of the test itself, subtracted from the net benefit.

    Returns:
        Net benefit per threshold.
    """
    yy = as_labels(y, require_both=False)
    pp = as_scores(p, yy.size, name="predicted probability", probability=True)
    t = _check_thresholds(thresholds)
    _, tp, fp = _rates(yy, pp, t)
    with np.errstate(divide="ignore"):
        odds = t / (1.0 - t)
    return tp - odds * fp - harm


def decision_curve(
    y: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    thresholds: ArrayLike | None = None,
    *,
    harm: Mapping[str, float] | None = None,
    nper: float = 1.0,
) -> pd.DataFrame:
    """Decision curves of several models plus Treat All and Treat None, in dcurves' long format.

    Args:
        y: 0/1 outcomes of the cohort.
        predictions: ``model name -> predicted probabilities``.
        thresholds: Threshold probabilities; default 0, 0.01, …, 0.99.
        harm: Optional ``model name -> harm``.
        nper: Scale of interventions avoided (e.g. 100 = per 100 patients).

    Returns:
        Long DataFrame with columns ``variable, label, n, threshold, pos_rate, test_pos_rate, tp_rate,
        fp_rate, harm, net_benefit, net_intervention_avoided``; models first (in the given order), then
        ``all`` ("Treat All") and ``none`` ("Treat None").

    Raises:
        StatsError: invalid outcomes/probabilities/thresholds, or a model named ``all``/``none``.
    """
    yy = as_labels(y, require_both=False)
    t = _check_thresholds(default_thresholds() if thresholds is None else thresholds)
    harm = dict(harm or {})
    clash = {"all", "none"} & {str(k) for k in predictions}
    if clash:
        raise StatsError(f"model names {sorted(clash)} are reserved for Treat All / Treat None; rename them")
    n = yy.size
    prev = float(yy.mean())
    with np.errstate(divide="ignore"):
        odds = t / (1.0 - t)
    rows: list[pd.DataFrame] = []

    def block(var: str, label: str, tpr: np.ndarray, tp: np.ndarray, fp: np.ndarray, h: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "variable": var,
                "label": label,
                "n": n,
                "threshold": t,
                "pos_rate": prev,
                "test_pos_rate": tpr,
                "tp_rate": tp,
                "fp_rate": fp,
                "harm": h,
                "net_benefit": tp - odds * fp - h,
            }
        )

    for name, p in predictions.items():
        pp = as_scores(p, n, name=f"predicted probability of {name!r}", probability=True)
        rows.append(block(str(name), str(name), *_rates(yy, pp, t), float(harm.get(str(name), 0.0))))
    ones = np.ones_like(t)
    rows.append(block("all", "Treat All", ones, prev * ones, (1.0 - prev) * ones, float(harm.get("all", 0.0))))
    zeros = np.zeros_like(t)
    rows.append(block("none", "Treat None", zeros, zeros, zeros, 0.0))
    out = pd.concat(rows, ignore_index=True)
    nb_all = np.tile(out.loc[out["variable"] == "all", "net_benefit"].to_numpy(), len(rows))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["net_intervention_avoided"] = (out["net_benefit"].to_numpy() - nb_all) / np.tile(odds, len(rows)) * nper
    return out
