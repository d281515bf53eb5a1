"""The gated ``combined`` arm (models/source_gate.py): a source enters when its inner-CV scores separate the
classes; the pooled out-of-fold scores are checked against scikit-learn's own ``cross_val_predict``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist
from scipy.stats import ttest_1samp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from rccgrade.features.fit_cache import clear_fitted_states
from rccgrade.models.arms import build_arm, fit_arms
from rccgrade.models.bundle import bundle_from_arms, load_bundle, required_features
from rccgrade.models.source_gate import GatedSourceUnion, source_signal
from rccgrade.models.split import make_split, train_test_ids

from .conftest import fusion_settings, source_blocks


def _settings(fast: Callable[..., Any], **kw: Any) -> Any:
    return fusion_settings(fast, **{"combined_selection": "gated", **kw})


def test_source_signal_equals_sklearn_cross_val_predict(fast: Callable[..., Any]) -> None:
    """Catches in-fold scores, other folds, a repeat left out, a pooled instead of per-fold test, a two-sided
    test, or the naive (uncorrected) t-test of the repeated fold AUCs."""
    table, y = source_blocks(seed=4, n=300, n_noise=5)
    model = build_arm("radiomics", list(table.columns), _settings(fast, arms=["radiomics"]), seed=0)
    chain = clone(model.named_steps["features"].transformers[0][2])
    x = table[[c for c in table.columns if c.startswith("rad:")]]
    lab = y.to_numpy()
    got = source_signal(chain, x, lab, cv=5, repeats=2, random_state=7)
    pipe = Pipeline([("chain", clone(chain)), ("lr", LogisticRegression(C=1.0, max_iter=5000))])
    rng = np.random.RandomState(7)  # RepeatedStratifiedKFold: each repeat's shuffle draws from one generator
    aucs = []
    for _ in range(2):
        folds = list(StratifiedKFold(5, shuffle=True, random_state=rng).split(x, lab))
        oof = cross_val_predict(pipe, x, lab, cv=folds, method="decision_function")
        aucs += [roc_auc_score(lab[va], oof[va]) for _, va in folds]
    assert got["fold_aucs"] == pytest.approx(aucs, abs=1e-12)
    assert (got["folds"], got["repeats"]) == (5, 2)
    assert got["auc"] == pytest.approx(np.mean(aucs), abs=1e-12)
    # Nadeau-Bengio: the naive t statistic shrunk by sqrt((1/J) / (1/J + 1/(k-1))), J = 10, k = 5
    naive = ttest_1samp(aucs, 0.5)
    assert got["p"] == pytest.approx(t_dist.sf(naive.statistic * np.sqrt(0.1 / (0.1 + 0.25)), 9), rel=1e-9)
    assert got["p"] > ttest_1samp(aucs, 0.5, alternative="greater").pvalue  # more conservative than the naive
    assert got["p"] < 1e-3  # two strong features


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_source_is_gated_out_and_signal_sources_stay_whole(seed: int, fast: Callable[..., Any]) -> None:
    """Catches a gate that keeps everything (the plain union) or drops a real source (clinical alone: AUC ≈ 0.65)."""
    table, y = source_blocks(seed, n=400)
    clear_fitted_states()
    model = build_arm("combined", list(table.columns), _settings(fast), seed=seed).fit(table, y)
    union = model.named_steps["features"]
    assert isinstance(union, GatedSourceUnion)
    kept = {name for name, g in union.gate_.items() if g["kept"]}
    assert kept == {"clinical", "radiomics"}, union.gate_
    assert not any(c.startswith("deep:") for c in required_features(model))
    # a kept source is whole: its chain's output, exactly as the single-source arm selects it
    radiomics = build_arm("radiomics", list(table.columns), _settings(fast, arms=["radiomics"]), seed=seed)
    alone = radiomics.fit(table, y).named_steps["features"].get_feature_names_out()
    assert set(alone) <= set(union.get_feature_names_out())


def test_when_no_source_passes_the_most_convincing_one_enters(fast: Callable[..., Any]) -> None:
    """Catches an arm left without features, or the least convincing source chosen (max instead of min p)."""
    table, y = source_blocks(seed=5, n=120, n_noise=30)
    settings = _settings(fast, combined_sources=["radiomics", "deep:*"], combined_gate_alpha=1e-30)
    clear_fitted_states()
    model = build_arm("combined", list(table.columns), settings, seed=0).fit(table, y)
    gate = model.named_steps["features"].gate_
    assert [name for name, g in gate.items() if g["kept"]] == ["radiomics"], gate
    assert gate["radiomics"]["p"] < gate["deep:noise"]["p"]


def test_gate_sees_training_patients_only_and_loads_from_a_bundle(fast: Callable[..., Any], tmp_path: Any) -> None:
    """Catches a gate fitted on every patient (a test-only perfect feature or flipped test labels would move it)."""
    table, y = source_blocks(seed=2, n=200, n_noise=60)
    train, test = train_test_ids(make_split(y, seed=2))
    settings = _settings(fast, arms=["clinical", "radiomics", "combined"])
    clear_fitted_states()
    base = fit_arms(table, y, train, settings, seed=2)
    wild, y_wild = table.copy(), y.copy()
    wild.loc[test, "deep:noise:f0000"] = y.loc[test] * 50.0  # a test-only "perfect" noise feature
    y_wild.loc[test] = 1 - y_wild.loc[test]
    clear_fitted_states()
    other = fit_arms(wild, y_wild, train, settings, seed=2)
    assert base.fusion["combined"]["gate"] == other.fusion["combined"]["gate"]
    assert not base.fusion["combined"]["gate"]["deep:noise"]["kept"]
    pd.testing.assert_frame_equal(base.oof_proba, other.oof_proba)
    loaded = load_bundle(bundle_from_arms(base, "combined", table, tmp_path / "combined"))
    assert loaded.meta["extra"]["fusion"] == base.fusion["combined"]
    np.testing.assert_array_equal(loaded.model.predict_proba(table.loc[test])[:, 1], base.test_proba["combined"])
