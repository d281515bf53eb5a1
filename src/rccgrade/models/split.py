"""Train/test split and repeated cross-validation on the training patients.

The split is the manifest's ``split`` column when it is given (e.g. a temporal or external test set),
otherwise a stratified random split with a seed. It is written to the run folder (``split.csv``) so
every later stage — and a reader — uses exactly the same patients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

from rccgrade.errors import CohortError, ModelError

SPLITS: tuple[str, ...] = ("train", "test")


def _clean_labels(labels: pd.Series) -> pd.Series:
    missing = labels.index[labels.isna()].tolist()
    if missing:
        raise CohortError(
            f"{len(missing)} patient(s) have no grade/high_grade label: {missing[:5]}; label them or drop them",
            patient_id=str(missing[0]),
        )
    lab = labels.astype(np.int64)
    bad = sorted(set(lab.unique().tolist()) - {0, 1})
    if bad:
        raise CohortError(f"labels must be 0 (ISUP 1–2) or 1 (ISUP 3–4); found {bad}")
    return lab


def make_split(
    labels: pd.Series,
    splits: pd.Series | None = None,
    test_size: float = 0.3,
    seed: int = 0,
) -> pd.DataFrame:
    """Assign every labelled patient to ``train`` or ``test``.

    Args:
        labels: ``high_grade`` (0/1) indexed by ``patient_id``.
        splits: The manifest's ``split`` column (``train``/``test``/missing) indexed by ``patient_id``.
            Used as is when every patient has a value; mixing given and missing values is an error.
        test_size: Test fraction of the stratified random split (0.3 = the usual 7:3).
        seed: Seed of the random split.

    Returns:
        DataFrame with columns ``patient_id`` and ``split``, in the order of ``labels``.

    Raises:
        CohortError: unlabeled patients, a partial or invalid split column, or a training set lacking a class.
    """
    lab = _clean_labels(labels)
    ids = lab.index.astype(str)
    given = None
    if splits is not None:
        given = splits.reindex(lab.index)
        present = given.notna() & (given.astype(str).str.strip() != "")
        if present.any() and not present.all():
            absent = lab.index[~present].tolist()
            raise CohortError(
                f"the manifest gives a split for some patients but not for {len(absent)}: {absent[:5]}; "
                "fill the split column for every patient or remove it"
            )
        if not present.any():
            given = None
    if given is not None:
        values = given.astype(str).str.strip().str.lower()
        bad = sorted(set(values) - set(SPLITS))
        if bad:
            raise CohortError(f"split values must be 'train' or 'test'; found {bad}")
        out = pd.DataFrame({"patient_id": ids, "split": values.to_numpy()})
    else:
        counts = np.bincount(lab.to_numpy(), minlength=2)
        if counts.min() < 2:
            raise CohortError(f"a stratified split needs at least 2 patients per class; got {counts.tolist()}")
        train_ids, _ = train_test_split(
            np.asarray(ids), test_size=test_size, stratify=lab.to_numpy(), random_state=seed, shuffle=True
        )
        train = set(train_ids.tolist())
        out = pd.DataFrame({"patient_id": ids, "split": ["train" if p in train else "test" for p in ids]})
    train_lab = lab.to_numpy()[out["split"].to_numpy() == "train"]
    if train_lab.size == 0 or len(set(train_lab.tolist())) < 2:
        raise CohortError("the training set must contain low- and high-grade patients")
    return out


def write_split(split: pd.DataFrame, run_dir: str | Path) -> Path:
    """Record the split as ``<run_dir>/split.csv``."""
    path = Path(run_dir) / "split.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(path, index=False)
    return path


def read_split(path: str | Path) -> pd.DataFrame:
    """Read a recorded ``split.csv``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("split file not found", path=path)
    frame = pd.read_csv(path, dtype={"patient_id": str, "split": str}, keep_default_na=False)
    if list(frame.columns) != ["patient_id", "split"]:
        raise ModelError("a split file needs exactly the columns patient_id, split", path=path)
    return frame


def repeated_cv_oof(
    estimator: BaseEstimator,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    n_splits: int = 5,
    n_repeats: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Repeated stratified k-fold CV on training patients: one out-of-fold probability per repeat.

    The estimator (a whole pipeline, selection included, or a search that tunes one) is cloned and refitted on
    each training fold.

    Returns:
        DataFrame indexed like ``X`` with columns ``repeat_0 … repeat_{n_repeats-1}``.
    """
    y_arr = np.asarray(y).astype(np.int64)
    labels = pd.Series(y_arr, index=X.index)  # a tuning search (nested estimates) indexes y like X
    out = np.full((len(X), n_repeats), np.nan)
    rskf = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    for i, (tr, te) in enumerate(rskf.split(np.zeros(len(y_arr)), y_arr)):
        model = clone(estimator).fit(X.iloc[tr], labels.iloc[tr])
        out[te, i // n_splits] = model.predict_proba(X.iloc[te])[:, 1]
    return pd.DataFrame(out, index=X.index, columns=[f"repeat_{r}" for r in range(n_repeats)])


def train_test_ids(split: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Training and test patient ids of a split table."""
    s: Any = split.set_index("patient_id")["split"]
    return s.index[s == "train"].tolist(), s.index[s == "test"].tolist()
