"""End to end: the whole study on a tiny synthetic cohort — run folder, determinism, stage caching."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from rccgrade.config import config_from_dict, load_config
from rccgrade.errors import ConfigError
from rccgrade.study import StudyObserver, metrics_equal, read_stage_log, run_study

ROOT = Path(__file__).resolve().parents[2]

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "synth": {"n": 16, "seed": 5, "size": "small"},
    "parallel": {"backend": "serial"},
    "preprocess": {"registration": {"enabled": False}, "rois": ["tumour", "dilated5mm"], "image_size": 32, "qc": False},
    "radiomics": {"params": str(ROOT / "configs" / "radiomics_demo.yaml"), "stability": {"enabled": False}},
    "deep": {"arch": "resnet_tiny", "weights": "none", "input_size": 32, "rois": ["tumour", "dilated5mm"]},
    "models": {"cv_folds": 3, "nested_oof": False, "selection": {"lasso_cs": 4, "lasso_cv": 3}},
    "evaluation": {"roc_band_bootstrap": 0},
    "report": {"gradcam_cases": 2},
}
ARMS = ["clinical", "radiomics", "deep:dilated5mm", "deep:tumour", "combined", "stacked"]


class Recorder(StudyObserver):
    """Collects the observer events, to check the CLI's progress display gets them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def stage_started(self, name: str, description: str) -> None:
        self.events.append(("start", name))

    def stage_finished(self, record: Any) -> None:
        self.events.append((record.status, record.name))


def _config(runs_dir: Path, **changes: Any) -> Any:
    data = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    data["runs_dir"] = str(runs_dir)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Recorder]:
    runs = tmp_path_factory.mktemp("runs_a")
    rec = Recorder()
    result = run_study(_config(runs), observer=rec)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    return result, metrics, rec


def test_run_folder_holds_every_output(first_run: tuple[Any, dict[str, Any], Recorder]) -> None:
    result, metrics, rec = first_run
    run = result.run_dir
    for name in (
        "config.yaml",
        "provenance.json",
        "validation.csv",
        "split.csv",
        "predictions.csv",
        "metrics.json",
        "failures.csv",
        "stages.json",
        "study.log",
        "report.html",
    ):
        assert (run / name).is_file(), name
    # every stage ran once, in order, and the observer saw it
    stages = read_stage_log(run)
    assert [s["name"] for s in stages] == [
        "cohort", "preprocess", "split", "radiomics", "deep", "clinical", "models", "evaluate", "report"
    ]  # fmt: skip
    assert {s["status"] for s in stages} == {"ran"}
    assert ("ran", "models") in rec.events and ("start", "cohort") in rec.events
    # the resolved config round-trips
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 3
    # ... and loads again as it was written (a dumped section must not be refused by its own validation)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert load_config(run / "config.yaml").model_dump(mode="json") == resolved
    # predictions: patient, split, label and one probability column per arm
    pred = pd.read_csv(run / "predictions.csv", dtype={"patient_id": str})
    assert list(pred.columns[:3]) == ["patient_id", "split", "y"]
    assert set(ARMS) <= set(pred.columns)
    assert pred[ARMS].apply(lambda c: c.between(0, 1).all()).all()
    split = pd.read_csv(run / "split.csv", dtype={"patient_id": str})
    assert dict(zip(split["patient_id"], split["split"], strict=True)) == dict(
        zip(pred["patient_id"], pred["split"], strict=True)
    )
    # metrics: AUC with CI for both cohorts, for every arm; DeLong comparisons
    assert set(metrics["arms"]) == set(ARMS)
    for arm in ARMS:
        for cohort in ("train", "test"):
            auc = metrics["arms"][arm][f"{cohort}.auc"]
            lo, hi = metrics["arms"][arm][f"{cohort}.auc.ci"]
            assert 0 <= lo <= auc <= hi <= 1
    assert metrics["comparisons"]["test"]
    # one loadable bundle per arm
    from rccgrade.models.bundle import load_bundle

    for arm in ARMS:
        bundle = load_bundle(run / "bundles" / arm.replace(":", "-"))
        assert bundle.arm == arm
    # figures: PNG + SVG
    assert (run / "figures" / "roc.png").is_file() and (run / "figures" / "roc.svg").is_file()


