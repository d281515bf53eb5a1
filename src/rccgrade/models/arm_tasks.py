"""The fitting loop of :func:`rccgrade.models.arms.fit_arms`: every arm and every outer fold as one task.

Each single-source or ``combined`` arm needs one tuned fit on all training patients and, for its out-of-fold
probabilities, one fit per outer fold. These fits are independent, so they run as separate tasks on
``n_jobs`` worker processes (joblib/loky). Every task carries its own fully seeded estimator (the seed is
fixed when the arm is built, never drawn from the worker), and results are gathered in task order, so the
numbers are identical for any worker count.

Tasks are grouped by rows, not by arm: one task fits every arm on all training patients, and one task per
outer fold fits every arm on that fold, so the ``combined`` arm reuses the per-source chains the
single-source arms fitted on the same rows (:mod:`rccgrade.features.fit_cache`; about half the work at the
paper settings). With 5 folds that is 6 tasks of similar size, which 2 workers share evenly. BLAS/OpenMP
threads are limited to 1 in every task (``threadpoolctl``), in a worker and in the serial path alike: W
workers then use W cores, not W × cores, and no result depends on how a BLAS call was split into threads.

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
from threadpoolctl import threadpool_limits

from rccgrade.features.fit_cache import shared_fits
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


def _group(*jobs: tuple[Any, ...]) -> list[Any]:
    """Run several (function, args…) jobs in one task, sharing identical chain fits between them."""
    with shared_fits():
        return [fn(*args) for fn, *args in jobs]


def _run(tasks: list[list[tuple[Any, ...]]], n_jobs: int) -> list[Any]:
    """Run task groups (serially in one shared-fit block, or one group per loky task); results in order."""
    if n_jobs <= 1 or len(tasks) <= 1:
        with shared_fits(), threadpool_limits(limits=1):  # one process: groups reuse each other's fits
            done = [_group(*jobs) for jobs in tasks]
    else:
        done = Parallel(n_jobs=min(n_jobs, len(tasks)), backend="loky")(
            delayed(_limited_group)(*jobs) for jobs in tasks
        )
    return [r for group in done for r in group]


def _limited_group(*jobs: tuple[Any, ...]) -> list[Any]:
    """A task group in a worker: one BLAS/OpenMP thread, as the workers already share the cores."""
    with threadpool_limits(limits=1):
        return _group(*jobs)


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

    One task per fit of the outer loop (the final fit, and with ``nested_oof`` each outer fold) runs every
    arm on those rows, so the chains ``combined`` shares with the single-source arms are fitted once per
    task (:mod:`rccgrade.features.fit_cache`).

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
    tasks: list[list[tuple[Any, ...]]] = [[(_final_task, built[arm][1], X, y, X_test) for arm in arms]]
    if nested_oof:
        tasks.extend([(_fold_task, built[arm][1], X, y, tr, te) for arm in arms] for tr, te in splits)
    log.info("fitting %d arm(s) as %d task(s) on %d worker(s)", len(arms), len(tasks), max(n_jobs, 1))
    done = iter(_run(tasks, n_jobs))
    finals: dict[str, tuple[Any, dict, Any, Any]] = {arm: next(done) for arm in arms}
    fold_p: dict[str, list[np.ndarray]] = {arm: [] for arm in arms}
    if nested_oof:
        for _ in splits:
            for arm in arms:
                fold_p[arm].append(next(done))
    else:
        tuned = {arm: clone(built[arm][0]).set_params(**finals[arm][1]) for arm in arms}
        tasks = [[(_fold_task, tuned[arm], X, y, tr, te) for arm in arms] for tr, te in splits]
        done = iter(_run(tasks, n_jobs))
        for _ in splits:
            for arm in arms:
                fold_p[arm].append(next(done))
    out: dict[str, ArmFit] = {}
    for arm in arms:
        oof = np.full(len(y), np.nan)
        for (_, held), p in zip(splits, fold_p[arm], strict=True):
            oof[held] = p
        model, params, train_p, test_p = finals[arm]
        out[arm] = ArmFit(model=model, params=params, train_proba=train_p, test_proba=test_p, oof_proba=oof)
    return out
