"""Out-of-fold probabilities and the stacked arm are honest (issue 18), checked against refits done here.

* Every arm's OOF probability of a training patient equals a refit of that arm (same parameters) on the
  other folds, with folds built here by scikit-learn (not by the code under test).
* A memorising classifier (1-nearest-neighbour on a unique patient number) has apparent AUC 1 and OOF
  AUC ≈ 0.5 in every arm, including the repeated-CV OOF of ``models.split``.
* The stacked (non-negative) meta-learner is fitted on the base arms' OOF logits, not on their apparent ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from rccgrade.models import arms as arms_module
from rccgrade.models.arms import ArmsResult, fit_arms
from rccgrade.models.stacking import NonNegativeLogisticRegression

EPS = 1e-6  # the documented clipping of probabilities before the stacked arm's logit


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _folds(y: pd.Series, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y.to_numpy()))


def test_oof_probability_equals_refit_on_the_other_folds(signal_fit: tuple[Any, ...]) -> None:
    table, _y, _split, res = signal_fit
    X = table.loc[res.train_ids]
    y = res.y_train
    folds = _folds(y, res.settings.cv_folds, res.seed)
    singles = [a for a in res.arms if a != "stacked"]
    assert set(singles) == {"clinical", "radiomics", "deep:box", "combined"}
    for arm in singles:
        expected = np.full(len(y), np.nan)
        for tr, te in folds:
            model = clone(res.models[arm]).fit(X.iloc[tr], y.iloc[tr])
            expected[te] = model.predict_proba(X.iloc[te])[:, 1]
        np.testing.assert_allclose(res.oof_proba[arm].to_numpy(), expected, rtol=1e-9, atol=1e-12, err_msg=arm)
        # and the OOF column is not the apparent one
        assert np.abs(res.oof_proba[arm] - res.train_proba[arm]).max() > 1e-3, arm
    # stacked: OOF = a logistic regression on the other folds' base OOF logits
    base = [a for a in singles if a != "combined"]
    Z = _logit(res.oof_proba[base].to_numpy())
    expected = np.full(len(y), np.nan)
    for tr, te in folds:
        meta = NonNegativeLogisticRegression(C=1.0).fit(Z[tr], y.iloc[tr])
        expected[te] = meta.predict_proba(Z[te])[:, 1]
    np.testing.assert_allclose(res.oof_proba["stacked"].to_numpy(), expected, rtol=1e-7, atol=1e-10)


def test_stacked_meta_learner_is_trained_on_oof_probabilities(signal_fit: tuple[Any, ...]) -> None:
    _table, _y, _split, res = signal_fit
    stacked = res.models["stacked"]
    base = [name for name, _ in stacked.estimators_]
    assert base == ["clinical", "radiomics", "deep:box"]
    on_oof = NonNegativeLogisticRegression(C=1.0).fit(_logit(res.oof_proba[base].to_numpy()), res.y_train)
    on_apparent = NonNegativeLogisticRegression(C=1.0).fit(_logit(res.train_proba[base].to_numpy()), res.y_train)
    np.testing.assert_allclose(stacked.meta_.coef_, on_oof.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(stacked.meta_.intercept_, on_oof.intercept_, rtol=1e-6, atol=1e-8)
    assert np.abs(on_apparent.coef_ - on_oof.coef_).max() > 1e-3  # the check can tell the two apart
    # the base arms inside the stacked model are the arms fitted on all training patients
    for name, model in stacked.estimators_:
        assert model is res.models[name]


def test_stacked_classifier_fit_uses_oof_probabilities(
    make_table: Callable[..., Any], fast: Callable[..., Any]
) -> None:
    from rccgrade.models.arms import StackedClassifier, build_arm

    table, y = make_table(seed=8, n=90, n_rad=6, n_deep=4)
    settings = fast(selection={"steps": ["near_constant"]})
    arms = [(a, build_arm(a, list(table.columns), settings, seed=0)) for a in ("clinical", "radiomics")]
    model = StackedClassifier(arms, cv=3, random_state=4).fit(table, y)
    oof = np.full((len(y), 2), np.nan)
    for tr, te in _folds(y, 3, 4):
        for j, (_, est) in enumerate(arms):
            oof[te, j] = clone(est).fit(table.iloc[tr], y.iloc[tr]).predict_proba(table.iloc[te])[:, 1]
    meta = NonNegativeLogisticRegression(C=1.0).fit(_logit(oof), y)
    np.testing.assert_allclose(model.meta_.coef_, meta.coef_, rtol=1e-6, atol=1e-8)
    base = model.base_probabilities(table)
    assert list(base.columns) == ["clinical", "radiomics"] and base.index.equals(table.index)
    for (name, fitted), (_, est) in zip(model.estimators_, arms, strict=True):
        full = clone(est).fit(table, y)
        np.testing.assert_allclose(fitted.predict_proba(table), full.predict_proba(table), rtol=1e-9, err_msg=name)


def _unique_id_table(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Random labels; the only feature of every source is a unique patient number (pure memorisation)."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    uid = rng.permutation(n).astype(float)
    y = pd.Series(rng.permutation(np.r_[np.ones(n // 2, dtype=int), np.zeros(n - n // 2, dtype=int)]), index=ids)
    table = pd.DataFrame({"clin:uid": uid, "rad:arterial:uid": uid, "deep:box:f0000": uid}, index=ids)
    return table, y


@pytest.fixture(scope="module")
def memorised() -> tuple[pd.Series, ArmsResult]:
    table, y = _unique_id_table()
    settings = arms_module.ModelSettings(
        arms=["clinical", "radiomics", "deep:*", "combined", "stacked"],
        param_grids={"logistic": {}},
        cv_folds=4,
        cv_repeats=2,
        clinical_steps=[],
        selection={"steps": []},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(arms_module, "make_classifier", lambda name, seed=0: KNeighborsClassifier(n_neighbors=1))
        res = fit_arms(table, y, list(table.index), settings, seed=0)
    return y, res


def test_memorising_classifier_has_apparent_auc_1_and_oof_auc_half(memorised: tuple[pd.Series, ArmsResult]) -> None:
    y, res = memorised
    assert res.arms == ["clinical", "radiomics", "deep:box", "combined", "stacked"]
    for arm in res.arms:
        oof_auc = roc_auc_score(y, res.oof_proba[arm])
        assert abs(oof_auc - 0.5) < 0.15, f"{arm}: OOF AUC {oof_auc:.3f} of a memorising model"
        if arm != "stacked":  # the meta-model of noise OOF logits has no reason to rank the apparent ones
            assert roc_auc_score(y, res.train_proba[arm]) == 1.0, arm
    for arm, frame in res.repeated_oof.items():
        assert frame.shape == (len(y), 2) and frame.notna().all().all()
        for col in frame:
            assert abs(roc_auc_score(y, frame[col]) - 0.5) < 0.15, f"{arm} {col}"
