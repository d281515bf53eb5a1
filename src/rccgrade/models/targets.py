"""The binary outcome of every classifier here (high vs low grade), validated as scikit-learn expects.

Shared by the custom classifiers (the boosted-tree wrappers, the stacked arm) so each one takes its labels the
same way: classification targets only (``check_classification_targets``), exactly two classes, the larger
label is the positive class (``classes_[1]``); the study's 0/1 labels map to themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["BinaryClassifierTags", "binary_targets"]


def binary_targets(estimator: Any, y: Any) -> np.ndarray:
    """Set ``estimator.classes_`` from ``y`` and return ``y`` as 0/1 ``int64`` (1 = ``classes_[1]``).

    Raises:
        ValueError: a continuous or multi-output target ("Unknown label type"), or not exactly two classes.
    """
    y = np.asarray(y)
    check_classification_targets(y)
    classes = np.unique(y)
    if classes.size != 2:
        got = "one class" if classes.size == 1 else f"{classes.size} classes"
        raise ValueError(
            f"{type(estimator).__name__} predicts a binary outcome (low/high grade) and needs exactly two classes "
            f"in y; got {got}. Only binary classification is supported."
        )
    estimator.classes_ = classes
    return (y == classes[1]).astype(np.int64)


class BinaryClassifierTags:
    """Declares a classifier of a binary outcome (scikit-learn's checks then give it two classes)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.classifier_tags.multi_class = False
        return tags