def test_provenance_checksums_are_real(first_run: tuple[Any, dict[str, Any], Recorder]) -> None:
    result, _, _ = first_run
    prov = json.loads((result.run_dir / "provenance.json").read_text())
    assert prov["seed"] == 3
    assert {"numpy", "scikit-learn", "torch", "pyradiomics", "SimpleITK"} <= set(prov["packages"])
    sums = prov["input_checksums"]
    cohort_dir = result.run_dir / "cohort"
    # manifest + 3 phases + mask for each of the 16 patients
    assert len(sums) == 1 + 16 * 4
    manifest_sum = hashlib.sha256((cohort_dir / "manifest.csv").read_bytes()).hexdigest()
    assert sums["manifest.csv"] == manifest_sum
    some = next(k for k in sums if k.endswith(".nii.gz"))
    assert sums[some] == hashlib.sha256((cohort_dir / some).read_bytes()).hexdigest()
    assert set(prov["timings_s"]) >= {"cohort", "preprocess", "models"}


def test_report_is_self_contained(first_run: tuple[Any, dict[str, Any], Recorder]) -> None:
    from PIL import Image

    from rccgrade.report.html import external_urls

    text = (first_run[0].run_dir / "report.html").read_text()
    assert external_urls(text) == []
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', text)
    assert len(srcs) >= 5  # roc, calibration ×2, dca ×2 (+ nomogram, Grad-CAM)
    for src in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
    needles = ("Table 1.", "Clinical characteristics", "Paired DeLong", "TRIPOD+AI", "randomly initialised")
    needles += ("Feature contributions", "by source of its features", "per-patient feature contributions in the test")
    for needle in needles:
        assert needle in text, needle


