"""Late fusion (the ``stacked`` arm): a meta-model on the logits of the other arms' out-of-fold probabilities.

The meta-model is a logistic regression whose source weights are constrained to be **non-negative**
(:class:`NonNegativeLogisticRegression`, fitted here by L-BFGS-B with bounds): an arm can only push the
fused probability the way its own probability points, so a source of pure noise — whose out-of-fold logits
are unrelated to the grade, or slightly anti-correlated with it as out-of-fold predictions of noise often
are — gets weight 0 instead of a negative weight that would "use" its noise. The intercept is free.

Objective (the same scaling as scikit-learn's ``LogisticRegression(C)``, so with no bound active the two
give the same solution)::

    minimise   Σ_i [log(1 + exp(z_i)) − y_i z_i] + ‖w‖² / (2C),   z = X w + b,   w ≥ 0 (b free)

``C=None`` drops the ridge term. The weights are exposed as ``coef_`` / ``intercept_`` (shapes (1, k) and
(1,), like scikit-learn's), so every consumer of a logistic meta-model (explanations, nomogram) reads
them unchanged; :attr:`StackedClassifier.weights_` maps each arm to its weight.

``meta="logistic"`` keeps the former unconstrained ``LogisticRegression(C=1)`` meta-model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.utils.validation import check_is_fitted, validate_data

from rccgrade.errors import ModelError
from rccgrade.models.targets import BinaryClassifierTags, binary_targets
from rccgrade.models.tuning import stratified_folds

__all__ = ["NonNegativeLogisticRegression", "StackedClassifier", "logit", "make_meta"]

_EPS = 1e-6
"""Probabilities are clipped to [ε, 1 − ε] before the logit (a base arm saying exactly 0 or 1)."""


def logit(p: Any) -> np.ndarray:
    """``log(p / (1 − p))`` after clipping ``p`` to [1e-6, 1 − 1e-6]; shape kept."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


class NonNegativeLogisticRegression(BinaryClassifierTags, ClassifierMixin, BaseEstimator):
    """Logistic regression with non-negative coefficients (free intercept), fitted by bounded L-BFGS.

    Args:
        C: Inverse ridge strength on the coefficients (scikit-learn's convention); None: no penalty.
        positive: Constrain every coefficient to ≥ 0 (False: the plain, unconstrained fit).
        fit_intercept: Fit an (unconstrained, unpenalised) intercept.
        tol: Gradient tolerance of L-BFGS-B (on the objective divided by the number of patients).
        max_iter: Iteration limit of L-BFGS-B.

    Attributes:
        coef_: Coefficients, shape (1, n_features), all ≥ 0 when ``positive``.
        intercept_: Intercept, shape (1,).
        n_iter_: Iterations used.
    """

    def __init__(
        self,
        C: float | None = 1.0,
        positive: bool = True,
        fit_intercept: bool = True,
        tol: float = 1e-10,
        max_iter: int = 10000,
    ) -> None:
        self.C = C
        self.positive = positive
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> NonNegativeLogisticRegression:
        """Minimise the penalised logistic loss under the bounds."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        t = binary_targets(self, y).astype(np.float64)
        if self.C is not None and not self.C > 0:
            raise ValueError(f"C must be > 0 or None; got {self.C!r}")
        n, k = X.shape
        ridge = 0.0 if self.C is None or np.isinf(self.C) else 1.0 / float(self.C)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], (theta[k] if self.fit_intercept else 0.0)
            z = X @ w + b
            loss = float(np.sum(np.logaddexp(0.0, z) - t * z) + 0.5 * ridge * (w @ w))
            r = expit(z) - t
            grad = np.empty_like(theta)
            grad[:k] = X.T @ r + ridge * w
            if self.fit_intercept:
                grad[k] = r.sum()
            return loss / n, grad / n

        lower = 0.0 if self.positive else None
        bounds = [(lower, None)] * k + ([(None, None)] if self.fit_intercept else [])
        theta0 = np.zeros(k + int(self.fit_intercept))
        if self.fit_intercept:
            prior = float(np.clip(t.mean(), _EPS, 1 - _EPS))
            theta0[k] = np.log(prior / (1 - prior))
        res = minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15},
        )
        w = res.x[:k].copy()
        if self.positive:
            w = np.maximum(w, 0.0)
        self.coef_ = w.reshape(1, -1)
        self.intercept_ = np.array([float(res.x[k]) if self.fit_intercept else 0.0])
        self.n_iter_ = np.array([int(res.nit)])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Logit ``X w + b``, shape (n,)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.asarray(X @ self.coef_.ravel() + self.intercept_[0])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """Class with the larger probability."""
        check_is_fitted(self, "coef_")
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]


def make_meta(kind: Literal["nonnegative", "logistic"] = "nonnegative", C: float | None = 1.0) -> BaseEstimator:
    """An unfitted meta-model: non-negative logistic regression (default) or plain logistic regression."""
    if kind == "nonnegative":
        return NonNegativeLogisticRegression(C=C)
    if kind == "logistic":
        return LogisticRegression(C=np.inf if C is None else C, max_iter=5000)
    raise ModelError(f"unknown stacking meta-model {kind!r}; use 'nonnegative' or 'logistic' (models.stacking_meta)")


def _validated(est: Any, X: Any, y: Any = "no_validation", *, reset: bool) -> tuple[Any, Any]:
    """scikit-learn's input validation; a DataFrame (a FeatureTable) is only checked, never converted."""
    frame = isinstance(X, pd.DataFrame)
    if isinstance(y, str) and y == "no_validation":
        return validate_data(est, X, reset=reset, skip_check_array=frame), None
    return validate_data(est, X, y, reset=reset, skip_check_array=frame)


