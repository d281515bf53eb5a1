"""`rccgrade explain BUNDLE`: feature names in words, coefficients, threshold, cohort summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.models.bundle import bundle_from_arms
from rccgrade.models.explain_cli import describe_feature


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            "rad:arterial:wavelet-LLH_glcm_Contrast",
            ["arterial phase", "wavelet LLH", "low-pass in x", "high-pass in z", "co-occurrence", "Contrast"],
        ),
        ("rad:excretory:original_shape_Sphericity", ["excretory phase", "no filter", "3-D shape", "Sphericity"]),
        ("rad:nephrographic:log-sigma-2-0-mm-3D_firstorder_Median", ["sigma 2.0 mm", "first-order", "Median"]),
        ("deep:box:pc003", ["ROI 'box'", "principal component 3"]),
        ("clin:sex=M", ["'sex'", "'M'"]),
        ("[radiomics] rad:arterial:original_glszm_ZoneEntropy", ["via arm radiomics", "size-zone", "ZoneEntropy"]),
    ],
)
def test_feature_names_in_words(name: str, words: list[str]) -> None:
    text = describe_feature(name)
    assert all(w in text for w in words), text


def test_explain_command_writes_json_markdown_html(signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    table, _, _, res = signal_fit
    bundle = bundle_from_arms(res, "combined", table, tmp_path / "b")
    out = tmp_path / "ex"
    result = CliRunner().invoke(app, ["explain", str(bundle), "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    data = json.loads((out / "explain.json").read_text())
    assert data["arm"] == "combined" and data["threshold"] == pytest.approx(res.thresholds["combined"])
    assert data["n_train"] == len(res.train_ids)
    assert set(data["sources"]) == {"clinical", "radiomics", "deep:box"}
    sel = res.selected["combined"]
    coef = {f["feature"]: f["coefficient"] for f in data["features"]}
    for rec in sel.itertuples():
        assert coef[rec.feature] == pytest.approx(rec.coefficient)
    assert "rad:arterial:f000" in (out / "explain.md").read_text()
    assert "<table>" in (out / "explain.html").read_text()
