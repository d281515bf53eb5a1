"""Near-duplicate grouping: one representative per group of highly correlated features enters selection.

Radiomics (and deep) sources hold many near-copies of one phenomenon (e.g. ``Energy``, ``TotalEnergy`` and
``RootMeanSquared`` of the same histogram). Selection then picks the same thing several times, or splits the
signal between copies at random from one split to the next. :class:`CorrelationGrouper` clusters the features
of a source on the distance 1 − |r| (hierarchical, complete or average linkage) and cuts the tree at
1 − ``threshold``: with complete linkage every pair inside a group has |r| ≥ ``threshold``. Each group is
represented by its most univariately relevant member (|AUC − 0.5| on the training rows) or by its medoid
(largest mean |r| with the rest of the group); ties go to the earlier column. The membership is kept in
``groups_`` so explanations can say "represents N correlated features".

Only features with at least one partner above the threshold can share a group, so the clustering runs on
the connected components of the thresholded correlation graph: fast when duplicates are few.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from rccgrade.errors import ConfigError
from rccgrade.features.matrix import BinaryTargetMixin, FrameSelector, as_frame, binary_labels, numeric_matrix
from rccgrade.features.scores import abs_corr, univariate_auc

__all__ = ["CorrelationGrouper", "correlation_groups"]


def correlation_groups(corr: np.ndarray, threshold: float, linkage_method: str = "complete") -> np.ndarray:
    """Group label of every feature (0 … k−1, numbered by first member) from an |r| matrix.

    Args:
        corr: Absolute correlations, shape (p, p), symmetric with ones on the diagonal.
        threshold: Features join a group when linkage distance ≤ 1 − threshold.
        linkage_method: ``complete`` or ``average``.
    """
    if linkage_method not in ("complete", "average"):
        raise ConfigError(f"unknown linkage {linkage_method!r}; use 'complete' or 'average'")
    p = corr.shape[0]
    adj = csr_matrix((corr >= threshold) & ~np.eye(p, dtype=bool))
    n_comp, comp = connected_components(adj, directed=False)
    raw = np.arange(p, dtype=np.int64)
    next_label = p
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        if members.size < 2:
            continue
        dist = 1.0 - corr[np.ix_(members, members)]
        dist = np.clip((dist + dist.T) / 2.0, 0.0, None)
        np.fill_diagonal(dist, 0.0)
        tree = linkage(squareform(dist, checks=False), method=linkage_method)
        sub = fcluster(tree, t=1.0 - threshold + 1e-12, criterion="distance")
        for s in np.unique(sub):
            raw[members[sub == s]] = next_label
            next_label += 1
    # renumber by first member so labels do not depend on the component numbering
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse]


class CorrelationGrouper(BinaryTargetMixin, FrameSelector):
    """Keep one representative per group of features with |r| above ``threshold`` (fitted on training rows).

    Args:
        threshold: |r| at or above which features are near-duplicates (0.95).
        method: ``spearman`` (default: robust to the skewed radiomics distributions) or ``pearson``.
        linkage: ``complete`` (every pair in a group ≥ threshold) or ``average``.
        representative: ``relevance`` (largest |AUC − 0.5| on the training rows) or ``medoid``.

    Attributes:
        labels_: Group of every input feature, shape (p,).
        groups_: Representative name → names of every member (itself first).
        relevance_: |AUC − 0.5| of every input feature.
    """

    def __init__(
        self,
        threshold: float = 0.95,
        method: Literal["pearson", "spearman"] = "spearman",
        linkage: Literal["complete", "average"] = "complete",
        representative: Literal["relevance", "medoid"] = "relevance",
    ) -> None:
        self.threshold = threshold
        self.method = method
        self.linkage = linkage
        self.representative = representative

    def fit(self, X: Any, y: Any) -> CorrelationGrouper:
        """Cluster the features and choose each group's representative."""
        if self.representative not in ("relevance", "medoid"):
            raise ConfigError(f"unknown representative {self.representative!r}; use 'relevance' or 'medoid'")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"CorrelationGrouper: threshold must be in (0, 1], got {self.threshold}")
        X = as_frame(X)
        self._set_input(X)
        arr = numeric_matrix(X, "CorrelationGrouper")
        lab = binary_labels(y, "CorrelationGrouper")
        corr = abs_corr(arr, self.method)
        np.fill_diagonal(corr, 1.0)
        labels = correlation_groups(corr, self.threshold, self.linkage)
        relevance = np.abs(univariate_auc(arr, lab) - 0.5)
        names = list(X.columns)
        support = np.zeros(arr.shape[1], dtype=bool)
        groups: dict[str, list[str]] = {}
        for g in range(int(labels.max()) + 1 if labels.size else 0):
            members = np.flatnonzero(labels == g)
            if self.representative == "relevance":
                score = relevance[members]
            else:
                sub = corr[np.ix_(members, members)]
                score = (sub.sum(axis=1) - 1.0) / max(members.size - 1, 1)
            rep = int(members[int(np.argmax(score))])  # argmax: first of ties = earlier column
            support[rep] = True
            groups[names[rep]] = [names[rep]] + [names[m] for m in members if m != rep]
        self.labels_ = labels
        self.groups_ = groups
        self.relevance_ = relevance
        self.support_ = support
        return self

    def group_sizes(self) -> dict[str, int]:
        """Representative → number of features it stands for (itself included)."""
        return {rep: len(members) for rep, members in self.groups_.items()}
