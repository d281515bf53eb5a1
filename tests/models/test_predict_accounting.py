"""`predict` accounts for every patient: failed rows for broken inputs, out_of_distribution rows, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.settings import CohortSettings
from rccgrade.features.table import save_table
from rccgrade.models.bundle import bundle_from_arms, load_bundle
from rccgrade.models.predict import (
    OOD_RANGE_FACTOR,
    PREDICTION_COLUMNS,
    out_of_distribution,
    predict_table,
)
from rccgrade.models.predict_manifest import predict_manifest
from rccgrade.models.split import train_test_ids

CLIN_COLS = ["clin:age", "clin:size", "clin:sex"]


@pytest.fixture(scope="module")
def clinical_bundle(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> Path:
    table, _, _, res = signal_fit
    settings = {"cohort": CohortSettings(clinical_types={"sex": "categorical"}).model_dump(mode="json")}
    return bundle_from_arms(
        res, "clinical", table, tmp_path_factory.mktemp("b") / "clinical", feature_settings=settings
    )


@pytest.fixture(scope="module")
def radiomics_bundle(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> Path:
    """A bundle reading rad: features, with the stage settings recorded (so predict would compute them)."""
    from rccgrade.preprocess.settings import PreprocessSettings
    from rccgrade.radiomics.settings import RadiomicsSettings

    table, _, _, res = signal_fit
    settings = {
        "cohort": CohortSettings().model_dump(mode="json"),
        "preprocess": PreprocessSettings().model_dump(mode="json"),
        "radiomics": RadiomicsSettings().model_dump(mode="json"),
    }
    return bundle_from_arms(
        res, "radiomics", table, tmp_path_factory.mktemp("b") / "radiomics", feature_settings=settings
    )


def _run(args: list[str]) -> Any:
    """Invoke the CLI; an exception other than a clean exit (a traceback for the user) fails the test."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}") from result.exception
    return result


def _squash(text: str) -> str:
    return re.sub(r"[\s│]", "", text)


# -- images -----------------------------------------------------------------------------------------


