"""`predict --map/--missing-variables`: renamed clinical columns, refusal naming the fix, loud imputation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.settings import CohortSettings
from rccgrade.models.bundle import bundle_from_arms, load_bundle
from rccgrade.models.predict_manifest import unit_warnings
from rccgrade.models.split import train_test_ids


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> Path:
    table, _, _, res = signal_fit
    settings = {"cohort": CohortSettings(clinical_types={"sex": "categorical"}).model_dump(mode="json")}
    return bundle_from_arms(
        res, "clinical", table, tmp_path_factory.mktemp("b") / "clinical", feature_settings=settings
    )


def _manifest(tmp_path: Path, table: pd.DataFrame, ids: list[str], names: dict[str, str], drop: str = "") -> Path:
    rows = table.loc[ids, ["clin:age", "clin:size", "clin:sex"]].copy()
    rows.columns = ["age", "size", "sex"]
    for col in ("arterial", "nephrographic", "excretory", "mask"):
        rows[col] = [f"{p}_{col}.nii.gz" for p in rows.index]
    rows = rows.rename(columns=names).drop(columns=[drop] if drop else [])
    path = tmp_path / f"m{len(list(tmp_path.glob('m*.csv')))}.csv"
    rows.reset_index().to_csv(path, index=False)
    return path


def _run(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(result.output) from result.exception
    return result


def _preds(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")


def test_map_renames_a_column_and_gives_the_same_predictions(
    bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    ids = train_test_ids(split)[1][:5]
    plain = _manifest(tmp_path, table, ids, {})
    renamed = _manifest(tmp_path, table, ids, {"age": "age_years"})
    r0 = _run(["predict", str(bundle), str(plain), "--out", str(tmp_path / "a.csv")])
    assert r0.exit_code == 0, r0.output
    refused = _run(["predict", str(bundle), str(renamed), "--out", str(tmp_path / "b.csv")])
    assert refused.exit_code != 0
    text = " ".join(refused.output.split())
    assert "'age'" in text and "--map age=" in text and "--missing-variables impute" in text
    mapped = _run(["predict", str(bundle), str(renamed), "--map", "age=age_years", "--out", str(tmp_path / "c.csv")])
    assert mapped.exit_code == 0, mapped.output
    pd.testing.assert_series_equal(_preds(tmp_path / "a.csv")["probability"], _preds(tmp_path / "c.csv")["probability"])


def test_impute_is_loud_and_bannered(bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    table, _, split, _ = signal_fit
    ids = train_test_ids(split)[1][:4]
    manifest = _manifest(tmp_path, table, ids, {}, drop="age")
    out, rep = tmp_path / "p.csv", tmp_path / "rep"
    args = ["predict", str(bundle), str(manifest), "--out", str(out), "--missing-variables", "impute"]
    result = _run([*args, "--report", str(rep)])
    assert result.exit_code == 0, result.output
    assert "IMPUTED" in result.output
    preds = _preds(out)
    assert preds["status"].eq("ok").all()
    # age imputed with the training median: every patient's age contribution is the same
    records = json.loads((rep / "preds.json").read_text())
    ages = {round(c["contribution"], 12) for r in records for c in r["contributions"] if c["feature"] == "clin:age"}
    assert len(ages) == 1
    assert all(any("IMPUTED" in b for b in r["banners"]) for r in records)
    assert "IMPUTED" in (rep / records[0]["page"]).read_text()


def test_unit_warning_for_a_tenfold_clinical_variable(bundle: Path, signal_fit: tuple[Any, ...]) -> None:
    table, _, split, _ = signal_fit
    ids = train_test_ids(split)[1][:20]
    loaded = load_bundle(bundle)
    assert unit_warnings(loaded, table.loc[ids]) == []
    scaled = table.loc[ids].copy()
    scaled["clin:age"] *= 10
    found = unit_warnings(loaded, scaled)
    assert len(found) == 1 and "clin:age" in found[0] and "10×" in found[0]
