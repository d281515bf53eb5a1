"""Beeswarm and source-share figures of the contributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rccgrade.models.arms import build_arm
from rccgrade.models.explain import arm_contribution_summary
from rccgrade.models.settings import ModelSettings
from rccgrade.report.explain_figures import beeswarm_positions, save_explanation_figures


def test_beeswarm_positions_spread_ties_and_keep_singletons_on_the_line() -> None:
    pos = beeswarm_positions(np.array([0.0, 0.0, 0.0, 0.0, 5.0]))
    assert pos[4] == 0.0
    assert len(set(np.round(pos[:4], 12))) == 4  # four ties, four distinct offsets
    assert np.abs(pos).max() <= 0.35 + 1e-12
    np.testing.assert_array_equal(pos, beeswarm_positions(np.array([0.0, 0.0, 0.0, 0.0, 5.0])))


def test_figures_and_share_csv_are_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    table = pd.DataFrame(
        {
            "clin:age": rng.normal(60, 10, n),
            **{f"rad:arterial:original_firstorder_F{j}": rng.normal(size=n) for j in range(5)},
        },
        index=pd.Index([f"p{i}" for i in range(n)], name="patient_id"),
    )
    y = pd.Series((table["clin:age"] + 10 * table.iloc[:, 1] + rng.normal(0, 5, n) > 60).astype(int), index=table.index)
    settings = ModelSettings(combined_sources=["clinical", "radiomics"], selection={"steps": ["near_constant"]})
    model = build_arm("combined", list(table.columns), settings).fit(table, y)
    summary = arm_contribution_summary(model, table, "combined")
    paths = save_explanation_figures({"combined": summary}, str(tmp_path))
    for key in ("combined", "source_shares"):
        assert paths[key]["svg"].stat().st_size > 1000 and paths[key]["png"].stat().st_size > 1000
    shares = pd.read_csv(paths["source_shares"]["csv"], index_col=0)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert shares.loc["combined", "radiomics"] > shares.loc["combined", "clinical"]
