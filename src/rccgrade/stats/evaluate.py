"""One call per model arm: every statistic of the study's evaluation, for the training and test cohorts.

The decision threshold is chosen on the training cohort only (Youden's J) — or taken from the model
bundle — and applied unchanged to the test cohort. Hosmer–Lemeshow uses g − 2 degrees of freedom on the
training (development) cohort and g on the test (validation) cohort.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import StatsError
from rccgrade.stats._validate import ArrayLike, as_labels, as_scores
from rccgrade.stats.calibration import (
    brier_score,
    calibration_curve,
    calibration_intercept,
    calibration_slope,
    hosmer_lemeshow,
    smoothed_calibration,
)
from rccgrade.stats.dca import decision_curve, default_thresholds
from rccgrade.stats.roc import auc_ci, compare_models, roc_ci_band, roc_curve_points
from rccgrade.stats.settings import EvaluationSettings
from rccgrade.stats.thresholds import YoudenResult, threshold_metrics, youden_threshold

__all__ = ["ArmEvaluation", "evaluate_arms", "evaluate_predictions"]

_COHORT_KIND = {"train": "development", "test": "validation"}


@dataclass
class ArmEvaluation:
    """Evaluation of one model arm.

    Attributes:
        threshold: The training-derived decision threshold (Youden), or the one supplied.
        metrics: Tidy table ``cohort, metric, value, ci_lower, ci_upper`` (AUC, accuracy, sensitivity,
            specificity, PPV, NPV, F1, Brier, calibration intercept/slope, Hosmer–Lemeshow statistic/df/p,
            n, n_positive).
        roc: ``cohort -> ROC curve points``.
        roc_band: ``cohort -> pointwise bootstrap band`` (empty when disabled).
        calibration: ``cohort -> binned calibration curve``.
        smoothed_calibration: ``cohort -> LOWESS curve``.
        hosmer_lemeshow_table: ``cohort -> HL groups``.
        decision_curve: ``cohort -> net benefit long table`` (this arm + treat all/none).
        predictions: ``cohort -> DataFrame(y, p)`` as evaluated (for plots of the risk distribution).
    """

    threshold: float
    metrics: pd.DataFrame
    roc: dict[str, pd.DataFrame] = field(default_factory=dict)
    roc_band: dict[str, pd.DataFrame] = field(default_factory=dict)
    calibration: dict[str, pd.DataFrame] = field(default_factory=dict)
    smoothed_calibration: dict[str, pd.DataFrame] = field(default_factory=dict)
    hosmer_lemeshow_table: dict[str, pd.DataFrame] = field(default_factory=dict)
    decision_curve: dict[str, pd.DataFrame] = field(default_factory=dict)
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """``{"<cohort>.<metric>": value, "<cohort>.<metric>.ci": [lo, hi]}`` for metrics.json."""
        out: dict[str, Any] = {"threshold": self.threshold}
        for r in self.metrics.itertuples(index=False):
            out[f"{r.cohort}.{r.metric}"] = None if pd.isna(r.value) else float(r.value)
            if not (pd.isna(r.ci_lower) and pd.isna(r.ci_upper)):
                out[f"{r.cohort}.{r.metric}.ci"] = [float(r.ci_lower), float(r.ci_upper)]
        return out


def _seed(seed: int, settings: EvaluationSettings, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) + settings.seed_offset, *extra]))


def _row(cohort: str, metric: str, value: float, lo: float = np.nan, hi: float = np.nan) -> dict[str, Any]:
    return {"cohort": cohort, "metric": metric, "value": float(value), "ci_lower": float(lo), "ci_upper": float(hi)}


def _cohort_stats(
    name: str, y: np.ndarray, p: np.ndarray, thr: float, settings: EvaluationSettings, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], dict[str, pd.DataFrame]]:
    lvl = settings.ci_level
    rows = [_row(name, "n", y.size), _row(name, "n_positive", int(y.sum()))]
    ci = auc_ci(
        y,
        p,
        method=settings.ci_method,
        level=lvl,
        n_bootstrap=settings.n_bootstrap,
        seed=rng,
        stratified=settings.bootstrap_stratified,
    )
    rows.append(_row(name, "auc", ci.auc, ci.lower, ci.upper))
    tm = threshold_metrics(y, p, thr, level=lvl)
    rows += [_row(name, m, r.value, r.ci_lower, r.ci_upper) for m, r in tm.iterrows()]
    rows.append(_row(name, "brier", brier_score(y, p)))
    ci_int = calibration_intercept(y, p, level=lvl)
    rows.append(_row(name, "calibration_intercept", ci_int.estimate, ci_int.ci_lower, ci_int.ci_upper))
    ci_sl = calibration_slope(y, p, level=lvl)
    rows.append(_row(name, "calibration_slope", ci_sl.estimate, ci_sl.ci_lower, ci_sl.ci_upper))
    curves: dict[str, pd.DataFrame] = {}
    try:
        hl = hosmer_lemeshow(y, p, n_groups=settings.hl_groups, cohort=_COHORT_KIND.get(name, "validation"))
        rows += [
            _row(name, "hosmer_lemeshow_statistic", hl.statistic),
            _row(name, "hosmer_lemeshow_df", hl.df),
            _row(name, "hosmer_lemeshow_p", hl.p_value),
        ]
        curves["hl"] = hl.table
    except StatsError:
        rows += [
            _row(name, m, np.nan) for m in ("hosmer_lemeshow_statistic", "hosmer_lemeshow_df", "hosmer_lemeshow_p")
        ]
        curves["hl"] = pd.DataFrame()
    curves["roc"] = roc_curve_points(y, p)
    curves["band"] = (
        roc_ci_band(y, p, level=lvl, n_bootstrap=settings.roc_band_bootstrap, seed=rng)
        if settings.roc_band_bootstrap > 0
        else pd.DataFrame(columns=["fpr", "tpr", "tpr_lower", "tpr_upper"])
    )
    curves["cal"] = calibration_curve(y, p, settings.calibration_bins, settings.calibration_strategy, level=lvl)
    curves["smooth"] = smoothed_calibration(y, p, frac=settings.lowess_frac)
    return rows, curves


def evaluate_predictions(
    y_train: ArrayLike,
    p_train: ArrayLike,
    y_test: ArrayLike | None = None,
    p_test: ArrayLike | None = None,
    settings: EvaluationSettings | None = None,
    *,
    seed: int = 0,
    threshold: float | None = None,
    arm: str = "model",
) -> ArmEvaluation:
    """Evaluate one arm's predicted probabilities on the training and (optionally) test cohorts.

    Args:
        y_train: 0/1 outcomes of the training patients.
        p_train: Their predicted probabilities (out-of-fold where the model was tuned by CV).
        y_test: 0/1 outcomes of the test patients, or None.
        p_test: Their predicted probabilities, or None.
        settings: Evaluation settings (defaults if None).
        seed: Study seed (``settings.seed_offset`` is added) for the bootstrap.
        threshold: Decision threshold from the model bundle; if None it is chosen on the training data.
        arm: Name of the arm (used in error messages and the DCA table).

    Returns:
        :class:`ArmEvaluation`.

    Raises:
        StatsError: naming the arm and cohort, when a cohort has one class only, NaN predictions, etc.
    """
    settings = settings or EvaluationSettings()
    cohorts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, y, p in (("train", y_train, p_train), ("test", y_test, p_test)):
        if y is None and p is None:
            continue
        if y is None or p is None:
            raise StatsError(f"arm {arm!r}: give both outcomes and predictions of the {name} cohort")
        try:
            yy = as_labels(y, name=f"{name} outcomes")
            cohorts[name] = (yy, as_scores(p, yy.size, name=f"{arm} {name} predictions", probability=True))
        except StatsError as exc:
            raise StatsError(f"arm {arm!r}, {name} cohort: {exc.message}") from None
    if threshold is None:
        if "train" not in cohorts:
            raise StatsError(f"arm {arm!r}: a threshold needs training predictions (or pass the bundle's threshold)")
        yt: YoudenResult = youden_threshold(*cohorts["train"])
        thr = yt.threshold
    else:
        thr = float(threshold)
    rows: list[dict[str, Any]] = []
    ev = ArmEvaluation(threshold=thr, metrics=pd.DataFrame())
    t = default_thresholds(settings.dca_threshold_min, settings.dca_threshold_max, settings.dca_threshold_step)
    for i, (name, (y, p)) in enumerate(cohorts.items()):
        r, curves = _cohort_stats(name, y, p, thr, settings, _seed(seed, settings, i))
        rows += r
        ev.roc[name] = curves["roc"]
        ev.roc_band[name] = curves["band"]
        ev.calibration[name] = curves["cal"]
        ev.smoothed_calibration[name] = curves["smooth"]
        ev.hosmer_lemeshow_table[name] = curves["hl"]
        ev.decision_curve[name] = decision_curve(y, {arm: p}, t)
        ev.predictions[name] = pd.DataFrame({"y": y, "p": p})
    ev.metrics = pd.DataFrame(rows, columns=["cohort", "metric", "value", "ci_lower", "ci_upper"])
    return ev


def evaluate_arms(
    y_train: ArrayLike,
    p_train: Mapping[str, ArrayLike],
    y_test: ArrayLike | None = None,
    p_test: Mapping[str, ArrayLike] | None = None,
    settings: EvaluationSettings | None = None,
    *,
    seed: int = 0,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Evaluate several arms on the same patients and compare them.

    Returns:
        ``{"arms": {arm: ArmEvaluation}, "metrics": tidy table with an ``arm`` column,
        "comparisons": {cohort: pairwise paired DeLong table (Holm-adjusted)}, "decision_curves":
        {cohort: long DCA table of every arm + treat all/none}}``.
    """
    settings = settings or EvaluationSettings()
    thresholds = dict(thresholds or {})
    p_test = p_test or {}
    arms: dict[str, ArmEvaluation] = {}
    for a, p in p_train.items():
        arms[a] = evaluate_predictions(
            y_train,
            p,
            y_test if a in p_test else None,
            p_test.get(a),
            settings,
            seed=seed,
            threshold=thresholds.get(a),
            arm=a,
        )
    metrics = pd.concat([ev.metrics.assign(arm=a) for a, ev in arms.items()], ignore_index=True)
    metrics = metrics[["arm", "cohort", "metric", "value", "ci_lower", "ci_upper"]]
    comparisons: dict[str, pd.DataFrame] = {}
    curves: dict[str, pd.DataFrame] = {}
    t = default_thresholds(settings.dca_threshold_min, settings.dca_threshold_max, settings.dca_threshold_step)
    for cohort, y, preds in (("train", y_train, dict(p_train)), ("test", y_test, dict(p_test))):
        if y is None or not preds:
            continue
        if len(preds) >= 2:
            comparisons[cohort] = compare_models(
                y, preds, level=settings.ci_level, correction=settings.multiple_testing
            )
        curves[cohort] = decision_curve(y, preds, t)
    return {"arms": arms, "metrics": metrics, "comparisons": comparisons, "decision_curves": curves}
