"""The per-source union every arm starts with, and PCA of one source's columns.

Both classes are part of saved model bundles, whose trusted-type list and pickles name them
``rccgrade.features.selection.<Class>`` (where they were first defined, and from where they are still
imported): ``__module__`` keeps that name, so bundles saved before and after the move load alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from rccgrade.errors import ModelError
from rccgrade.features.fit_cache import fit_chain
from rccgrade.features.matrix import FeatureMatrixError
from rccgrade.features.matrix import as_frame as _as_frame
from rccgrade.features.matrix import numeric_matrix as _numeric_matrix
from rccgrade.features.matrix import output_like as _output_like

log = logging.getLogger("rccgrade.features.selection")

__all__ = ["PrefixPCA", "SourceUnion"]

_BUNDLE_MODULE = "rccgrade.features.selection"


class PrefixPCA(TransformerMixin, BaseEstimator):
    """PCA of the columns starting with ``prefix`` (e.g. 2,048 deep features); other columns pass through.

    Args:
        prefix: Columns to reduce; None reduces every column.
        n_components: Number of components (int) or fraction of variance to keep (float in (0, 1)).
        whiten: Scale components to unit variance.

    Output columns are the untouched columns followed by ``<prefix>pcNNN`` (1-based).
    """

    __module__ = _BUNDLE_MODULE

    def __init__(self, prefix: str | None = "deep:", n_components: int | float = 0.95, whiten: bool = False) -> None:
        self.prefix = prefix
        self.n_components = n_components
        self.whiten = whiten

    def _split(self, X: pd.DataFrame) -> tuple[list[str], list[str]]:
        reduce = [c for c in X.columns if self.prefix is None or c.startswith(self.prefix)]
        keep = [c for c in X.columns if c not in set(reduce)]
        return reduce, keep

    def fit(self, X: Any, y: Any = None) -> PrefixPCA:
        """Fit the PCA basis on the training patients."""
        X = _as_frame(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.reduce_, self.passthrough_ = self._split(X)
        if self.reduce_:
            arr = _numeric_matrix(X[self.reduce_], "PrefixPCA")
            n_comp = self.n_components
            if isinstance(n_comp, int):
                n_comp = min(n_comp, *arr.shape)
            self.pca_ = PCA(n_components=n_comp, whiten=self.whiten, svd_solver="full").fit(arr)
        else:
            self.pca_ = None
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Pass-through columns, then the component names."""
        n = 0 if self.pca_ is None else int(self.pca_.n_components_)
        stem = self.prefix or ""
        return np.asarray(list(self.passthrough_) + [f"{stem}pc{i + 1:03d}" for i in range(n)], dtype=object)

    def transform(self, X: Any) -> pd.DataFrame:
        """Project the reduced columns on the training components (an array in gives an array out)."""
        X_in = X
        X = _as_frame(X, list(self.feature_names_in_), n_features=self.n_features_in_, step="PrefixPCA")
        missing = [c for c in [*self.reduce_, *self.passthrough_] if c not in X.columns]
        if missing:
            raise FeatureMatrixError(
                f"PrefixPCA: {len(missing)} feature(s) seen in training are missing: {missing[:5]}"
            )
        out = X[self.passthrough_].copy()
        if self.pca_ is not None:
            comp = self.pca_.transform(_numeric_matrix(X[self.reduce_], "PrefixPCA"))
            names = self.get_feature_names_out()[len(self.passthrough_) :]
            out = pd.concat([out, pd.DataFrame(comp, index=X.index, columns=list(names))], axis=1)
        return _output_like(X_in, out)


class SourceUnion(TransformerMixin, BaseEstimator):
    """Apply one transformer (pipeline) per feature source and concatenate the results.

    This is how arms take their inputs from a whole FeatureTable: each entry selects the columns starting
    with its prefix (``"clin:"``, ``"rad:"``, ``"deep:box:"`` …) and runs its own fitted chain on them, so
    every source is imputed, filtered and selected on its own before feature-level fusion.

    Args:
        transformers: ``(name, prefix, transformer)`` triples.
    """

    __module__ = _BUNDLE_MODULE

    def __init__(self, transformers: Sequence[tuple[str, str, Any]]) -> None:
        self.transformers = transformers

    def __sklearn_tags__(self) -> Any:
        """A FeatureTable has missing values (failed features, unrecorded clinical data): the chains impute them."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any = None) -> SourceUnion:
        """Fit each source's transformer on its columns (an array's columns are named ``x0, x1 …``)."""
        X = _as_frame(X, step="SourceUnion")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.transformers_: list[tuple[str, str, Any]] = []
        self.columns_: dict[str, list[str]] = {}
        columns = self.source_columns(X)
        for name, prefix, est in self.transformers:
            self._fit_source(name, prefix, est, X[columns[name]], y)
        return self

    def source_columns(self, X: pd.DataFrame) -> dict[str, list[str]]:
        """Source name → its columns of ``X`` (those starting with its prefix), in ``transformers`` order.

        Raises:
            ModelError: a source has no column in ``X``.
        """
        columns: dict[str, list[str]] = {}
        for name, prefix, _ in self.transformers:
            cols = [c for c in X.columns if c.startswith(prefix)]
            if not cols:
                raise ModelError(
                    f"no feature column starts with {prefix!r} (needed by {name!r}); the feature table has "
                    f"sources {sorted({c.rsplit(':', 1)[0] for c in X.columns})[:8]}"
                )
            columns[name] = cols
        return columns

    def _fit_source(self, name: str, prefix: str, est: Any, X: pd.DataFrame, y: Any) -> None:
        """Fit one source's chain on its columns ``X`` and add it to ``transformers_`` / ``columns_``.

        Raises:
            ModelError: no feature survived the chain.
        """
        fitted = fit_chain(est, X, y)  # shared with other arms inside fit_cache.shared_fits
        if len(fitted.get_feature_names_out()) == 0:
            raise ModelError(
                f"no feature of {name!r} survived preprocessing and selection on the training patients "
                f"({X.shape[1]} column(s) in); check the source's values or relax the selection settings"
            )
        self.transformers_.append((name, prefix, fitted))
        self.columns_[name] = list(X.columns)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Concatenated output names of every source."""
        names: list[str] = []
        for _, _, est in self.transformers_:
            names.extend(list(est.get_feature_names_out()))
        return np.asarray(names, dtype=object)

    def transform(self, X: Any) -> pd.DataFrame:
        """Transform each source and concatenate the columns (an array in gives an array out)."""
        check_is_fitted(self, "transformers_")
        X_in = X
        X = _as_frame(X, list(self.feature_names_in_), n_features=self.n_features_in_, step="SourceUnion")
        parts = []
        for name, _, est in self.transformers_:
            cols = self.columns_[name]
            missing = [c for c in cols if c not in X.columns]
            if missing:
                raise FeatureMatrixError(
                    f"{len(missing)} feature(s) of {name!r} seen in training are missing: {missing[:5]}"
                )
            out = est.transform(X[cols])
            if not isinstance(out, pd.DataFrame):
                out = pd.DataFrame(np.asarray(out), index=X.index, columns=list(est.get_feature_names_out()))
            parts.append(out)
        return _output_like(X_in, pd.concat(parts, axis=1))
