"""Train/test split: manifest split respected, stratified seeded split otherwise, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import CohortError
from rccgrade.models.split import make_split, read_split, train_test_ids, write_split


def _labels(n: int = 100, pos: int = 30) -> pd.Series:
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    return pd.Series(np.r_[np.ones(pos, dtype=int), np.zeros(n - pos, dtype=int)], index=ids)


def test_stratified_split_is_seeded_and_7_to_3() -> None:
    y = _labels()
    a = make_split(y, test_size=0.3, seed=4)
    b = make_split(y, test_size=0.3, seed=4)
    c = make_split(y, test_size=0.3, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert list(a.columns) == ["patient_id", "split"] and list(a["patient_id"]) == list(y.index)
    test = a["split"] == "test"
    assert test.sum() == 30
    assert y.to_numpy()[test.to_numpy()].sum() == 9  # 30% of the 30 positives


def test_manifest_split_is_used_as_given() -> None:
    y = _labels(10, 4)
    given = pd.Series(["train"] * 7 + ["TEST"] * 3, index=y.index)
    split = make_split(y, given)
    assert split["split"].tolist() == ["train"] * 7 + ["test"] * 3
    with pytest.raises(CohortError, match="some patients but not"):
        make_split(y, given.where(given.index != "p000"))
    with pytest.raises(CohortError, match="'train' or 'test'"):
        make_split(y, given.replace("TEST", "valid"))
    with pytest.raises(CohortError, match="low- and high-grade"):
        make_split(y, pd.Series(["train"] * 4 + ["test"] * 6, index=y.index))


def test_unlabelled_patient_is_named() -> None:
    y = _labels(10, 4).astype("Int64")
    y.iloc[3] = pd.NA
    with pytest.raises(CohortError, match="p003"):
        make_split(y)


def test_split_round_trip(tmp_path: Path) -> None:
    split = make_split(_labels(), seed=0)
    path = write_split(split, tmp_path / "run")
    back = read_split(path)
    pd.testing.assert_frame_equal(back, split)
    train, test = train_test_ids(back)
    assert len(train) == 70 and len(test) == 30 and not set(train) & set(test)
