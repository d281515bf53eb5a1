"""The numeric matrix every fitted feature step works on (shared by selection and harmonisation)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rccgrade.errors import ModelError

__all__ = ["numeric_matrix"]


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