def _ct(size: tuple[int, int, int] = (16, 16, 8), dtype: Any = np.int16, seed: int = 0) -> sitk.Image:
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    arr = np.full((nz, ny, nx), -1000, dtype=np.float64)
    arr[:, 2:-2, 2:-2] = 40 + rng.integers(-20, 20, size=(nz, ny - 4, nx - 4))
    arr[max(nz // 4, 0) : max(nz - nz // 4, 1), 5:11, 5:11] = 120
    img = sitk.GetImageFromArray(arr.astype(dtype))
    img.SetSpacing((0.8, 0.8, 2.0))
    return img


def _mask(ct: sitk.Image) -> sitk.Image:
    nz = sitk.GetArrayViewFromImage(ct).shape[0]
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
    arr[max(nz // 4, 0) : max(nz - nz // 4, 1), 5:11, 5:11] = 1
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(ct)
    return m


def _with(ct: sitk.Image, arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ct)
    return img


def _cut(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _broken_cohort(root: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """One patient per way an image can be broken; returns the manifest and patient → (expected code, file)."""
    rows: list[dict[str, Any]] = []
    expected: dict[str, tuple[str, str]] = {}

    def case(pid: str, code: str, bad: str, ext: str = ".nii.gz", **over: sitk.Image | None) -> dict[str, Any]:
        ct = _ct(size=(32, 32, 8), seed=len(rows))
        images: dict[str, sitk.Image | None] = {"arterial": ct, "nephrographic": ct, "excretory": ct, "mask": _mask(ct)}
        images.update(over)
        (root / pid).mkdir(parents=True)
        row: dict[str, Any] = {"patient_id": pid}
        for name, img in images.items():
            rel = f"{pid}/{name}{ext}"
            if img is not None:
                sitk.WriteImage(img, str(root / rel), useCompression=ext.endswith(".gz"))
            row[name] = rel
        rows.append(row)
        expected[pid] = (code, str(root / row[bad]))
        return row

    noisy = sitk.GetImageFromArray(np.random.default_rng(3).integers(-1000, 1000, (8, 32, 32)).astype(np.int16))
    noisy.SetSpacing((0.8, 0.8, 2.0))
    row = case("cut_gz", "truncated", "arterial", arterial=noisy, mask=_mask(noisy))
    _cut(root / row["arterial"])
    ct = _ct(size=(32, 32, 8), dtype=np.float32)
    case(
        "all_nan",
        "nonfinite_voxels",
        "arterial",
        ext=".nrrd",
        arterial=_with(ct, np.full((8, 32, 32), np.nan, np.float32)),
        mask=_mask(ct),
    )
    arr = sitk.GetArrayFromImage(ct)
    arr[4, 7, 7] = np.nan
    case("nan_in_tumour", "nonfinite_voxels", "arterial", ext=".nrrd", arterial=_with(ct, arr), mask=_mask(ct))
    arr = sitk.GetArrayFromImage(ct)
    arr[4, 8, 8] = np.inf
    case("inf_in_tumour", "nonfinite_voxels", "arterial", ext=".nrrd", arterial=_with(ct, arr), mask=_mask(ct))
    one = _ct(size=(32, 32, 1))
    case("one_slice", "not_3d", "arterial", arterial=one, mask=_mask(one))
    big = sitk.GetImageFromArray(np.random.default_rng(4).integers(0, 2, (8, 32, 32)).astype(np.uint8))
    big.SetSpacing((0.8, 0.8, 2.0))
    row = case("cut_mask", "truncated", "mask", mask=big)
    _cut(root / row["mask"], 0.6)
    row = case("missing", "file_missing", "nephrographic")
    (root / row["nephrographic"]).unlink()
    case("empty_mask", "mask_empty", "mask", mask=_with(_ct(size=(32, 32, 8)), np.zeros((8, 32, 32), np.uint8)))
    other = _ct(size=(32, 32, 6))
    case("other_grid", "mask_geometry_mismatch", "mask", mask=_mask(other))
    case("flat_2d", "not_3d", "excretory", excretory=sitk.GetImageFromArray(np.zeros((32, 32), np.int16)))
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, expected


def test_broken_images_become_failed_rows_never_probabilities(radiomics_bundle: Path, tmp_path: Path) -> None:
    manifest, expected = _broken_cohort(tmp_path / "cohort")
    out = tmp_path / "out" / "preds.csv"
    result = _run(["predict", str(radiomics_bundle), str(manifest), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    preds = pd.read_csv(out, dtype={"patient_id": str}, keep_default_na=False, na_values=[""])
    assert list(preds["patient_id"]) == list(expected)  # every manifest row, in order
    assert list(preds.columns) == ["patient_id", *PREDICTION_COLUMNS]
    assert list(preds["row"]) == list(range(2, 2 + len(expected)))
    for rec in preds.to_dict("records"):
        code, file = expected[rec["patient_id"]]
        assert rec["status"] == "failed", rec
        assert np.isnan(rec["probability"]), rec
        assert code in rec["reason"] and file in rec["reason"], rec
        assert rec["patient_id"] in result.output
        assert file in _squash(result.output), rec["patient_id"]
    assert not (tmp_path / "out" / "predict_work" / "preprocess").exists()  # nothing was computed for them
    allowed = _run(
        ["predict", str(radiomics_bundle), str(manifest), "--out", str(out), "--workers", "1", "--allow-failures"]
    )
    assert allowed.exit_code == 0, allowed.output
    assert len(pd.read_csv(out)) == len(expected)


# -- clinical values and every row --------------------------------------------------------------------


def _clinical_manifest(tmp_path: Path, table: pd.DataFrame, ids: list[str], ages: dict[str, str]) -> Path:
    rows = table.loc[ids, CLIN_COLS].copy()
    rows.columns = ["age", "size", "sex"]
    rows["age"] = [ages.get(p, f"{v:.6f}") for p, v in zip(rows.index, rows["age"], strict=True)]
    for col in ("arterial", "nephrographic", "excretory", "mask"):
        rows[col] = [f"{p}_{col}.nii.gz" for p in rows.index]
    path = tmp_path / "new.csv"
    rows.reset_index().to_csv(path, index=False)
    return path


def test_implausible_clinical_values_fail_and_the_rest_is_predicted(
    clinical_bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    ids = test[:6]
    bad = {ids[1]: "1e30", ids[2]: "inf", ids[3]: "-inf", ids[4]: "150"}
    manifest = _clinical_manifest(tmp_path, table, ids, bad)
    out = tmp_path / "preds.csv"
    result = _run(["predict", str(clinical_bundle), str(manifest), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    preds = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    assert list(preds.index) == ids
    assert preds.loc[list(bad), "status"].eq("failed").all()
    assert preds.loc[list(bad), "probability"].isna().all()
    assert all("'age'" in r for r in preds.loc[list(bad), "reason"])
    assert "clinical_out_of_range" in preds.at[ids[1], "reason"] and "1e+30" in preds.at[ids[1], "reason"]
    good = [ids[0], ids[5]]
    assert preds.loc[good, "status"].eq("ok").all()
    bundle = load_bundle(clinical_bundle)
    expected = bundle.model.predict_proba(table.loc[good])[:, 1]
    np.testing.assert_allclose(preds.loc[good, "probability"].to_numpy(), expected, rtol=1e-6)
    assert _run(["predict", str(clinical_bundle), str(manifest), "--out", str(out), "--allow-failures"]).exit_code == 0


def test_clean_manifest_exits_zero(clinical_bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    manifest = _clinical_manifest(tmp_path, table, test[:4], {})
    out = tmp_path / "preds.csv"
    result = _run(["predict", str(clinical_bundle), str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["status"].eq("ok").all()


def test_features_mode_accounts_for_manifest_patients_missing_from_the_table(
    clinical_bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    manifest = _clinical_manifest(tmp_path, table, test[:5], {})
    feats = table.loc[test[:3]].copy()
    feats.loc[test[2], "clin:age"] = np.inf
    path = save_table(feats, tmp_path / "f.parquet")
    out = tmp_path / "preds.csv"
    result = _run(["predict", str(clinical_bundle), str(manifest), "--features", str(path), "--out", str(out)])
    assert result.exit_code == 1, result.output
    preds = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    assert list(preds.index) == test[:5]
    assert list(preds["status"]) == ["ok", "ok", "failed", "failed", "failed"]
    assert "not finite" in preds.at[test[2], "reason"]
    assert all("no features" in preds.at[p, "reason"] for p in test[3:5])


def test_duplicate_and_missing_rows_stay_in_the_table(clinical_bundle: Path, signal_fit: tuple[Any, ...]) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    bundle = load_bundle(clinical_bundle)
    preds = predict_table(bundle, table.loc[test[:2]], patients=[test[0], "ghost", test[1]], failures={"x": "gone"})
    assert list(preds.index) == [test[0], "ghost", test[1]]
    assert list(preds["status"]) == ["ok", "failed", "ok"]


# -- out of distribution --------------------------------------------------------------------------------


def test_training_distribution_is_from_training_patients_only(
    radiomics_bundle: Path, signal_fit: tuple[Any, ...]
) -> None:
    table, _, _, res = signal_fit
    dist = load_bundle(radiomics_bundle).training_distribution
    train = table.loc[res.train_ids]
    assert set(dist) == {c for c in table.columns if c.startswith("rad:")}
    for name, stats in dist.items():
        col = train[name].to_numpy()
        assert stats.n == len(col)
        assert stats.median == pytest.approx(np.median(col), abs=0)
        assert stats.mad == pytest.approx(np.median(np.abs(col - np.median(col))))
        assert (stats.min, stats.max) == (col.min(), col.max())
        assert (stats.q1, stats.q3) == pytest.approx(tuple(np.quantile(col, [0.25, 0.75])))
    # the whole table (test patients included) would give other extremes for some feature
    assert any((dist[c].min, dist[c].max) != (table[c].min(), table[c].max()) for c in dist)


def test_ood_rule_boundaries(radiomics_bundle: Path) -> None:
    dist = load_bundle(radiomics_bundle).training_distribution
    name = sorted(dist)[0]
    st = dist[name]
    span = st.max - st.min
    eps = 1e-9 * span
    frame = pd.DataFrame(
        {name: [st.max + span - eps, st.max + span + eps, st.min - span - eps, st.min - span + eps, np.nan]},
        index=pd.Index(["in_hi", "out_hi", "out_lo", "in_lo", "missing"], name="patient_id"),
    )
    reasons = out_of_distribution(frame, {name: st}, OOD_RANGE_FACTOR)
    assert [bool(r) for r in reasons] == [False, True, True, False, False]
    assert name in reasons["out_hi"]
    assert out_of_distribution(frame, {name: st}, factor=3.0).eq("").all()
    # one source for the message's ending: withheld (predict) or kept (external validation's statistics)
    from rccgrade.models.ood import OOD_KEPT, OOD_WITHHELD

    assert reasons["out_hi"].endswith(OOD_WITHHELD)
    kept = out_of_distribution(frame, {name: st}, OOD_RANGE_FACTOR, probability_kept=True)
    assert kept["out_hi"].endswith(OOD_KEPT) and "No probability" not in kept["out_hi"]
    assert kept["out_hi"][: -len(OOD_KEPT)] == reasons["out_hi"][: -len(OOD_WITHHELD)]


def test_far_outside_training_is_out_of_distribution_without_probability(
    radiomics_bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    feats = table.loc[test[:3]].copy()
    feats.loc[test[1], "rad:arterial:f005"] = 1e6
    bundle = load_bundle(radiomics_bundle)
    preds = predict_table(bundle, feats)
    assert list(preds["status"]) == ["ok", "out_of_distribution", "ok"]
    assert np.isnan(preds.at[test[1], "probability"]) and pd.isna(preds.at[test[1], "predicted_class"])
    assert "rad:arterial:f005 = 1e+06" in preds.at[test[1], "reason"]
    path = save_table(feats, tmp_path / "f.parquet")
    out = tmp_path / "p.csv"
    result = _run(["predict", str(radiomics_bundle), "--features", str(path), "--out", str(out)])
    assert result.exit_code == 1 and "out_of_distribution" in result.output
    assert (
        _run(
            ["predict", str(radiomics_bundle), "--features", str(path), "--out", str(out), "--allow-failures"]
        ).exit_code
        == 0
    )


def test_predict_manifest_is_a_library_function(
    clinical_bundle: Path, signal_fit: tuple[Any, ...], tmp_path: Path
) -> None:
    table, _, split, _ = signal_fit
    _, test = train_test_ids(split)
    manifest = _clinical_manifest(tmp_path, table, test[:3], {test[0]: "1e30"})
    preds = predict_manifest(load_bundle(clinical_bundle), manifest, tmp_path / "work")
    assert list(preds.index) == test[:3] and list(preds["status"]) == ["failed", "ok", "ok"]
    assert json.loads(preds.to_json())  # plain, serialisable columns


def test_ood_needs_an_extreme_value_or_a_share_of_features_outside() -> None:
    """One value mildly outside among many features is chance on a small cohort; many, or one extreme, is not."""
    from rccgrade.models.bundle import FeatureStats

    names = [f"f{i}" for i in range(8)]
    dist = {n: FeatureStats(n=20, median=0.5, mad=0.1, q1=0.4, q3=0.6, min=0.0, max=1.0) for n in names}
    rows = {
        "one_mild": [2.5] + [0.5] * 7,  # 1.5 spans beyond, 1 of 8 features: tolerated
        "three_mild": [2.5] * 3 + [0.5] * 5,  # 3 of 8 > 25%: out
        "one_extreme": [12.0] + [0.5] * 7,  # 11 spans beyond: out
        "inside": [0.5] * 8,
    }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=names)
    reasons = out_of_distribution(frame, dist)
    assert [bool(reasons[k]) for k in rows] == [False, True, True, False]
    assert "3 of 8" in reasons["three_mild"] and "f0 = 12" in reasons["one_extreme"]
