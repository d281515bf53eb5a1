"""Classifiers of the model arms and their default hyper-parameter grids.

Every classifier handles class imbalance (high grade is typically 20–35 % of ccRCC). Logistic regression is
fitted *unweighted*: reweighting classes shifts its intercept by log(n_negative / n_positive), so its
probabilities — which feed the calibration analysis, decision curves and the nomogram — would be biased
towards 0.5 (a calibration intercept of ≈ −0.6 at 35 % prevalence); its imbalance is handled by the decision
threshold, chosen on training data (Youden). ``logistic_enet`` is the same model with an elastic-net
penalty (saga; ``C`` and ``l1_ratio`` tuned), so coefficients of noise features shrink to zero.
SVM, random forest and LightGBM reweight classes by inverse frequency (``class_weight="balanced"``);
XGBoost gets ``scale_pos_weight = n_negative / n_positive`` computed on the data it is fitted on (so inside
CV it is a per-fold quantity, not a whole-cohort one). XGBoost and LightGBM receive plain arrays, because
their feature-name rules reject FeatureTable names such as ``rad:arterial:…``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from rccgrade.errors import ConfigError
from rccgrade.models.targets import BinaryClassifierTags, binary_targets

CLASSIFIERS: tuple[str, ...] = ("logistic", "logistic_enet", "svm", "random_forest", "xgboost", "lightgbm")

DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "logistic": {"C": [0.01, 0.1, 1.0, 10.0]},
    "logistic_enet": {"C": [0.03, 0.1, 0.3, 1.0], "l1_ratio": [0.2, 0.5, 0.8]},
    "svm": {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.01]},
    "random_forest": {"max_depth": [3, 5, None], "min_samples_leaf": [1, 5]},
    "xgboost": {"max_depth": [2, 3, 4], "learning_rate": [0.03, 0.1], "n_estimators": [100, 300]},
    "lightgbm": {"num_leaves": [4, 8, 16], "learning_rate": [0.03, 0.1], "n_estimators": [100, 300]},
}
"""Built-in grids (parameter names of the estimators made by :func:`make_classifier`)."""


def _labels01(y: Any) -> np.ndarray:
    """Labels as an int64 0/1 array."""
    return np.asarray(y).astype(np.int64)


class CalibratedSVM(ClassifierMixin, BaseEstimator):
    """RBF support-vector machine with Platt-scaled probabilities.

    The SVM's decision values are mapped to probabilities by a sigmoid fitted with internal stratified
    CV (``CalibratedClassifierCV(method="sigmoid")``), i.e. Platt scaling on held-out folds.

    Args:
        C: Penalty; larger fits the training data harder.
        gamma: RBF kernel width (``"scale"`` = 1 / (n_features · Var X)).
        kernel: SVC kernel.
        cv: Folds of the calibration CV.
        random_state: Seed of the calibration folds.
    """

    def __init__(
        self, C: float = 1.0, gamma: str | float = "scale", kernel: str = "rbf", cv: int = 3, random_state: int = 0
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.kernel = kernel
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> CalibratedSVM:
        """Fit the SVM and its Platt calibration."""
        y = _labels01(y)
        svc = SVC(
            C=self.C, gamma=self.gamma, kernel=self.kernel, class_weight="balanced", random_state=self.random_state
        )
        n_splits = int(max(2, min(self.cv, np.bincount(y).min())))
        self.model_ = CalibratedClassifierCV(
            svc, method="sigmoid", cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        ).fit(np.asarray(X, dtype=np.float64), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, shape (n, 2)."""
        return self.model_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class _BoosterOnArrays:
    """Prediction side shared by the boosted-tree wrappers: the fitted ``model_`` reads plain float arrays.

    XGBoost and LightGBM reject FeatureTable column names (``rad:arterial:…``), so both wrappers fit and predict
    on arrays; importances are the booster's own (gain for XGBoost, split counts for LightGBM).
    """

    model_: Any
    classes_: np.ndarray

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)  # type: ignore[arg-type]
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        """Importances of the fitted booster."""
        return np.asarray(self.model_.feature_importances_)


class BalancedXGBClassifier(BinaryClassifierTags, _BoosterOnArrays, ClassifierMixin, BaseEstimator):
    """XGBoost gradient boosting with ``scale_pos_weight`` set from the training labels.

    Args:
        n_estimators: Boosting rounds.
        max_depth: Tree depth.
        learning_rate: Shrinkage.
        subsample: Row subsampling per tree.
        colsample_bytree: Column subsampling per tree.
        random_state: Seed.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> BalancedXGBClassifier:
        """Fit with the class ratio of these labels."""
        import xgboost

        X, y = validate_data(self, X, y, dtype=np.float64)
        y = binary_targets(self, y)
        n_pos = max(int(y.sum()), 1)
        self.scale_pos_weight_ = float((y.size - n_pos) / n_pos)
        self.model_ = xgboost.XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            scale_pos_weight=self.scale_pos_weight_,
            random_state=self.random_state,
            n_jobs=1,
            tree_method="hist",
            eval_metric="logloss",
        ).fit(X, y)
        return self


class BalancedLGBMClassifier(BinaryClassifierTags, _BoosterOnArrays, ClassifierMixin, BaseEstimator):
    """LightGBM gradient boosting with balanced class weights, deterministic single-threaded training.

    Args:
        n_estimators: Boosting rounds.
        num_leaves: Leaves per tree.
        learning_rate: Shrinkage.
        min_child_samples: Minimum patients per leaf.
        subsample: Row subsampling (bagging) fraction.
        colsample_bytree: Column subsampling fraction.
        random_state: Seed.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        num_leaves: int = 8,
        learning_rate: float = 0.05,
        min_child_samples: int = 10,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> BalancedLGBMClassifier:
        """Fit on plain arrays."""
        import lightgbm

        X, y = validate_data(self, X, y, dtype=np.float64)
        y = binary_targets(self, y)
        self.model_ = lightgbm.LGBMClassifier(
            n_estimators=self.n_estimators,
            num_leaves=self.num_leaves,
            learning_rate=self.learning_rate,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=self.colsample_bytree,
            class_weight="balanced",
            random_state=self.random_state,
            n_jobs=1,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        ).fit(X, y)
        return self


def make_classifier(name: str, seed: int = 0) -> BaseEstimator:
    """A new, unfitted classifier with imbalance handling.

    Args:
        name: One of :data:`CLASSIFIERS`.
        seed: Seed of any randomness in the classifier.

    Raises:
        ConfigError: unknown classifier name.
    """
    if name == "logistic":
        return LogisticRegression(C=1.0, max_iter=5000, solver="lbfgs")
    if name == "logistic_enet":
        return LogisticRegression(C=0.3, l1_ratio=0.5, solver="saga", max_iter=5000, tol=1e-4, random_state=seed)
    if name == "svm":
        return CalibratedSVM(random_state=seed)
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=300, class_weight="balanced", min_samples_leaf=2, random_state=seed, n_jobs=1
        )
    if name == "xgboost":
        return BalancedXGBClassifier(random_state=seed)
    if name == "lightgbm":
        return BalancedLGBMClassifier(random_state=seed)
    raise ConfigError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)} (models.classifier)")


def default_grid(name: str, overrides: dict[str, dict[str, list[Any]]] | None = None) -> dict[str, list[Any]]:
    """Hyper-parameter grid of a classifier: the override when given, else the built-in grid."""
    if overrides and name in overrides:
        return dict(overrides[name])
    if name not in DEFAULT_GRIDS:
        raise ConfigError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)}")
    return dict(DEFAULT_GRIDS[name])
