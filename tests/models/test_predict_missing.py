"""predict treats a missing feature value as training did (the bundle's training-fitted imputer), says so, and
still refuses what training could not have imputed (inf, non-numeric entries, nothing measured)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.features.table import save_table
from rccgrade.models.bundle import bundle_from_arms, load_bundle
from rccgrade.models.predict import predict_table
from rccgrade.models.predict_missing import feature_group, imputer_kinds
from rccgrade.models.split import train_test_ids

RING = ["rad:arterial:f000", "rad:arterial:f001"]  # the informative features (selected by every fit)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> dict[str, Path]:
    table, _, _, res = signal_fit
    root = tmp_path_factory.mktemp("miss")
    return {arm: bundle_from_arms(res, arm, table, root / arm.replace(":", "_")) for arm in ("radiomics", "stacked")}


def _training_median_reference(bundle: Any, row: pd.DataFrame, table: pd.DataFrame, train: list[str]) -> float:
    """The probability with each missing value replaced by the training patients' median, computed here."""
    filled = row.copy()
    for col in filled.columns[filled.isna().iloc[0].to_numpy()]:
        filled[col] = float(table.loc[train, col].median())
    return float(bundle.model.predict_proba(filled[bundle.feature_names])[0, 1])


@pytest.mark.parametrize("arm", ["radiomics", "stacked"])
def test_missing_values_are_imputed_as_in_training(
    arm: str, bundles: dict[str, Path], signal_fit: tuple[Any, ...], caplog: pytest.LogCaptureFixture
) -> None:
    table, _, split, res = signal_fit
    _, test = train_test_ids(split)
    test = list(table.loc[test].dropna().index)  # patients with every value present
    bundle = load_bundle(bundles[arm])
    feats = table.loc[test[:3]].copy()
    feats.loc[test[1], RING] = np.nan  # e.g. a ring thinner than the voxels
    with caplog.at_level(logging.WARNING, logger="rccgrade.models.predict"):
        preds = predict_table(bundle, feats)
    assert list(preds["status"]) == ["ok", "ok", "ok"]
    assert preds.at[test[1], "probability"] == pytest.approx(
        _training_median_reference(bundle, feats.loc[[test[1]]], table, res.train_ids), abs=1e-12
    )
    # imputation really happened: the patient's own values give another probability
    assert preds.at[test[1], "probability"] != pytest.approx(
        float(bundle.model.predict_proba(table.loc[[test[1]], bundle.feature_names])[0, 1]), abs=1e-6
    )
    reason = preds.at[test[1], "reason"]
    assert "imputed" in reason and "rad:arterial (2 features)" in reason
    assert preds.at[test[0], "reason"] == "" and preds.at[test[2], "reason"] == ""
    assert any(test[1] in r.getMessage() and "rad:arterial" in r.getMessage() for r in caplog.records)


def test_what_training_could_not_impute_is_still_refused(bundles: dict[str, Path], signal_fit: tuple[Any, ...]) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    bundle = load_bundle(bundles["radiomics"])
    rad = [c for c in bundle.feature_names if c.startswith("rad:")]
    feats = table.loc[test[:5]].copy()
    feats[RING[0]] = feats[RING[0]].astype(object)
    feats.loc[test[0], RING[0]] = "n/a"  # a non-numeric entry: the imputer would coerce it to NaN silently
    feats.loc[test[1], RING[1]] = np.inf
    feats.loc[test[2], rad] = np.nan  # nothing measured
    feats.loc[test[3], RING[1]] = np.nan  # fine: imputed
    preds = predict_table(bundle, feats)
    assert list(preds["status"]) == ["failed", "failed", "failed", "ok", "ok"]
    assert "'n/a': not a number" in preds.at[test[0], "reason"]
    assert "not finite" in preds.at[test[1], "reason"]
    assert "every one of the model's" in preds.at[test[2], "reason"]
    assert np.isnan(preds["probability"].iloc[:3]).all()


def test_a_model_without_a_readable_imputer_refuses_missing_values(
    bundles: dict[str, Path], signal_fit: tuple[Any, ...]
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    bundle = load_bundle(bundles["radiomics"])
    assert imputer_kinds(bundle.model)[RING[0]] == "numeric"

    class Opaque:  # a model whose imputation rccgrade cannot see
        def __init__(self, model: Any) -> None:
            self.model = model

        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            return self.model.predict_proba(X)

    opaque = type(bundle)(**{**bundle.__dict__, "model": Opaque(bundle.model)})
    feats = table.loc[test[:2]].copy()
    feats.loc[test[0], RING[0]] = np.nan
    preds = predict_table(opaque, feats)
    assert list(preds["status"]) == ["failed", "ok"]
    assert "no training imputation" in preds.at[test[0], "reason"]


def test_feature_groups() -> None:
    assert feature_group("rad:arterial@ring2mm:original_firstorder_Mean") == "rad:arterial@ring2mm"
    assert feature_group("deep:box:f0001") == "deep:box"
    assert feature_group("kin:tumour_washout_mean") == "kin"
    assert feature_group("clin:bmi") == "clin:bmi"


def test_page_and_preds_json_say_what_was_imputed(
    bundles: dict[str, Path], signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    test = list(table.loc[test].dropna().index)
    feats = table.loc[test[:2]].copy()
    feats.loc[test[0], RING] = np.nan
    path = save_table(feats, tmp_path / "f.parquet")
    args = ["predict", str(bundles["radiomics"]), "--features", str(path), "--out", str(tmp_path / "p.csv")]
    result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "r")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "r" / "preds.json").read_text())
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert "rad:arterial (2 features)" in records[0]["reason"] and records[1]["reason"] == ""
    assert "rad:arterial (2 features)" in (tmp_path / "r" / records[0]["page"]).read_text()
    csv = pd.read_csv(tmp_path / "p.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert "imputed" in csv.at[test[0], "reason"]
