"""Contract of models.split beyond the basic tests (kills ``make mutation`` survivors).

Defaults, every error message (with the patients it names), whitespace/case handling and order of a
manifest split, the split file's round trip with string ids, and repeated CV against a loop built here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.naive_bayes import GaussianNB

from rccgrade.errors import CohortError, ModelError
from rccgrade.models.split import make_split, read_split, repeated_cv_oof, train_test_ids, write_split


def _labels(n: int = 20, pos: int = 8) -> pd.Series:
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    return pd.Series(np.r_[np.ones(pos, dtype=int), np.zeros(n - pos, dtype=int)], index=ids)


def _raises(exc: type[Exception], text: str):  # type: ignore[no-untyped-def]
    return pytest.raises(exc, match=re.escape(text))


def test_defaults_and_absent_split_column() -> None:
    y = _labels(40, 12)
    default = make_split(y)
    pd.testing.assert_frame_equal(default, make_split(y, test_size=0.3, seed=0))
    assert (default.split == "test").sum() == 12
    blank = pd.Series([np.nan] * 20 + [" "] * 20, index=y.index)  # no value anywhere: the random split
    pd.testing.assert_frame_equal(make_split(y, blank), default)


def test_manifest_split_whitespace_case_and_order() -> None:
    y = _labels(6, 3)
    given = pd.Series([" Train", "TRAIN ", "test", "train", "Test", "train"], index=y.index)[::-1]
    split = make_split(y, given)
    assert split.patient_id.tolist() == list(y.index)  # in the order of the labels, not of the manifest
    assert split.split.tolist() == ["train", "train", "test", "train", "test", "train"]
    assert train_test_ids(split) == (["p000", "p001", "p003", "p005"], ["p002", "p004"])


def test_error_messages_name_patients_and_fixes() -> None:
    y = _labels(10, 4).astype("Int64")
    y.iloc[[3, 7]] = pd.NA
    with _raises(CohortError, "[patient p003] 2 patient(s) have no grade/high_grade label: ['p003', 'p007']; label"):
        make_split(y)
    y.iloc[:7] = pd.NA  # at most five are listed
    first5 = "['p000', 'p001', 'p002', 'p003', 'p004']"
    with _raises(CohortError, f"[patient p000] 8 patient(s) have no grade/high_grade label: {first5}; label"):
        make_split(y)
    with _raises(CohortError, "a stratified split needs at least 2 patients per class; got [10, 0]"):
        make_split(_labels(10, 0))
    with _raises(CohortError, "labels must be 0 (ISUP 1–2) or 1 (ISUP 3–4); found [2]"):
        make_split(_labels(10, 4).replace(1, 2).where(lambda s: s.index != "p009", 1))
    y = _labels(10, 4)
    partial = pd.Series(["train"] * 8 + [None, ""], index=y.index)
    with _raises(
        CohortError,
        "the manifest gives a split for some patients but not for 2: ['p008', 'p009']; "
        "fill the split column for every patient or remove it",
    ):
        make_split(y, partial)
    mostly_absent = pd.Series(["train", "test", "train"] + [None] * 7, index=y.index)
    with _raises(
        CohortError, "some patients but not for 7: ['p003', 'p004', 'p005', 'p006', 'p007']; fill the split column"
    ):
        make_split(y, mostly_absent)
    with _raises(CohortError, "split values must be 'train' or 'test'; found ['dev', 'valid']"):
        make_split(y, pd.Series(["train"] * 8 + ["valid", "dev"], index=y.index))
    with _raises(CohortError, "a stratified split needs at least 2 patients per class; got [9, 1]"):
        make_split(_labels(10, 1))
    with _raises(CohortError, "the training set must contain low- and high-grade patients"):
        make_split(y, pd.Series(["test"] * 10, index=y.index))
    with _raises(CohortError, "the training set must contain low- and high-grade patients"):
        make_split(y, pd.Series(["train"] * 4 + ["test"] * 6, index=y.index))


def test_split_file_round_trip_and_errors(tmp_path: Path) -> None:
    split = pd.DataFrame({"patient_id": ["007", "010", "1e3"], "split": ["train", "test", "train"]})
    path = write_split(split, tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" / "split.csv" and path.is_file()
    back = read_split(path)
    assert back.patient_id.tolist() == ["007", "010", "1e3"]  # identifiers stay strings
    pd.testing.assert_frame_equal(back, split)
    with pytest.raises(ModelError, match=r"^\[file .*missing\.csv\] split file not found$"):
        read_split(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,split,extra\np1,train,x\n")
    with pytest.raises(
        ModelError, match=r"^\[file .*bad\.csv\] a split file needs exactly the columns patient_id, split$"
    ):
        read_split(bad)
    again = write_split(split.iloc[:2], tmp_path / "a" / "b")  # the folder exists now: overwritten, no error
    assert again == path and len(read_split(again)) == 2


def test_repeated_cv_oof_equals_a_loop() -> None:
    rng = np.random.default_rng(0)
    ids = pd.Index([f"p{i:02d}" for i in range(40)], name="patient_id")
    X = pd.DataFrame(rng.normal(size=(40, 3)), index=ids, columns=["a", "b", "c"])
    y = pd.Series((X.a + rng.normal(size=40) > 0).astype(int), index=ids)
    est = LogisticRegression(C=0.5, max_iter=1000)
    got = repeated_cv_oof(est, X, y, n_splits=4, n_repeats=3, seed=7)
    assert list(got.columns) == ["repeat_0", "repeat_1", "repeat_2"] and got.index.equals(ids)
    assert (got.dtypes == np.float64).all()
    want = np.full((40, 3), np.nan)
    for i, (tr, te) in enumerate(RepeatedStratifiedKFold(n_splits=4, n_repeats=3, random_state=7).split(X, y)):
        model = LogisticRegression(C=0.5, max_iter=1000).fit(X.iloc[tr], y.iloc[tr])
        want[te, i // 4] = model.predict_proba(X.iloc[te])[:, 1]
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-10)
    fast = GaussianNB()
    default = repeated_cv_oof(fast, X, y)
    assert default.shape == (40, 10) and default.notna().all().all()
    np.testing.assert_allclose(default.to_numpy(), repeated_cv_oof(fast, X, y, n_splits=5, n_repeats=10, seed=0))
