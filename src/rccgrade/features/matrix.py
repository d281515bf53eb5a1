"""Matrices, labels and the column-selector base every fitted feature step works on (selection, harmonisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from rccgrade.errors import ModelError

__all__ = [
    "BinaryTargetMixin",
    "FeatureMatrixError",
    "FeatureTypeError",
    "FrameSelector",
    "as_frame",
    "binary_labels",
    "check_finite_numeric",
    "is_categorical_dtype",
    "numeric_block",
    "numeric_matrix",
    "output_like",
]


class FeatureMatrixError(ModelError, ValueError):
    """A feature matrix a step cannot use (wrong shape, missing or infinite values, other columns than in fit).

    Also a ``ValueError``, as scikit-learn's estimator contract expects of invalid input.
    """


class FeatureTypeError(ModelError, TypeError):
    """Feature values of the wrong type (text where numbers are needed); also a ``TypeError``."""


def numeric_matrix(X: pd.DataFrame, step: str) -> np.ndarray:
    """Float matrix of a complete numeric DataFrame; a clear error when values are missing."""
    try:
        arr = X.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeatureTypeError(
            f"{step} needs numeric features; put a TabularPreprocessor (one-hot encoding) before it ({exc})"
        ) from None
    if not np.all(np.isfinite(arr)):
        bad = X.columns[~np.all(np.isfinite(arr), axis=0)].tolist()
        raise FeatureMatrixError(
            f"{step} got missing or infinite values in {bad[:5]}; put a TabularPreprocessor (imputation) before it"
        )
    return arr


def check_finite_numeric(X: pd.DataFrame, step: str) -> None:
    """Raise as :func:`numeric_matrix` does unless every value is a finite number (no float64 copy made when
    the columns are already floats, e.g. a float32 deep block)."""
    kinds = set(X.dtypes)
    if kinds and all(pd.api.types.is_float_dtype(d) for d in kinds):
        arr = X.to_numpy()
        if np.isfinite(arr).all():
            return
    numeric_matrix(X, step)


def as_frame(
    X: Any, names: Sequence[str] | None = None, *, n_features: int | None = None, step: str = ""
) -> pd.DataFrame:
    """``X`` as a DataFrame (an array gets ``names`` or ``x0, x1 …`` as columns).

    A DataFrame is returned as it is. Anything else is validated like scikit-learn validates input (2-D,
    dense, real, at least one sample and one feature; ``n_features`` columns when given) and wrapped.

    Raises:
        FeatureMatrixError: not a valid feature matrix (the message says why).
        TypeError: sparse input (scikit-learn's message).
    """
    if isinstance(X, pd.DataFrame):
        return X
    from sklearn.utils.validation import check_array

    try:
        arr = check_array(X, dtype=None, ensure_all_finite=False, input_name="X")
    except ValueError as exc:
        raise FeatureMatrixError(str(exc)) from None
    if n_features is not None and arr.shape[1] != n_features:
        raise FeatureMatrixError(
            f"X has {arr.shape[1]} features, but {step or 'the step'} is expecting {n_features} features as input"
        )
    cols = list(names) if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=cols)


def output_like(X: Any, out: pd.DataFrame) -> Any:
    """``out`` as a DataFrame when the input ``X`` was one, else as a NumPy array (scikit-learn's convention;
    ``set_output(transform="pandas")`` still gives DataFrames)."""
    return out if isinstance(X, pd.DataFrame) else out.to_numpy()


def binary_labels(y: Any, step: str) -> np.ndarray:
    """Labels as a 0/1 int array; exactly two classes must be present (the larger value is class 1).

    0/1 labels (the study's) map to themselves.

    Raises:
        FeatureMatrixError: no labels, or not exactly two classes.
    """
    if y is None:
        raise FeatureMatrixError(f"{step} is supervised: it requires y to be passed, but the target y is None")
    arr = np.asarray(y).ravel()
    classes = np.unique(arr)
    if classes.size != 2:
        got = "one class" if classes.size == 1 else f"{classes.size} classes {classes.tolist()[:5]}"
        raise FeatureMatrixError(f"{step}: the outcome must have exactly two classes (low/high grade), got {got}")
    return (arr == classes[1]).astype(np.int64)


class BinaryTargetMixin:
    """Tags of a supervised feature step for a binary outcome (scikit-learn's checks then give it two classes)."""

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils._tags import ClassifierTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.target_tags.required = True
        tags.classifier_tags = ClassifierTags(multi_class=False)
        return tags


def is_categorical_dtype(dtype: Any) -> bool:
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def numeric_block(frame: pd.DataFrame) -> np.ndarray:
    """Float matrix of numeric columns (non-numeric entries become NaN)."""
    if all(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt) for dt in set(frame.dtypes)):
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class FrameSelector(TransformerMixin, BaseEstimator):
    """Base of column selectors: fit sets ``support_``; transform keeps those columns."""

    def _set_input(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]

    def _check_columns(self, X: pd.DataFrame) -> pd.DataFrame:
        names = list(self.feature_names_in_)
        if len(X.columns) == len(names) and X.columns.equals(pd.Index(names)):
            return X  # the usual case inside a chain: exactly the columns seen in fit, in order
        present = set(X.columns)
        missing = [c for c in names if c not in present]
        if missing:
            raise FeatureMatrixError(
                f"{type(self).__name__}: {len(missing)} feature(s) seen in training are missing: {missing[:5]}"
            )
        return X[names]

    def get_support(self) -> np.ndarray:
        """Boolean mask over the input features: True where kept."""
        return np.asarray(self.support_, dtype=bool)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the kept features."""
        return np.asarray(self.feature_names_in_, dtype=object)[self.get_support()]

    def transform(self, X: Any) -> pd.DataFrame:
        """Keep the selected columns (input may be a DataFrame with extra columns)."""
        frame = as_frame(X, list(self.feature_names_in_), n_features=self.n_features_in_, step=type(self).__name__)
        X_in, X = X, self._check_columns(frame)
        check_finite_numeric(X, type(self).__name__)  # the values fit saw were finite numbers; so must these be
        if not self.get_support().any():
            raise ModelError(
                f"{type(self).__name__} kept no feature (of {len(self.feature_names_in_)}, e.g. "
                f"{list(self.feature_names_in_)[:3]}) on the training patients; no feature survived selection — "
                "check the values or relax the selection settings"
            )
        return output_like(X_in, X.loc[:, list(self.get_feature_names_out())])