def test_same_config_and_seed_give_identical_metrics(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    result = run_study(_config(tmp_path / "runs_b"))
    again = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics_equal(first_run[1], again)
    assert again == first_run[1]


def test_changing_a_model_setting_reuses_extraction(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    # work on a copy so the other tests keep the first run's outputs
    runs = tmp_path / "runs_c"
    shutil.copytree(first_run[0].run_dir, runs / "tiny")
    result = run_study(_config(runs, **{"models.cv_folds": 4}))
    status = {s["name"]: s["status"] for s in read_stage_log(result.run_dir)}
    assert status["preprocess"] == "cached"
    assert status["radiomics"] == "cached"
    assert status["deep"] == "cached"
    assert status["models"] == "ran"
    assert status["evaluate"] == "ran" and status["report"] == "ran"
    log = (result.run_dir / "study.log").read_text()
    assert re.search(r"stage preprocess\s+cached", log)
    assert re.search(r"stage deep\s+cached", log)
    assert re.search(r"stage models\s+ran", log)
    # a preprocessing change invalidates what depends on it (keys differ), without running anything
    from rccgrade.cache import stable_hash

    assert stable_hash(_config(runs).preprocess) != stable_hash(
        _config(runs, **{"preprocess.image_size": 48}).preprocess
    )


def test_study_without_cohort_says_how_to_fix(tmp_path: Path) -> None:
    cfg = config_from_dict({"name": "empty", "runs_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"cohort\.manifest"):
        run_study(cfg)


def test_external_validation_on_a_cohort_without_excretory_phase(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    from rccgrade.external import evaluate_external
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(tmp_path / "ext", n=10, seed=11, size="small", parallel=ParallelSettings(backend="serial"))
    frame = pd.read_csv(manifest, dtype=str)
    full = manifest.with_name("manifest_full.csv")
    frame.to_csv(full, index=False)
    frame.drop(columns=["excretory"]).to_csv(manifest, index=False)
    result = evaluate_external(first_run[0].run_dir / "bundles", manifest, tmp_path / "out", cohort_name="Centre X")
    arms = {r["arm"] for r in result.rows}
    assert {"clinical", "radiomics", "combined"} <= arms
    pred = pd.read_csv(result.out_dir / "predictions.csv", dtype={"patient_id": str})
    assert len(pred) == 10 and pred["y"].isin([0, 1]).all()
    # the statistics equal a direct computation on the saved predictions
    from rccgrade.stats.roc import auc

    for arm in ("clinical", "combined"):
        assert result.metrics["arms"][arm]["external.auc"] == pytest.approx(auc(pred["y"], pred[arm]), abs=1e-12)
        thr = result.metrics["thresholds"][arm]
        sens = ((pred[arm] >= thr) & (pred["y"] == 1)).sum() / (pred["y"] == 1).sum()
        assert result.metrics["arms"][arm]["external.sensitivity"] == pytest.approx(sens)
    assert any("excretory" in w for w in result.warnings)
    text = result.report.read_text()
    assert "External validation" in text and "Centre X" in text and "excretory" in text
    # `rccgrade predict`'s own path (features recomputed from the bundle's settings; it needs all three phases)
    # gives the same radiomics-arm probabilities: arterial radiomics do not depend on the excretory phase
    from rccgrade.models.bundle import load_bundle
    from rccgrade.models.predict import predict_bundle
    from rccgrade.models.predict_manifest import compute_features_for_bundle

    bundle = load_bundle(first_run[0].run_dir / "bundles" / "radiomics")
    table, settings = compute_features_for_bundle(
        bundle, full, tmp_path / "predict", parallel=ParallelSettings(backend="serial")
    )
    theirs = predict_bundle(bundle, table, settings)["probability"]
    assert len(theirs) == 10
    mine = pred.set_index("patient_id")["radiomics"].reindex(theirs.index)
    assert mine.to_numpy() == pytest.approx(theirs.to_numpy(), abs=1e-9)


def test_cli_study_prints_summary_and_report_path(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    runs = tmp_path / "runs_cli"
    shutil.copytree(first_run[0].run_dir, runs / "tiny")
    data = json.loads(json.dumps(TINY))
    data["runs_dir"] = str(runs)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["study", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "Discrimination (AUC, 95% CI)" in res.output
    assert f"report: {runs / 'tiny' / 'report.html'}" in res.output.replace("\n", "")
    status = {s["name"]: s["status"] for s in read_stage_log(runs / "tiny")}
    assert status["preprocess"] == status["radiomics"] == status["deep"] == status["models"] == "cached"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: {clasifier: svm}\n")
    res = CliRunner().invoke(app, ["study", str(bad)])
    assert res.exit_code == 2 and "clasifier" in res.output


def test_scheduler_address_sends_per_case_work_to_dask(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    from distributed import LocalCluster

    runs = tmp_path / "runs_dask"
    shutil.copytree(first_run[0].run_dir, runs / "tiny")
    for stored in (runs / "tiny" / "cache").glob("validation-*.json"):
        stored.unlink()  # an unchanged cohort's validation is reused: without it, validation has work again
    # extraction is cached; the per-case validation of the cohort stage runs, on the cluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        before = cluster.scheduler.transition_counter
        result = run_study(_config(runs), scheduler=cluster.scheduler_address)
        assert cluster.scheduler.transition_counter > before
    status = {s["name"]: s["status"] for s in read_stage_log(result.run_dir)}
    assert status["cohort"] == "ran" and status["preprocess"] == "cached"
    assert json.loads((result.run_dir / "metrics.json").read_text()) == first_run[1]


def test_cli_force_models_reruns_models_evaluate_and_report_only(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    runs = tmp_path / "runs_force"
    shutil.copytree(first_run[0].run_dir, runs / "tiny")
    data = json.loads(json.dumps(TINY))
    data["runs_dir"] = str(runs)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["study", str(cfg), "--force", "models"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "forcing models: recomputing models, evaluate, report" in text
    assert "recomputed by --force: models, evaluate, report" in text
    log = read_stage_log(runs / "tiny")
    status = {s["name"]: s["status"] for s in log}
    forced = {s["name"] for s in log if s["forced"]}
    assert forced == {"models", "evaluate", "report"}
    assert status["models"] == status["evaluate"] == status["report"] == "ran"
    assert status["preprocess"] == status["radiomics"] == status["deep"] == "cached"
    # the models were really refitted (the old folder was deleted first) and give the same numbers
    assert json.loads((runs / "tiny" / "metrics.json").read_text()) == first_run[1]


def test_report_figures_come_from_the_saved_fitted_models(first_run: tuple[Any, dict[str, Any], Recorder]) -> None:
    from rccgrade.features.table import join_tables, load_table
    from rccgrade.models.bundle import load_bundle
    from rccgrade.study.fitted import linear_readout, nomogram_model
    from rccgrade.study.outputs import ModelsOutput

    run = first_run[0].run_dir
    models_dir = next((run / "cache").glob("models-*"))
    info = json.loads((models_dir / "models.json").read_text())
    models = ModelsOutput(
        folder=models_dir,
        key="",
        arms=tuple(info["arms"]),
        predictions=pd.read_csv(run / "predictions.csv", dtype={"patient_id": str}),
        thresholds=info["thresholds"],
        n_candidates=info["n_candidates"],
        classifiers=info["classifiers"],
        nomogram_ranges={k: tuple(v) for k, v in info["nomogram_ranges"].items()},
    )
    found = nomogram_model(models)
    assert found is not None
    nomo, arm = found
    assert arm == "stacked"
    # the stacked nomogram's probability is the saved stacked model's own (its meta-model on the base logits)
    stacked = load_bundle(run / "bundles" / "stacked").model
    tables = [load_table(next((run / "cache").glob(f"{s}-*")) / "features.parquet")[0] for s in ("radiomics", "deep")]
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.features.clinical import clinical_table

    clin = clinical_table(load_cohort(run / "cohort" / "manifest.csv"))
    table = join_tables(*tables, clin.loc[tables[0].index])
    base = stacked.base_probabilities(table).clip(1e-6, 1 - 1e-6)
    logits = np.log(base / (1 - base))
    logits.columns = [f"logit p({c})" for c in logits.columns]
    assert nomo.predict_proba(logits[list(nomo.feature_names)]) == pytest.approx(
        stacked.predict_proba(table)[:, 1], abs=1e-9
    )
    # the clinical arm read back from its bundle: scaler + logistic model reproduce the pipeline exactly
    clinical = load_bundle(run / "bundles" / "clinical").model
    lin = linear_readout(clinical)
    chain = clinical.named_steps["features"].transformers_[0][2]
    X = chain[:-1].transform(table[[c for c in table.columns if c.startswith("clin:")]])
    z = (X[lin.names].to_numpy() - lin.scaler.mean_) / lin.scaler.scale_
    p = 1 / (1 + np.exp(-(z @ lin.classifier.coef_.ravel() + lin.classifier.intercept_[0])))
    assert p == pytest.approx(clinical.predict_proba(table)[:, 1], abs=1e-12)


def test_external_validation_accounts_for_every_manifest_row(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    """A case whose image is missing and one whose mask is empty stay in predictions.csv, failed with a reason;
    the statistics use the other patients; the CLI exits 1 unless --allow-failures."""
    import numpy as np
    import SimpleITK as sitk
    from typer.testing import CliRunner

    from rccgrade.cli import app
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(tmp_path / "ext", n=10, seed=12, size="small", parallel=ParallelSettings(backend="serial"))
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    broken = frame.iloc[0]["patient_id"]
    frame.loc[0, "arterial"] = "images/does_not_exist.nii.gz"
    empty = frame.iloc[1]["patient_id"]
    mask_path = manifest.parent / frame.iloc[1]["mask"]
    mask = sitk.ReadImage(str(mask_path))
    blank = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(mask)))
    blank.CopyInformation(mask)
    sitk.WriteImage(blank, str(mask_path))
    frame.to_csv(manifest, index=False)
    bundles = first_run[0].run_dir / "bundles"
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(bundles), str(manifest), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"patient_id": str}, keep_default_na=False)
    assert pred["patient_id"].tolist() == frame["patient_id"].tolist()  # every manifest row, in order
    for pid, word in ((broken, "does_not_exist"), (empty, "mask_empty")):
        row = pred.set_index("patient_id").loc[pid]
        for arm in ("clinical", "radiomics"):
            assert row[f"{arm}.status"] == "failed"
            assert word in row[f"{arm}.reason"]
        assert row["radiomics"] == ""  # no probability for a failed patient
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_manifest"] == 10 and metrics["n"] <= 8
    status_cols = [c for c in pred.columns if c.endswith(".status")]
    ok = pred[(pred[status_cols] != "failed").all(axis=1)]  # OOD patients keep their probability in the statistics
    assert len(ok) == metrics["n"]
    from rccgrade.stats.roc import auc

    assert metrics["arms"]["radiomics"]["external.auc"] == pytest.approx(
        auc(ok["y"].astype(int), ok["radiomics"].astype(float)), abs=1e-12
    )
    again = runner.invoke(
        app, ["evaluate", str(bundles), str(manifest), "--out", str(tmp_path / "out2"), "--allow-failures"]
    )
    assert again.exit_code == 0, again.output


def test_evaluate_maps_columns_refuses_or_imputes_absent_variables(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    """Another hospital spells ``haemoglobin`` as ``hemoglobin``: refused by default (naming it and the fix),
    usable with ``--map``; absent altogether, ``--missing-variables impute`` predicts with the bundle's imputer
    and says so in the report's banner."""
    from typer.testing import CliRunner

    from rccgrade.cli import app
    from rccgrade.errors import ModelError
    from rccgrade.external import evaluate_external
    from rccgrade.models.bundle import load_bundle
    from rccgrade.models.predict_manifest import compute_features_for_bundle
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(tmp_path / "ext", n=10, seed=11, size="small", parallel=ParallelSettings(backend="serial"))
    frame = pd.read_csv(manifest, dtype=str)
    renamed, dropped = manifest.with_name("renamed.csv"), manifest.with_name("dropped.csv")
    frame.rename(columns={"haemoglobin": "hemoglobin"}).to_csv(renamed, index=False)
    extreme = frame.iloc[2]["patient_id"]  # an implausibly high platelet count (no unit range): out of distribution
    gap = frame.iloc[3]["patient_id"]  # and one patient without a CRP value: imputed for that patient only
    frame.drop(columns=["haemoglobin"]).assign(
        platelets=lambda f: f["platelets"].where(f["patient_id"] != extreme, "1e7"),
        crp=lambda f: f["crp"].where(f["patient_id"] != gap, ""),
    ).to_csv(dropped, index=False)
    folder = first_run[0].run_dir / "bundles" / "clinical"
    bundle = load_bundle(folder)
    assert "clin:haemoglobin" in bundle.feature_names

    with pytest.raises(ModelError, match=r"haemoglobin.*--map haemoglobin=.*--missing-variables impute"):
        evaluate_external(folder, renamed, tmp_path / "refused")

    # reference: predict's own path on the hospital's original spelling
    table, _ = compute_features_for_bundle(
        bundle, manifest, tmp_path / "w", parallel=ParallelSettings(backend="serial")
    )
    expected = pd.Series(bundle.model.predict_proba(table)[:, 1], index=table.index)
    args = ["evaluate", str(folder), str(renamed), "--out", str(tmp_path / "mapped"), "--allow-failures"]
    res = CliRunner().invoke(app, [*args, "--map", "haemoglobin=hemoglobin"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    got = pd.read_csv(tmp_path / "mapped" / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert got["clinical"].to_numpy() == pytest.approx(expected.reindex(got.index).to_numpy(), abs=1e-9)  # CSV: %.10g

    imputed = evaluate_external(folder, dropped, tmp_path / "imputed", missing_variables="impute")
    assert any("haemoglobin" in w and "IMPUTED" in w for w in imputed.warnings)
    assert "clin:crp" in bundle.feature_names
    per_patient = [w for w in imputed.warnings if "missing feature values imputed" in w]
    assert len(per_patient) == 1 and gap in per_patient[0]  # the cohort-wide haemoglobin is not counted again
    table_nan = table.copy()
    table_nan["clin:haemoglobin"] = np.nan
    table_nan.loc[extreme, "clin:platelets"] = 1e7
    table_nan.loc[gap, "clin:crp"] = np.nan
    expected_imp = pd.Series(bundle.model.predict_proba(table_nan)[:, 1], index=table.index)
    got = pd.read_csv(imputed.out_dir / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert got["clinical"].to_numpy() == pytest.approx(expected_imp.reindex(got.index).to_numpy(), abs=1e-9)
    mine = got.index != extreme
    assert not np.allclose(expected_imp.reindex(got.index)[mine], expected.reindex(got.index)[mine])  # imputation acts
    # the out-of-distribution patient keeps its probability, flagged; its reason keeps predict's imputation note
    row = got.loc[extreme]
    assert row["clinical.status"] == "out_of_distribution"
    assert "range" in row["clinical.reason"] and "imputed" in row["clinical.reason"]
    assert " | " in row["clinical.reason"]
    text = imputed.report.read_text()
    assert 'class="banner"' in text and "IMPUTED" in text.split('class="banner"', 1)[1][:2000]


def test_study_map_joins_the_config_map_and_refuses_impute(tmp_path: Path) -> None:
    from rccgrade.study.cli import with_column_map

    cfg = _config(tmp_path, **{"cohort.column_map": {"age": "age_years"}})
    out = with_column_map(cfg, ["haemoglobin=hb"])
    assert dict(out.cohort.column_map) == {"age": "age_years", "haemoglobin": "hb"}
    with pytest.raises(ConfigError, match=r"contradicts cohort\.column_map"):
        with_column_map(_config(tmp_path, **{"cohort.column_map": {"age": "age_years"}}), ["age=years"])
    with pytest.raises(ConfigError, match="nothing to be imputed from"):
        with_column_map(_config(tmp_path), [], "impute")


def _images_loaded(html: Path, tmp_path: Path) -> tuple[int, int]:
    """The Chromium probe of tests/report/test_html.py (loaded by path: the test folders are not packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_report_html_tests", ROOT / "tests" / "report" / "test_html.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.images_loaded(html, tmp_path)


def test_predict_report_of_a_deep_arm_shows_qc_strip_and_gradcam(
    first_run: tuple[Any, dict[str, Any], Recorder], tmp_path: Path
) -> None:
    """`predict --report` from a manifest: each page embeds preprocessing's QC montage (mask outline on each
    registered phase) with the registration status, and the Grad-CAM of the deep arm; all images load."""
    from PIL import Image
    from typer.testing import CliRunner

    from rccgrade.cli import app
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(tmp_path / "new", n=3, seed=21, size="small", parallel=ParallelSettings(backend="serial"))
    bundle = first_run[0].run_dir / "bundles" / "deep-tumour"
    args = ["predict", str(bundle), str(manifest), "--out", str(tmp_path / "p.csv"), "--report", str(tmp_path / "r")]
    res = CliRunner().invoke(app, [*args, "--workers", "1", "--allow-failures"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    records = json.loads((tmp_path / "r" / "preds.json").read_text())
    assert len(records) == 3
    for rec in records:
        assert rec["status"] == "ok", rec["reason"]
        assert set(rec["qc"]["registration"]) == {"arterial", "nephrographic", "excretory"}
        assert rec["qc"]["registration"]["arterial"].startswith("reference")
        assert rec["qc"]["registration"]["excretory"] == "skipped"  # registration is off in TINY
        for key in ("qc", "gradcam"):
            assert rec[key]["image"] is not None, rec[key]["note"]
            with Image.open(tmp_path / "r" / rec[key]["image"]) as img:
                assert img.size[0] > 100
        assert rec["nomogram"] is not None or rec["nomogram_note"]
    page = tmp_path / "r" / records[0]["page"]
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 2 and "No QC strip" not in text and "No Grad-CAM" not in text
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        loaded, total = _images_loaded(page, tmp_path)
        assert total == 2 and loaded == total


def test_report_methods_state_the_fusion_the_run_learnt(first_run: tuple[Any, dict[str, Any], Recorder]) -> None:
    import html

    run = first_run[0].run_dir
    text = html.unescape((run / "report.html").read_text())
    models_dir = next((run / "cache").glob("models-*"))
    bundle = json.loads((models_dir / "bundles" / "stacked" / "bundle.json").read_text())
    weights = bundle["extra"]["fusion"]["stacking_weights"]
    assert "with non-negative source weights" in text
    assert "learnt weights " + ", ".join(f"{a} {w:.2f}" for a, w in weights.items()) in text
    combined = json.loads((models_dir / "bundles" / "combined" / "bundle.json").read_text())["extra"]["fusion"]
    if all(b is not None for b in combined["budgets"].values()):
        assert "chosen budgets " + ", ".join(f"{s} {b}" for s, b in combined["budgets"].items()) in text
    else:
        assert "too few training patients for that cross-validation" in text
    assert "classifier: auto" not in text  # not used by this run
