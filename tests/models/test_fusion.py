"""The ``combined`` arm's per-source budgets: a noise block gets 0, chosen on training patients only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from rccgrade.features.fit_cache import clear_fitted_states
from rccgrade.models import fusion
from rccgrade.models.arms import build_arm, fit_arms
from rccgrade.models.bundle import bundle_from_arms, load_bundle, required_features
from rccgrade.models.fusion import BudgetedSourceUnion
from rccgrade.models.settings import ModelSettings
from rccgrade.models.split import make_split, train_test_ids

from .conftest import fusion_settings, source_blocks


def _settings(fast: Callable[..., Any], **kw: Any) -> ModelSettings:
    return fusion_settings(fast, **{"combined_selection": "budgets", **kw})


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_block_gets_budget_zero(seed: int, fast: Callable[..., Any]) -> None:
    table, y = source_blocks(seed)
    settings = _settings(fast)
    clear_fitted_states()
    model = build_arm("combined", list(table.columns), settings, seed=seed).fit(table, y)
    union = model.named_steps["features"]
    assert isinstance(union, BudgetedSourceUnion)
    print(seed, union.budgets_, union.budget_trace_["path"])
    assert union.budgets_["deep:noise"] == 0
    assert union.budgets_["clinical"] >= 1 and union.budgets_["radiomics"] >= 2
    assert not any(c.startswith("deep:") for c in required_features(model))
    assert {"clin:age", "rad:arterial:f000", "rad:arterial:f001"} <= set(union.get_feature_names_out())
    assert len(union.get_feature_names_out()) <= union.budgets_["clinical"] + union.budgets_["radiomics"]


def test_budgets_use_training_patients_only_and_are_deterministic(fast: Callable[..., Any], tmp_path: Any) -> None:
    table, y = source_blocks(seed=2, n=200, n_noise=60)
    train, test = train_test_ids(make_split(y, seed=2))
    settings = _settings(fast, arms=["clinical", "radiomics", "combined", "stacked"])
    clear_fitted_states()
    base = fit_arms(table, y, train, settings, seed=2)
    wild, y_wild = table.copy(), y.copy()
    wild.loc[test, "rad:arterial:f002"] = y.loc[test] * 50.0  # a test-only "perfect" feature
    y_wild.loc[test] = 1 - y_wild.loc[test]
    clear_fitted_states()
    other = fit_arms(wild, y_wild, train, settings, seed=2)
    assert base.fusion["combined"]["budgets"] == other.fusion["combined"]["budgets"]
    pd.testing.assert_frame_equal(base.oof_proba, other.oof_proba)
    pd.testing.assert_frame_equal(base.selected["combined"], other.selected["combined"])
    # determinism: the same seed gives the same numbers (cache cleared, so this is a real refit)
    clear_fitted_states()
    again = fit_arms(table, y, train, settings, seed=2)
    assert again.fusion == base.fusion
    np.testing.assert_array_equal(again.test_proba.to_numpy(), base.test_proba.to_numpy())
    # the budgets are a property of the training data: refitting the union on them alone gives the same
    clear_fitted_states()
    alone = build_arm("combined", list(table.columns), settings, seed=2).fit(table.loc[train], y.loc[train])
    assert alone.named_steps["features"].budgets_ == base.fusion["combined"]["budgets"]
    # recorded in the bundle (extra.fusion), and the budgeted union and the meta-model load as trusted types
    for arm in ("combined", "stacked"):
        loaded = load_bundle(bundle_from_arms(base, arm, table, tmp_path / arm))
        assert loaded.meta["extra"]["fusion"] == base.fusion[arm]
        np.testing.assert_array_equal(loaded.model.predict_proba(table.loc[test])[:, 1], base.test_proba[arm])
    assert set(base.fusion["stacked"]["stacking_weights"]) == {"clinical", "radiomics"}


def test_plain_union_is_still_available(fast: Callable[..., Any]) -> None:
    table, _y = source_blocks(seed=3, n=120, n_noise=10)
    model = build_arm("combined", list(table.columns), _settings(fast, combined_selection="union"), seed=0)
    assert type(model.named_steps["features"]).__name__ == "SourceUnion"


def test_settings_validation() -> None:
    assert ModelSettings(combined_budgets=[8, 0, 2, 2]).combined_budgets == [0, 2, 8]
    for bad in ([-1, 2], [0], []):
        with pytest.raises(ValidationError, match="combined_budgets"):
            ModelSettings(combined_budgets=bad)
    with pytest.raises(ValidationError, match="auto_candidates"):
        ModelSettings(auto_candidates=[])
    with pytest.raises(ValidationError, match="auto_candidates"):
        ModelSettings(auto_candidates=["svm", "svm"])
    with pytest.raises(ValidationError):
        ModelSettings(auto_candidates=["auto"])
    with pytest.raises(ValidationError):
        ModelSettings(stacking_meta="ridge")
    assert ModelSettings(classifier="auto", arm_classifiers={"radiomics": "auto"}).classifier == "auto"


def test_budget_scorer_is_logistic_by_default_and_can_be_a_tree() -> None:
    """An XOR source is invisible to the default logistic scorer (budget 0) and found by a forest scorer;
    the logistic scorer given explicitly equals the default."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 3))
    y = (((x[:, 0] > 0) ^ (x[:, 1] > 0)) | (rng.random(n) < 0.05)).astype(np.int64)
    x[:, 2] += 0.4 * (y - 0.5)  # a weak linear source
    frame = pd.DataFrame(x, columns=["xor:a", "xor:b", "lin:c"])
    chain = Pipeline([("scale", StandardScaler().set_output(transform="pandas"))])
    blocks = [("xor", chain, frame[["xor:a", "xor:b"]]), ("lin", chain, frame[["lin:c"]])]
    default, _ = fusion.choose_budgets(blocks, y, [0, 1, 2], cv=3, random_state=0)
    explicit, _ = fusion.choose_budgets(
        blocks, y, [0, 1, 2], cv=3, random_state=0, scorer=LogisticRegression(C=1.0, max_iter=5000)
    )
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=0)
    tree, trace = fusion.choose_budgets(blocks, y, [0, 1, 2], cv=3, random_state=0, scorer=forest)
    assert default == explicit
    assert default["xor"] == 0 and default["lin"] == 1
    assert tree["xor"] == 2 and trace["score"] > 0.85


def test_budget_scorer_setting_picks_the_arms_classifier(fast: Callable[..., Any]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    cols = ["clin:age", "rad:arterial:f000", "deep:box:f0000"]

    def union(**kw: Any) -> Any:
        return build_arm("combined", cols, fast(arms=["combined"], combined_selection="budgets", **kw), seed=3).steps[
            0
        ][1]

    assert union(classifier="random_forest").scorer is None  # default: the logistic proxy
    tree = union(classifier="random_forest", combined_budget_scorer="arm").scorer
    assert isinstance(tree, RandomForestClassifier) and tree.random_state == 3
    assert union(classifier="logistic", combined_budget_scorer="arm").scorer is None  # the proxy is the arm's own
    auto = fast(arms=["combined"], classifier="auto", combined_selection="budgets", combined_budget_scorer="arm")
    assert fusion.budgeted_union([], auto, 3, "auto").scorer is None  # auto: choose on the proxy's budgets
    with pytest.raises(ValidationError):
        ModelSettings(combined_budget_scorer="forest")
