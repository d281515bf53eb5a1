"""The study report's contribution section: beeswarms per arm, the source-share table, SVM said unavailable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rccgrade.models.arms import build_arm
from rccgrade.models.explain import contributions, feature_source
from rccgrade.study.report_blocks import explanation_blocks

from .conftest import _signal_table, fast_settings


def _kinetic_table() -> tuple[pd.DataFrame, pd.Series]:
    table, y = _signal_table(seed=4, n=160, n_rad=6, n_deep=4)
    rng = np.random.default_rng(4)
    table["kin:tumour_washout_mean"] = y.to_numpy() * 2.0 + rng.normal(size=len(y))
    return table, y


def test_sources_come_from_the_feature_prefixes_generically() -> None:
    assert feature_source("clin:sex=M", "x") == "clinical"
    assert feature_source("rad:arterial@ring5mm:original_glcm_Contrast", "x") == "radiomics"
    assert feature_source("kin:tumour_washout_mean", "x") == "kinetic"
    assert feature_source("deep:box:pc003", "x") == "deep:box"
    assert feature_source("[combined] kin:tumour_washout_mean", "x") == "kinetic"
    assert feature_source("[combined]", "combined") == "combined"


def test_report_block_lists_every_arm_shares_by_source_and_refuses_svm(tmp_path: Path) -> None:
    table, y = _kinetic_table()
    cols = list(table.columns)
    combined = build_arm(
        "combined",
        cols,
        fast_settings(combined_sources=["clinical", "radiomics", "kinetic"], combined_selection="union"),
        seed=0,
    ).fit(table, y)
    svm = build_arm("radiomics", cols, fast_settings(classifier="svm"), seed=0).fit(table, y)
    test = table.iloc[:40]
    block, figures = explanation_blocks({"combined": combined, "radiomics": svm}, test, "test cohort", tmp_path)
    by_arm = {a["arm"]: a for a in block["arms"]}
    assert list(by_arm) == ["combined", "radiomics"]  # every arm accounted for
    assert by_arm["combined"]["available"] and by_arm["combined"]["figure"] in figures
    assert not by_arm["radiomics"]["available"] and by_arm["radiomics"]["figure"] is None
    assert by_arm["radiomics"]["reason"].startswith("not available for SVM")
    # the share table: only arms with contributions, one column per source prefix (kinetic included)
    assert [r["label"] for r in block["shares"]["rows"]] == ["Combined"]
    shares = dict(zip(block["shares"]["sources"], block["shares"]["rows"][0]["cells"], strict=True))
    assert set(shares) == {"Clinical", "Radiomics", "Kinetic"}
    # reference: mean |coef × z| per source recomputed from the contributions of the test patients only
    c = contributions(combined, test, "combined")
    per_source = c.values.abs().mean().groupby(lambda f: feature_source(f, "?")).sum()
    ref = per_source / per_source.sum()
    assert shares["Kinetic"] == pytest.approx(ref["kinetic"], rel=1e-12)
    assert shares["Clinical"] == pytest.approx(ref["clinical"], rel=1e-12)
    assert sum(shares.values()) == pytest.approx(1.0)
    for key in figures:
        assert Path(figures[key]["png"]).stat().st_size > 1000
    assert (tmp_path / "source_shares.csv").is_file()
