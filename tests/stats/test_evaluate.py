"""One-call evaluation of model arms: threshold from training only, tidy metrics, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rccgrade.config import StudyConfig
from rccgrade.errors import StatsError
from rccgrade.stats import (
    EvaluationSettings,
    auc_ci,
    evaluate_arms,
    evaluate_predictions,
    threshold_metrics,
    youden_threshold,
)


def _cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
    good = 1 / (1 + np.exp(-(1.2 * x + 0.1 * rng.normal(size=n))))
    weak = 1 / (1 + np.exp(-(0.4 * x + rng.normal(size=n))))
    return y, good, weak


FAST = EvaluationSettings(roc_band_bootstrap=50, n_bootstrap=200)


def test_evaluate_predictions_uses_training_threshold() -> None:
    yt, pt, _ = _cohort(150, 0)
    yv, pv, _ = _cohort(90, 1)
    ev = evaluate_predictions(yt, pt, yv, pv, FAST, seed=3)
    thr = youden_threshold(yt, pt).threshold
    assert ev.threshold == thr
    m = ev.metrics.set_index(["cohort", "metric"])
    ref = threshold_metrics(yv, pv, thr)
    for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert m.loc[("test", k), "value"] == pytest.approx(ref.loc[k, "value"])
    ci = auc_ci(yv, pv)
    assert m.loc[("test", "auc"), "ci_lower"] == pytest.approx(ci.lower)
    assert m.loc[("train", "hosmer_lemeshow_df"), "value"] == 8
    assert m.loc[("test", "hosmer_lemeshow_df"), "value"] == 10
    flat = ev.flat()
    assert flat["test.auc"] == pytest.approx(ci.auc) and len(flat["test.auc.ci"]) == 2
    assert set(ev.roc) == set(ev.decision_curve) == {"train", "test"}
    # a bundle's threshold is used as is
    ev2 = evaluate_predictions(yt, pt, yv, pv, FAST, threshold=0.5)
    assert ev2.threshold == 0.5


def test_bootstrap_evaluation_is_deterministic() -> None:
    yt, pt, _ = _cohort(100, 2)
    s = EvaluationSettings(ci_method="bootstrap", n_bootstrap=200, roc_band_bootstrap=20)
    a = evaluate_predictions(yt, pt, settings=s, seed=5).metrics
    b = evaluate_predictions(yt, pt, settings=s, seed=5).metrics
    c = evaluate_predictions(yt, pt, settings=s, seed=6).metrics
    assert a.equals(b)
    assert not a.equals(c)


def test_evaluate_arms_compares_and_names_cohort_errors() -> None:
    yt, gt, wt = _cohort(120, 4)
    yv, gv, wv = _cohort(80, 5)
    res = evaluate_arms(yt, {"good": gt, "weak": wt}, yv, {"good": gv, "weak": wv}, FAST)
    assert set(res["arms"]) == {"good", "weak"}
    assert set(res["metrics"].arm) == {"good", "weak"}
    assert len(res["comparisons"]["test"]) == 1
    assert set(res["decision_curves"]["test"].variable) == {"good", "weak", "all", "none"}
    with pytest.raises(StatsError, match="arm 'good', test cohort"):
        evaluate_predictions(yt, gt, np.zeros(10), np.full(10, 0.3), FAST, arm="good")


def test_settings_composed_and_validated() -> None:
    cfg = StudyConfig()
    assert cfg.evaluation.ci_method == "delong" and cfg.evaluation.dca_threshold_max == 0.99
    with pytest.raises(ValidationError):
        EvaluationSettings(dca_threshold_min=0.5, dca_threshold_max=0.4)
    with pytest.raises(ValidationError):
        EvaluationSettings(unknown=1)  # type: ignore[call-arg]
