"""Model bundles: round trip, tamper refusal, allow-list, predict checks and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rccgrade.cache import file_checksum
from rccgrade.errors import ModelError
from rccgrade.features.table import save_table
from rccgrade.models.arms import fit_arms
from rccgrade.models.bundle import MODEL_FILE, bundle_from_arms, load_bundle
from rccgrade.models.predict import predict_bundle, settings_differences
from rccgrade.models.split import make_split, train_test_ids

FEATURE_SETTINGS = {"radiomics": {"binWidth": 25, "phases": ["arterial"]}, "deep": {"weights": "imagenet"}}
RAD_METADATA = {"stage": "radiomics", "params": {"setting": {"binWidth": 25}}, "phases": ["arterial"]}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> dict[str, Path]:
    table, _, _, res = signal_fit
    root = tmp_path_factory.mktemp("bundles")
    return {
        arm: bundle_from_arms(
            res,
            arm,
            table,
            root / arm.replace(":", "_"),
            feature_settings=FEATURE_SETTINGS,
            feature_metadata={"radiomics": RAD_METADATA},
        )
        for arm in ("combined", "stacked", "clinical")
    }


@pytest.mark.parametrize("arm", ["combined", "stacked"])
def test_round_trip_identical_predictions(arm: str, bundles: dict[str, Path], signal_fit: tuple[Any, ...]) -> None:
    table, _, split, res = signal_fit
    _, test = train_test_ids(split)
    bundle = load_bundle(bundles[arm])
    np.testing.assert_array_equal(bundle.model.predict_proba(table.loc[test])[:, 1], res.test_proba[arm].to_numpy())
    preds = predict_bundle(bundle, table.loc[test], FEATURE_SETTINGS)
    np.testing.assert_array_equal(preds["probability"].to_numpy(), res.test_proba[arm].to_numpy())
    assert bundle.threshold == res.thresholds[arm]
    np.testing.assert_array_equal(preds["predicted_class"], (preds["probability"] >= res.thresholds[arm]).astype(int))
    meta = json.loads((bundles[arm] / "bundle.json").read_text())
    assert meta["arm"] == arm and meta["n_train"] == len(res.train_ids)
    assert meta["feature_settings"] == FEATURE_SETTINGS
    assert meta["model_settings"]["cv_folds"] == 3
    assert {"scikit-learn", "numpy", "skops"} <= set(meta["package_versions"])
    assert len(meta["training_checksum"]) == 64


def test_bundle_records_needed_features(bundles: dict[str, Path], signal_fit: tuple[Any, ...]) -> None:
    table = signal_fit[0]
    clinical = load_bundle(bundles["clinical"])
    assert clinical.feature_names == ["clin:age", "clin:sex", "clin:size"]
    combined = load_bundle(bundles["combined"])
    assert set(combined.feature_names) == set(table.columns)


def test_tampered_model_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(bundles["clinical"], copy)
    data = bytearray((copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        load_bundle(copy)


class Sneaky:
    """A type outside the trusted list."""


def test_untrusted_type_refused_even_with_matching_checksum(bundles: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    import skops.io as sio

    copy = tmp_path / "sneaky"
    shutil.copytree(bundles["clinical"], copy)
    sio.dump({"model": Sneaky()}, copy / MODEL_FILE)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["model_sha256"] = file_checksum(copy / MODEL_FILE)  # attacker also rewrote both checksums
    (copy / "bundle.json").write_text(json.dumps(meta))
    sums = {"bundle.json": file_checksum(copy / "bundle.json"), MODEL_FILE: meta["model_sha256"]}
    (copy / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(ModelError, match="Sneaky"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"bundle\.json"):
        load_bundle(tmp_path)


def test_predict_refuses_missing_features_and_other_settings(
    bundles: dict[str, Path], signal_fit: tuple[Any, ...]
) -> None:
    table = signal_fit[0]
    bundle = load_bundle(bundles["combined"])
    with pytest.raises(ModelError, match=r"lacks 30 .*deep:box"):
        predict_bundle(bundle, table.drop(columns=[c for c in table.columns if c.startswith("deep:")]))
    other = {"radiomics": {"binWidth": 10, "phases": ["arterial"]}, "deep": {"weights": "imagenet"}}
    with pytest.raises(ModelError, match=r"radiomics\.binWidth: model 25, features 10"):
        predict_bundle(bundle, table, other)
    stage_table = {**RAD_METADATA, "params": {"setting": {"binWidth": 10}}}
    with pytest.raises(ModelError, match=r"radiomics table: params\.setting\.binWidth: model 25, features 10"):
        predict_bundle(bundle, table, stage_table)
    with pytest.raises(ModelError, match="radiomics table"):  # a joined table's metadata holding stage entries
        predict_bundle(bundle, table, {"rad": stage_table, "deep": {"stage": "deep"}})
    predict_bundle(bundle, table, RAD_METADATA)
    extra = table.assign(**{"rad:arterial:new": 1.0})
    out = predict_bundle(bundle, extra, {"radiomics": {"binWidth": 25}})
    assert list(out.columns) == ["probability", "predicted_class", "predicted_grade", "threshold", "arm"]


def test_settings_differences_are_listed() -> None:
    a = {"roi": {"dilate_mm": 5.0, "name": "dilated5mm"}, "seed": 0, "only_model": 1}
    b = {"roi": {"dilate_mm": 3, "name": "dilated5mm"}, "seed": 0, "only_features": 2}
    assert settings_differences(a, b) == ["roi.dilate_mm: model 5.0, features 3"]
    assert settings_differences(a, {"roi": {"dilate_mm": 5}}) == []


def test_cli_predict_with_feature_table(bundles: dict[str, Path], signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    from rccgrade.cli import app

    table, _, split, res = signal_fit
    _, test = train_test_ids(split)
    feats = save_table(table.loc[test], tmp_path / "new.parquet", settings=FEATURE_SETTINGS)
    out = tmp_path / "preds.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(bundles["combined"]), "--features", str(feats), "--out", str(out)])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    assert list(preds.index) == test
    np.testing.assert_allclose(preds["probability"].to_numpy(), res.test_proba["combined"].to_numpy(), rtol=1e-12)

    bad = save_table(table.loc[test], tmp_path / "bad.parquet", settings={"radiomics": {"binWidth": 5}})
    result = runner.invoke(app, ["predict", str(bundles["combined"]), "--features", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "binWidth" in result.output


def test_every_classifier_round_trips(make_table: Callable[..., Any], fast: Callable[..., Any], tmp_path: Path) -> None:
    table, y = make_table(seed=6, n=100, n_rad=8, n_deep=4)
    train, test = train_test_ids(make_split(y, seed=6))
    for clf in ("svm", "random_forest", "xgboost", "lightgbm"):
        res = fit_arms(table, y, train, fast(arms=["clinical"], classifier=clf, nested_oof=False), seed=0)
        path = bundle_from_arms(res, "clinical", table, tmp_path / clf)
        loaded = load_bundle(path)
        np.testing.assert_array_equal(
            loaded.model.predict_proba(table.loc[test])[:, 1], res.test_proba["clinical"].to_numpy()
        )


def test_predict_from_manifest_computes_clinical_features(
    bundles: dict[str, Path], signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    """A clinical-only bundle needs no imaging: features come from the manifest's clinical columns."""
    from rccgrade.cli import app

    table, _, split, res = signal_fit
    _, test = train_test_ids(split)
    rows = table.loc[test, ["clin:age", "clin:size", "clin:sex"]].copy()
    rows.columns = ["age", "size", "sex"]
    for col in ("arterial", "nephrographic", "excretory", "mask"):
        rows[col] = [f"{p}_{col}.nii.gz" for p in rows.index]
    manifest = tmp_path / "new.csv"
    rows.reset_index()[["patient_id", "arterial", "nephrographic", "excretory", "mask", "age", "size", "sex"]].to_csv(
        manifest, index=False
    )
    out = tmp_path / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(bundles["clinical"]), str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    assert list(preds.index) == test
    np.testing.assert_allclose(preds["probability"].to_numpy(), res.test_proba["clinical"].to_numpy(), rtol=1e-9)


def test_compute_features_needs_recorded_stage_settings(bundles: dict[str, Path], tmp_path: Path) -> None:
    from rccgrade.models.predict_manifest import compute_features_for_bundle

    bundle = load_bundle(bundles["combined"])  # FEATURE_SETTINGS has no 'preprocess' entry
    with pytest.raises(ModelError, match="'preprocess' settings"):
        compute_features_for_bundle(bundle, tmp_path / "m.csv", tmp_path / "work")