class StackedClassifier(BinaryClassifierTags, ClassifierMixin, BaseEstimator):
    """Late fusion: a (non-negative) logistic meta-model on the logits of several arms' probabilities.

    ``fit`` fits each base arm on all data and the meta-model on their out-of-fold probabilities (so the
    meta-model learns how the arms behave on patients they were not fitted on).

    Args:
        estimators: ``(arm name, unfitted arm estimator)`` pairs.
        cv: Folds of the out-of-fold predictions.
        random_state: Seed of the folds.
        meta: ``"nonnegative"`` (weights ≥ 0, :class:`NonNegativeLogisticRegression`) or ``"logistic"``.
        C: Inverse ridge strength of the meta-model (None: none).
    """

    # bundles name the class where it was first defined (rccgrade.models.arms re-exports it)
    __module__ = "rccgrade.models.arms"

    def __init__(
        self,
        estimators: Sequence[tuple[str, Any]],
        cv: int = 5,
        random_state: int = 0,
        meta: Literal["nonnegative", "logistic"] = "nonnegative",
        C: float | None = 1.0,
    ) -> None:
        self.estimators = estimators
        self.cv = cv
        self.random_state = random_state
        self.meta = meta
        self.C = C

    def fit(self, X: pd.DataFrame, y: Any) -> StackedClassifier:
        """Fit the base arms and the meta-model (a FeatureTable goes to the arms as it is)."""
        X, y = _validated(self, X, y, reset=True)
        y = binary_targets(self, y)
        folds = stratified_folds(y, self.cv, self.random_state)
        fitted, oof = [], []
        for name, est in self.estimators:
            fitted.append((name, clone(est).fit(X, y)))
            oof.append(cross_val_predict(clone(est), X, y, cv=folds, method="predict_proba")[:, 1])
        return self._set_fitted(fitted, np.column_stack(oof), y)

    def _set_fitted(self, fitted: list[tuple[str, Any]], oof: np.ndarray, y: np.ndarray) -> StackedClassifier:
        self.estimators_ = list(fitted)
        self.meta_ = make_meta(getattr(self, "meta", "logistic"), getattr(self, "C", 1.0)).fit(logit(oof), y)
        if not hasattr(self, "classes_"):
            self.classes_ = np.array([0, 1])
        return self

    @classmethod
    def from_fitted(
        cls,
        fitted: Sequence[tuple[str, Any]],
        oof: np.ndarray,
        y: Any,
        cv: int = 5,
        random_state: int = 0,
        meta: Literal["nonnegative", "logistic"] = "nonnegative",
        C: float | None = 1.0,
    ) -> StackedClassifier:
        """Build from already-fitted arms and their OOF probabilities (no refitting of the arms)."""
        est = cls(estimators=[(n, clone(e)) for n, e in fitted], cv=cv, random_state=random_state, meta=meta, C=C)
        return est._set_fitted(list(fitted), np.asarray(oof), np.asarray(y).astype(np.int64))

    @property
    def weights_(self) -> dict[str, float]:
        """Arm → meta-model weight on its logit (≥ 0 with the non-negative meta-model)."""
        check_is_fitted(self, "meta_")
        coef = np.asarray(self.meta_.coef_, dtype=np.float64).ravel()
        return {name: float(w) for (name, _), w in zip(self.estimators_, coef, strict=True)}

    def base_probabilities(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each base arm's probability of high grade."""
        check_is_fitted(self, "meta_")
        if hasattr(self, "n_features_in_"):  # fitted here (not assembled by from_fitted): check the input
            X, _ = _validated(self, X, reset=False)
        return pd.DataFrame(
            {name: est.predict_proba(X)[:, 1] for name, est in self.estimators_}, index=getattr(X, "index", None)
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Meta-model probabilities, shape (n, 2)."""
        base = self.base_probabilities(X).to_numpy()
        return self.meta_.predict_proba(logit(base))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Class with the larger probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
