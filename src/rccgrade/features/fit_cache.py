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
import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone

__all__ = ["clear_fitted_states", "fit_chain", "recall_fitted_state", "remember_fitted_state", "shared_fits"]

_LOCAL = threading.local()
_MAX_ENTRIES = 256
"""At most this many fits are kept (least recently used dropped): one task of the paper settings needs
5 sources × (5 inner folds + 1) = 30; a serial run of all tasks about 180 (each a few hundred kB)."""


@contextmanager
def shared_fits() -> Iterator[None]:
    """Reuse identical chain fits made by :func:`fit_chain` until the block ends (nested blocks share one)."""
    if _active() is not None:
        yield
        return
    _LOCAL.cache = OrderedDict()
    try:
        yield
    finally:
        _LOCAL.cache = None


def _active() -> OrderedDict[str, Any] | None:
    """The cache of this thread's open :func:`shared_fits` block (None outside one; each thread has its own)."""
    return getattr(_LOCAL, "cache", None)


def fit_chain(est: Any, X: Any, y: Any) -> Any:
    """``clone(est).fit(X, y)``, served from the active :func:`shared_fits` block when fitted there before.

    Returns a copy of the cached fit (callers may keep or change their own), or a fresh fit outside a block.
    """
    cache = _active()
    if cache is None:
        return clone(est).fit(X, y)
    key = _key(est, X, y)
    hit = cache.get(key)
    if hit is None:
        hit = clone(est).fit(X, y)
        cache[key] = hit
        while len(cache) > _MAX_ENTRIES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return pickle.loads(pickle.dumps(hit, protocol=pickle.HIGHEST_PROTOCOL))  # a copy, at C speed


def _key(est: Any, X: Any, y: Any) -> str:
    """Hash of the unfitted chain, the feature frame (column names, dtypes, patient index, values) and labels.

    Names and numeric values are hashed as bytes (pickling thousands of column names one by one cost more
    than the fits it saved); object or categorical columns fall back to joblib's hash.
    """
    h = hashlib.sha256(joblib.hash(clone(est)).encode())
    if isinstance(X, pd.DataFrame):
        for names in (X.columns, X.index):
            h.update(b"\x1e" + "\x1f".join(map(str, names)).encode())
        h.update("\x1f".join(map(str, X.dtypes)).encode())
        numeric = all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in set(X.dtypes))
        values = np.ascontiguousarray(X.to_numpy()) if numeric else None
        h.update(values.tobytes() if values is not None else joblib.hash(X).encode())
    else:
        h.update(joblib.hash(np.asarray(X)).encode())
    h.update(b"\x1e" + (b"none" if y is None else joblib.hash(np.asarray(y)).encode()))
    return h.hexdigest()


_STATES: OrderedDict[str, dict[str, Any]] = OrderedDict()
_STATES_SIZE = 32
"""Fitted states kept by :func:`remember_fitted_state` (least recently used dropped)."""


def _state_key(est: Any, X: pd.DataFrame, y: np.ndarray) -> str:
    return joblib.hash((type(est).__qualname__, X, y, est.get_params(deep=False)))


def recall_fitted_state(est: Any, X: pd.DataFrame, y: np.ndarray) -> bool:
    """Restore ``est``'s fitted attributes from an earlier :func:`remember_fitted_state` of the same estimator
    type, parameters, frame and labels; True when restored (the caller's ``fit`` then returns at once).

    For the fusion unions (gated, budgeted ``combined``), whose inner CV is costly and which the tuning search
    refits on the same fold for every candidate of the classifier. Unlike :func:`fit_chain` this memo is
    process-wide: the key holds the whole training frame and labels, so a state is reused only for exactly the
    same rows and values.
    """
    key = _state_key(est, X, y)
    if key not in _STATES:
        return False
    _STATES.move_to_end(key)
    est.__dict__.update(copy.deepcopy(_STATES[key]))
    return True


def remember_fitted_state(est: Any, X: pd.DataFrame, y: np.ndarray) -> None:
    """Keep a copy of ``est``'s fitted attributes (``name_``) for :func:`recall_fitted_state`."""
    state = {k: v for k, v in est.__dict__.items() if k.endswith("_") and not k.startswith("__")}
    _STATES[_state_key(est, X, y)] = copy.deepcopy(state)
    while len(_STATES) > _STATES_SIZE:
        _STATES.popitem(last=False)


def clear_fitted_states() -> None:
    """Forget every state kept by :func:`remember_fitted_state` (tests that need a real refit)."""
    _STATES.clear()


def cache_size() -> int:
    """Fits held by the active block (0 outside one); for tests and logging."""
    cache = _active()
    return 0 if cache is None else len(cache)
