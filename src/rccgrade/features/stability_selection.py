"""Stability selection: keep the features an L1-logistic picks on most half-subsamples of the training patients.

Not to be confused with :class:`~rccgrade.features.selection.StabilityFilter`, which drops features with a low
test–retest ICC (a property of the feature's definition). :class:`StabilitySelector` is supervised and
fitted on the training patients (or a training fold) only.

Method (Meinshausen & Bühlmann 2010, with the complementary pairs of Shah & Samworth 2013):

* ``n_subsamples`` half-samples of the training patients, drawn as ``n_subsamples / 2`` complementary pairs
  (each pair splits every class in two disjoint halves), so every patient is used equally often;
* on each half an L1- (or elastic-net-) penalised logistic regression is fitted along a path of penalties
  ``C`` (z-scored features; the path starts at the smallest ``C`` that selects anything on the whole
  training data, :func:`sklearn.svm.l1_min_c`);
* a feature's selection frequency is the largest fraction of halves selecting it at any ``C`` of the
  retained path Λ;
* error control: with ``q`` the mean number of features selected anywhere on Λ per half, the expected
  number of falsely selected (noise) features satisfies E[V] ≤ q² / ((2·π_thr − 1)·p). Given
  ``max_false_positives`` (E[V]) and ``threshold`` (π_thr), Λ is cut where ``q`` would exceed
  √(E[V]·p·(2·π_thr − 1)); the bound actually reached is ``error_bound_``.

Every half-sample is drawn from ``random_state`` before any fitting, so the result is identical for any
``n_jobs``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import l1_min_c

from rccgrade.errors import ConfigError, ModelError
from rccgrade.features.matrix import BinaryTargetMixin, FrameSelector, as_frame, binary_labels, numeric_matrix

log = logging.getLogger(__name__)

__all__ = ["StabilitySelector", "complementary_halves", "error_bound"]


def error_bound(q: float, p: int, threshold: float) -> float:
    """Meinshausen–Bühlmann bound on E[V], the expected number of noise features selected: q²/((2π−1)·p)."""
    if not 0.5 < threshold <= 1.0:
        raise ConfigError(f"stability-selection threshold must be in (0.5, 1], got {threshold}")
    return float(q * q / ((2.0 * threshold - 1.0) * max(p, 1)))


def complementary_halves(y: np.ndarray, n_pairs: int, seed: int) -> list[np.ndarray]:
    """``2 · n_pairs`` row-index arrays: each pair splits every class into two disjoint halves.

    Args:
        y: 0/1 labels, shape (n,).
        n_pairs: Number of complementary pairs.
        seed: Seed of the permutations.

    Returns:
        Sorted index arrays, pair members adjacent (``[A₁, B₁, A₂, B₂, …]``).
    """
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(y == c) for c in (0, 1)]
    halves: list[np.ndarray] = []
    for _ in range(n_pairs):
        a_parts, b_parts = [], []
        for idx in classes:
            perm = rng.permutation(idx)
            cut = perm.size // 2
            a_parts.append(perm[:cut])
            b_parts.append(perm[cut : 2 * cut])
        halves.append(np.sort(np.concatenate(a_parts)))
        halves.append(np.sort(np.concatenate(b_parts)))
    return halves


def _path_selection(
    z: np.ndarray, y: np.ndarray, rows: np.ndarray, Cs: np.ndarray, l1_ratio: float, cap: int, seed: int
) -> np.ndarray:
    """Boolean (len(Cs), p): features with a non-zero coefficient at each C on one half-sample.

    The path runs from the strongest penalty up (warm-started where the solver allows it) and stops once
    more than ``cap`` features are selected; the remaining rows are marked all-True (beyond any budget).
    """
    zs, ys = z[rows], y[rows]
    out = np.zeros((Cs.size, z.shape[1]), dtype=bool)
    liblinear = l1_ratio >= 1.0
    model = LogisticRegression(
        C=float(Cs[0]),
        l1_ratio=float(l1_ratio),
        solver="liblinear" if liblinear else "saga",
        class_weight="balanced",
        max_iter=2000,
        tol=1e-4,
        warm_start=not liblinear,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, C in enumerate(Cs):
            model.set_params(C=float(C))
            model.fit(zs, ys)
            out[i] = np.ravel(model.coef_) != 0
            if out[i].sum() > cap:
                out[i + 1 :] = True
                break
    return out


class StabilitySelector(BinaryTargetMixin, FrameSelector):
    """Keep the features selected by an L1-logistic in at least ``threshold`` of the half-subsamples.

    Args:
        n_subsamples: Half-samples fitted (rounded up to an even number: ``n_subsamples / 2`` complementary
            pairs).
        threshold: π_thr, the selection frequency a feature needs (in (0.5, 1]).
        max_false_positives: Target bound on E[V], the expected number of noise features kept; it limits the
            penalty path (see the module docstring). None: the whole path, no error control.
        n_cs: Penalties on the path (log grid).
        c_ratio: Path from ``l1_min_c`` to ``c_ratio · l1_min_c``.
        l1_ratio: 1.0 = LASSO (liblinear); below 1 = elastic net (saga, warm-started along the path).
        min_features: Keep at least this many (highest frequency) when fewer reach the threshold, so a chain
            never runs empty (0 disables).
        n_jobs: Parallel half-samples (joblib); results do not depend on it.
        random_state: Seed of the half-samples.

    Attributes:
        frequencies_: Selection frequency of every input feature (max over the retained path), shape (p,).
        path_frequencies_: Frequency at each retained C, shape (n_C, p).
        Cs_: Retained penalties (Λ).
        q_: Mean number of features selected on Λ per half-sample.
        error_bound_: q²/((2π_thr − 1)·p), the bound on E[V] reached.
    """

    def __init__(
        self,
        n_subsamples: int = 100,
        threshold: float = 0.75,
        max_false_positives: float | None = 1.0,
        n_cs: int = 25,
        c_ratio: float = 30.0,
        l1_ratio: float = 1.0,
        min_features: int = 1,
        n_jobs: int | None = 1,
        random_state: int | None = 0,
    ) -> None:
        self.n_subsamples = n_subsamples
        self.threshold = threshold
        self.max_false_positives = max_false_positives
        self.n_cs = n_cs
        self.c_ratio = c_ratio
        self.l1_ratio = l1_ratio
        self.min_features = min_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _check_params(self) -> None:
        if not 0.5 < self.threshold <= 1.0:
            raise ConfigError(f"StabilitySelector: threshold must be in (0.5, 1], got {self.threshold}")
        if self.n_subsamples < 2:
            raise ConfigError(f"StabilitySelector: n_subsamples must be at least 2, got {self.n_subsamples}")
        if self.max_false_positives is not None and self.max_false_positives <= 0:
            raise ConfigError("StabilitySelector: max_false_positives must be positive (or None)")
        if not 0.0 < self.l1_ratio <= 1.0:
            raise ConfigError(f"StabilitySelector: l1_ratio must be in (0, 1], got {self.l1_ratio}")

    def fit(self, X: Any, y: Any) -> StabilitySelector:
        """Fit the penalty path on every half-sample and threshold the selection frequencies."""
        self._check_params()
        X = as_frame(X)
        self._set_input(X)
        arr = numeric_matrix(X, "StabilitySelector")
        lab = binary_labels(y, "StabilitySelector")
        p = arr.shape[1]
        sd = arr.std(axis=0)
        z = (arr - arr.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        seed = 0 if self.random_state is None else int(self.random_state)
        n_pairs = (int(self.n_subsamples) + 1) // 2
        halves = complementary_halves(lab, n_pairs, seed)
        if min(np.bincount(lab[h], minlength=2).min() for h in halves) < 1:
            raise ModelError("StabilitySelector needs at least 2 patients of each class in the training data")
        c0 = float(l1_min_c(z, lab, loss="log")) if np.any(sd > 0) else 1.0
        Cs = c0 * np.logspace(0.0, np.log10(self.c_ratio), int(self.n_cs))
        if self.max_false_positives is not None:
            q_max = float(np.sqrt(self.max_false_positives * p * (2.0 * self.threshold - 1.0)))
        else:
            q_max = float(p)
        cap = int(min(p, max(2.0 * q_max, 10.0)))
        paths = Parallel(n_jobs=self.n_jobs, prefer="threads")(  # liblinear/saga release the GIL
            delayed(_path_selection)(z, lab, rows, Cs, self.l1_ratio, cap, seed + i) for i, rows in enumerate(halves)
        )
        sel = np.stack(paths)  # (B, n_C, p)
        union = np.logical_or.accumulate(sel, axis=1)  # selected anywhere on the path up to C
        q_path = union.sum(axis=2).mean(axis=0)  # (n_C,)
        keep_c = max(1, int(np.searchsorted(q_path, q_max, side="right")))
        keep_c = min(keep_c, Cs.size)
        self.Cs_ = Cs[:keep_c]
        self.path_frequencies_ = sel[:, :keep_c, :].mean(axis=0)
        self.frequencies_ = self.path_frequencies_.max(axis=0)
        self.q_ = float(q_path[keep_c - 1])
        self.error_bound_ = error_bound(self.q_, p, self.threshold)
        support = self.frequencies_ >= self.threshold
        if support.sum() < self.min_features:
            order = np.argsort(-self.frequencies_, kind="stable")[: self.min_features]
            support[order] = True
            log.info(
                "stability selection: %d feature(s) reached frequency %.2f; keeping the %d most frequent",
                int((self.frequencies_ >= self.threshold).sum()),
                self.threshold,
                self.min_features,
            )
        self.support_ = support
        return self
