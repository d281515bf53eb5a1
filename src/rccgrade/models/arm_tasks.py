"""The fitting loop of :func:`rccgrade.models.arms.fit_arms`: every arm and every outer fold as one task.

Each single-source or ``combined`` arm needs one tuned fit on all training patients and, for its out-of-fold
probabilities, one fit per outer fold. These fits are independent, so they run as separate tasks on
``n_jobs`` worker processes (joblib/loky). Every task carries its own fully seeded estimator (the seed is
fixed when the arm is built, never drawn from the worker), and results are gathered in task order, so the
numbers are identical for any worker count.

Two phases: phase 1 holds the final fits and, with ``nested_oof``, the outer folds (each one reruns the
tuning); without ``nested_oof`` the outer folds reuse the hyper-parameters of the final fit, so they run in a
phase 2 after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from rccgrade.models.tuning import fit_tuned

log = logging.getLogger(__name__)

__all__ = ["ArmFit", "fit_arm_tasks"]


@dataclass
class ArmFit:
    """What the loop returns for one arm.

    Attributes:
        model: The tuned arm fitted on every training patient.
        params: Its chosen hyper-parameters.
        train_proba: Apparent probabilities of the training patients, shape (n_train,).
        test_proba: Probabilities of the test patients, shape (n_test,).
        oof_proba: Out-of-fold probabilities of the training patients, shape (n_train,).
    """

    model: Any
    params: dict[str, Any]
    train_proba: np.ndarray
    test_proba: np.ndarray
    oof_proba: np.ndarray


def _final_task(search: Any, X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame) -> tuple[Any, dict, Any, Any]:
    fitted, params = fit_tuned(clone(search), X, y)
    test = fitted.predict_proba(X_test)[:, 1] if len(X_test) else np.empty(0)
    return fitted, params, fitted.predict_proba(X)[:, 1], test


def _fold_task(est: Any, X: pd.DataFrame, y: pd.Series, train: np.ndarray, held: np.ndarray) -> np.ndarray:
    model = clone(est).fit(X.iloc[train], y.iloc[train])
    return np.asarray(model.predict_proba(X.iloc[held]))[:, 1]


def _run(tasks: list[Any], n_jobs: int) -> list[Any]:
    if n_jobs <= 1 or len(tasks) <= 1:
        return [fn(*args) for fn, *args in tasks]
    return Parallel(n_jobs=min(n_jobs, len(tasks)), backend="loky")(delayed(fn)(*args) for fn, *args in tasks)


def fit_arm_tasks(
    arms: Sequence[str],
    make: Callable[[str], tuple[Any, Any]],
    X: pd.DataFrame,
    y: pd.Series,
    X_test: pd.DataFrame,
    folds: StratifiedKFold,
    *,
    nested_oof: bool,
    n_jobs: int = 1,
) -> dict[str, ArmFit]:
    """Fit every arm (tuned, on all of ``X``) and its out-of-fold probabilities, in parallel tasks.

    Args:
        arms: Arms to fit (not ``stacked``).
        make: Arm → ``(unfitted estimator, unfitted search)``; the search tunes the estimator.
        X: Training features; y: their labels.
        X_test: Features of the patients to predict (may have no rows).
        folds: The outer folds of the out-of-fold probabilities.
        nested_oof: Rerun the tuning inside every outer fold (else reuse the final fit's parameters).
        n_jobs: Worker processes (1: in this process). The numbers do not depend on it.
    """
    built = {arm: make(arm) for arm in arms}
    splits = list(folds.split(np.zeros(len(y)), np.asarray(y)))
    tasks: list[Any] = []
    for arm in arms:
        est, search = built[arm]
        tasks.append((_final_task, search, X, y, X_test))
        if nested_oof:
            tasks.extend((_fold_task, search, X, y, tr, te) for tr, te in splits)
    log.info("fitting %d arm(s) as %d task(s) on %d worker(s)", len(arms), len(tasks), max(n_jobs, 1))
    done = iter(_run(tasks, n_jobs))
    finals: dict[str, tuple[Any, dict, Any, Any]] = {}
    fold_p: dict[str, list[np.ndarray]] = {}
    for arm in arms:
        finals[arm] = next(done)
        if nested_oof:
            fold_p[arm] = [next(done) for _ in splits]
    if not nested_oof:
        tasks = []
        for arm in arms:
            est = clone(built[arm][0]).set_params(**finals[arm][1])
            tasks.extend((_fold_task, est, X, y, tr, te) for tr, te in splits)
        done = iter(_run(tasks, n_jobs))
        fold_p = {arm: [next(done) for _ in splits] for arm in arms}
    out: dict[str, ArmFit] = {}
    for arm in arms:
        oof = np.full(len(y), np.nan)
        for (_, held), p in zip(splits, fold_p[arm], strict=True):
            oof[held] = p
        model, params, train_p, test_p = finals[arm]
        out[arm] = ArmFit(model=model, params=params, train_proba=train_p, test_proba=test_p, oof_proba=oof)
    return out
