"""rccgrade.stats: evaluation statistics that agree with R (pROC, rms, dcurves) without needing R.

ROC/AUC with DeLong variance, CIs and tests (:mod:`.roc`), the training-derived decision threshold and its
metrics (:mod:`.thresholds`), calibration (:mod:`.calibration`), decision curves (:mod:`.dca`), the
nomogram of a logistic model (:mod:`.nomogram`), one-call evaluation of model arms (:mod:`.evaluate`) and the
corrected resampled t-test of cross-validated scores (:mod:`.resampled`).
"""

from rccgrade.stats.calibration import (
    CalibrationFit,
    HosmerLemeshowResult,
    brier_score,
    calibration_curve,
    calibration_intercept,
    calibration_slope,
    hosmer_lemeshow,
    lowess,
    smoothed_calibration,
)
from rccgrade.stats.dca import decision_curve, default_thresholds, net_benefit
from rccgrade.stats.evaluate import ArmEvaluation, evaluate_arms, evaluate_predictions
from rccgrade.stats.nomogram import (
    Nomogram,
    build_nomogram,
    nice_ticks,
    nomogram_from_estimator,
    nomogram_table,
    ranges_from_data,
)
from rccgrade.stats.resampled import ResampledTTestResult, corrected_resampled_ttest
from rccgrade.stats.roc import (
    AucCI,
    DelongResult,
    DelongTestResult,
    auc,
    auc_ci,
    bootstrap_auc,
    compare_models,
    delong,
    delong_matrix,
    delong_test,
    delong_test_unpaired,
    holm,
    roc_ci_band,
    roc_curve_points,
)
from rccgrade.stats.settings import EvaluationSettings
from rccgrade.stats.thresholds import (
    ConfusionCounts,
    YoudenResult,
    confusion_counts,
    threshold_metrics,
    wilson_ci,
    youden_threshold,
)

__all__ = [
    "ArmEvaluation",
    "AucCI",
    "CalibrationFit",
    "ConfusionCounts",
    "DelongResult",
    "DelongTestResult",
    "EvaluationSettings",
    "HosmerLemeshowResult",
    "Nomogram",
    "ResampledTTestResult",
    "YoudenResult",
    "auc",
    "auc_ci",
    "bootstrap_auc",
    "brier_score",
    "build_nomogram",
    "calibration_curve",
    "calibration_intercept",
    "calibration_slope",
    "compare_models",
    "confusion_counts",
    "corrected_resampled_ttest",
    "decision_curve",
    "default_thresholds",
    "delong",
    "delong_matrix",
    "delong_test",
    "delong_test_unpaired",
    "evaluate_arms",
    "evaluate_predictions",
    "holm",
    "hosmer_lemeshow",
    "lowess",
    "net_benefit",
    "nice_ticks",
    "nomogram_from_estimator",
    "nomogram_table",
    "ranges_from_data",
    "roc_ci_band",
    "roc_curve_points",
    "smoothed_calibration",
    "threshold_metrics",
    "wilson_ci",
    "youden_threshold",
]
