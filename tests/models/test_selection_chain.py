"""The new selection steps (near-duplicate grouping, stability selection, elastic net) inside fit_arms."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from rccgrade.models.arms import fit_arms
from rccgrade.models.classifiers import default_grid, make_classifier
from rccgrade.models.split import make_split, train_test_ids

from .conftest import fast_settings


def _with_copies(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Add 4 near-copies of the informative ``rad:arterial:f000`` (|r| > 0.99)."""
    rng = np.random.default_rng(seed)
    out = table.copy()
    base = out["rad:arterial:f000"].to_numpy()
    for k in range(4):
        out[f"rad:arterial:copy{k}"] = base * (1 + k) + rng.normal(scale=0.02, size=base.size)
    return out


def test_grouping_and_stability_selection_in_the_chain(make_table: Callable) -> None:
    table, y = make_table(seed=1)
    table = _with_copies(table)
    train, _ = train_test_ids(make_split(y, seed=1))
    settings = fast_settings(
        arms=["radiomics"],
        selection={"steps": ["near_constant", "group", "stability_selection"], "stability_subsamples": 20},
    )
    res = fit_arms(table, y, train, settings, seed=1)
    sel = res.selected["radiomics"].set_index("feature")
    chosen = [f for f in sel.index if f != "(intercept)"]
    group = {"rad:arterial:f000", *(f"rad:arterial:copy{k}" for k in range(4))}
    assert len(group & set(chosen)) == 1  # one representative of the five copies
    assert int(sel.loc[(group & set(chosen)).pop(), "represents"]) == 5
    assert len(chosen) <= 4  # 40 noise features are held back by the error-controlled threshold
    chain = res.models["radiomics"].named_steps["features"].transformers_[0][2]
    assert chain.named_steps["stability_selection"].error_bound_ <= 1.0 + 1e-9


def test_logistic_enet_classifier_and_grid(make_table: Callable) -> None:
    clf = make_classifier("logistic_enet", seed=3)
    assert isinstance(clf, LogisticRegression) and clf.l1_ratio == 0.5 and clf.solver == "saga"
    assert set(default_grid("logistic_enet")) == {"C", "l1_ratio"}
    table, y = make_table(seed=2)
    train, _ = train_test_ids(make_split(y, seed=2))
    settings = fast_settings(
        arms=["radiomics"],
        classifier="logistic_enet",
        param_grids={"logistic_enet": {"C": [0.05], "l1_ratio": [0.9]}},
        selection={"steps": ["near_constant"]},
    )
    res = fit_arms(table, y, train, settings, seed=2)
    coef = res.selected["radiomics"].set_index("feature")["coefficient"].drop("(intercept)")
    assert (coef == 0).sum() >= 10  # the L1 share zeroes noise features out of the 40
    assert coef["rad:arterial:f000"] > 0
