"""Matrices, labels and the column-selector base every fitted feature step works on (selection, harmonisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from rccgrade.errors import ModelError

__all__ = ["FrameSelector", "as_frame", "binary_labels", "is_categorical_dtype", "numeric_block", "numeric_matrix"]


def numeric_matrix(X: pd.DataFrame, step: str) -> np.ndarray:
    """Float matrix of a complete numeric DataFrame; a clear error when values are missing."""
    try:
        arr = X.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{step} needs numeric features; put a TabularPreprocessor (one-hot encoding) before it ({exc})"
        ) from None
    if not np.all(np.isfinite(arr)):
        bad = X.columns[~np.all(np.isfinite(arr), axis=0)].tolist()
        raise ModelError(
            f"{step} got missing or infinite values in {bad[:5]}; put a TabularPreprocessor (imputation) before it"
        )
    return arr


def as_frame(X: Any, names: Sequence[str] | None = None) -> pd.DataFrame:
    """``X`` as a DataFrame (an array gets ``names`` or ``x0, x1 …`` as columns)."""
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ModelError(f"expected a 2-D feature matrix, got shape {arr.shape}")
    cols = list(names) if names is not None and len(names) == arr.shape[1] else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=cols)


def binary_labels(y: Any, step: str) -> np.ndarray:
    """Labels as a 0/1 int array; both classes must be present."""
    if y is None:
        raise ModelError(f"{step} is supervised and needs the labels y")
    arr = np.asarray(y)
    try:
        arr = arr.astype(np.int64)
    except (TypeError, ValueError):
        raise ModelError(f"{step}: labels must be 0/1") from None
    if set(np.unique(arr).tolist()) != {0, 1}:
        raise ModelError(f"{step}: labels must contain both classes 0 and 1, got {sorted(set(arr.tolist()))}")
    return arr


def is_categorical_dtype(dtype: Any) -> bool:
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def numeric_block(frame: pd.DataFrame) -> np.ndarray:
    """Float matrix of numeric columns (non-numeric entries become NaN)."""
    if all(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt) for dt in frame.dtypes):
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class FrameSelector(TransformerMixin, BaseEstimator):
    """Base of column selectors: fit sets ``support_``; transform keeps those columns."""

    def _set_input(self, X: pd.DataFrame) -> None:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]

    def _check_columns(self, X: pd.DataFrame) -> pd.DataFrame:
        names = list(self.feature_names_in_)
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ModelError(
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
        X = self._check_columns(as_frame(X, list(self.feature_names_in_)))
        if not self.get_support().any():
            raise ModelError(
                f"{type(self).__name__} kept no feature (of {len(self.feature_names_in_)}, e.g. "
                f"{list(self.feature_names_in_)[:3]}) on the training patients; no feature survived selection — "
                "check the values or relax the selection settings"
            )
        return X.loc[:, list(self.get_feature_names_out())]
