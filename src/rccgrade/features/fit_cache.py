"""Share identical per-source chain fits between the arms of one models-stage task.

The ``combined`` arm runs, for every source, the very chain the single-source arm of that source runs
(same steps, same settings, same seed), and inside a tuning or out-of-fold fold both see the same training
rows. Fitting a chain is deterministic, so the second fit would repeat the first bit for bit. Inside
:func:`shared_fits`, :func:`fit_chain` fits each distinct (chain parameters, rows, values, labels) once and
hands out copies of that fit: the deep chains (thousands of float32 columns, variance and univariate
filtering, LASSO) are then fitted once per fold for the deep arms and ``combined`` together.

The key is a hash of the unfitted chain's parameters, the feature frame (values, column names, patient
index) and the labels, so a fit is only reused for exactly the same training rows: nothing fitted on one
fold can serve another fold, and nothing fitted on training patients is ever keyed by a test patient.
Outside :func:`shared_fits` nothing is cached.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone

__all__ = ["fit_chain", "shared_fits"]

_ACTIVE: list[OrderedDict[str, Any]] = []
_MAX_ENTRIES = 256
"""At most this many fits are kept (least recently used dropped): one task of the paper settings needs
5 sources × (5 inner folds + 1) = 30; a serial run of all tasks about 180 (each a few hundred kB)."""


@contextmanager
def shared_fits() -> Iterator[None]:
    """Reuse identical chain fits made by :func:`fit_chain` until the block ends (nested blocks share one)."""
    if _ACTIVE:
        yield
        return
    _ACTIVE.append(OrderedDict())
    try:
        yield
    finally:
        _ACTIVE.clear()


def fit_chain(est: Any, X: Any, y: Any) -> Any:
    """``clone(est).fit(X, y)``, served from the active :func:`shared_fits` block when fitted there before.

    Returns a copy of the cached fit (callers may keep or change their own), or a fresh fit outside a block.
    """
    if not _ACTIVE:
        return clone(est).fit(X, y)
    cache = _ACTIVE[0]
    key = joblib.hash((clone(est), *_frame_parts(X), None if y is None else np.asarray(y)))
    hit = cache.get(key)
    if hit is None:
        hit = clone(est).fit(X, y)
        cache[key] = hit
        while len(cache) > _MAX_ENTRIES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return copy.deepcopy(hit)


def _frame_parts(X: Any) -> tuple[Any, ...]:
    """What identifies a feature frame: column names, dtypes, patient index and values (layout-independent)."""
    if isinstance(X, pd.DataFrame):
        return list(X.columns), [str(d) for d in X.dtypes], list(X.index), X.to_numpy()
    return (np.asarray(X),)


def cache_size() -> int:
    """Fits held by the active block (0 outside one); for tests and logging."""
    return len(_ACTIVE[0]) if _ACTIVE else 0
