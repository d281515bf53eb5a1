"""bench/fusion.py pairs labels and probabilities by patient id (its radiomics arm once scored ≈ 0.5 because
``y.loc[test]`` in shuffled split order was compared position by position with probabilities in table order)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.fusion import paired_auc  # noqa: E402


def _case(seed: int = 0, n: int = 80) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = [f"syn{i:04d}" for i in range(n)]
    y = pd.Series(rng.integers(0, 2, n), index=ids)
    proba = pd.Series(np.clip(0.5 + 0.4 * (y.to_numpy() - 0.5) + 0.2 * rng.standard_normal(n), 0, 1), index=ids)
    return y, proba


def test_pairs_by_id_not_position() -> None:
    y, proba = _case()
    expected = roc_auc_score(y.to_numpy(), proba.to_numpy())  # same order: the plain computation is right
    assert expected > 0.8
    rng = np.random.default_rng(1)
    shuffled_y = y.iloc[rng.permutation(len(y))]  # labels in another order (a shuffled split's test ids)
    assert paired_auc(shuffled_y, proba) == pytest.approx(expected, abs=1e-12)
    assert paired_auc(y, proba.iloc[rng.permutation(len(y))]) == pytest.approx(expected, abs=1e-12)
    # the old positional comparison of the same inputs is the AUC of a permutation
    assert abs(roc_auc_score(shuffled_y.to_numpy(), proba.to_numpy()) - expected) > 0.2


def test_labels_may_cover_more_patients_than_the_test_set() -> None:
    y, proba = _case()
    test = proba.iloc[10:50]
    assert paired_auc(y, test) == pytest.approx(roc_auc_score(y.iloc[10:50].to_numpy(), test.to_numpy()))


def test_refuses_what_it_cannot_pair() -> None:
    y, proba = _case()
    with pytest.raises(TypeError, match="indexed by patient id"):
        paired_auc(y, proba.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no label"):
        paired_auc(y.iloc[5:], proba)
    with pytest.raises(ValueError, match="duplicated"):
        paired_auc(y, pd.concat([proba, proba.iloc[:1]]))
