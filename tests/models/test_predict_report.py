"""`predict --report`: a page for every patient (ok, failed, out of distribution), preds.json, safe names."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.features.table import save_table
from rccgrade.models.bundle import bundle_from_arms
from rccgrade.models.split import train_test_ids
from rccgrade.report.patient import write_patient_reports


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> tuple[Path, list[str]]:
    table, _, split, res = signal_fit
    root = tmp_path_factory.mktemp("rep")
    bundle = bundle_from_arms(res, "clinical", table, root / "clinical")
    _, test = train_test_ids(split)
    ids = test[:4]
    feats = table.loc[ids].copy()
    feats.loc[ids[2], "clin:age"] = np.inf  # → failed
    feats.loc[ids[3], "clin:size"] = 1e3  # → out of distribution
    feats.loc[ids[1], "clin:size"] = np.nan  # → imputed, flagged
    path = save_table(feats, root / "f.parquet")
    result = CliRunner().invoke(
        app,
        ["predict", str(bundle), "--features", str(path), "--out", str(root / "p.csv"), "--report", str(root / "r")],
        env={"COLUMNS": "300"},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(result.output) from result.exception
    assert result.exit_code == 1, result.output  # a failed and an OOD patient
    return root / "r", ids


def test_every_patient_has_a_page_and_a_json_record(report_run: tuple[Path, list[str]]) -> None:
    folder, ids = report_run
    records = json.loads((folder / "preds.json").read_text())
    assert [r["patient_id"] for r in records] == ids
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "out_of_distribution"]
    for rec in records:
        page = (folder / rec["page"]).read_text()
        assert rec["status"] in page
        if rec["status"] != "ok":
            assert rec["probability"] is None and rec["reason"]
            assert "No probability is reported" in page
    index = (folder / "index.html").read_text()
    assert all(f">{p}<" in index for p in ids)


def test_json_contributions_add_up_to_the_probability(report_run: tuple[Path, list[str]]) -> None:
    folder, _ = report_run
    records = json.loads((folder / "preds.json").read_text())
    for rec in records[:2]:  # clinical arm: age, size, sex=M — all shown
        logit = rec["base"] + sum(c["contribution"] for c in rec["contributions"])
        assert 1 / (1 + np.exp(-logit)) == pytest.approx(rec["probability"], abs=1e-9)
    assert any(c["imputed"] for c in records[1]["contributions"])
    assert any("imputed" in w for w in records[1]["warnings"])
    assert records[3]["contributions"]  # OOD patients are explained too (for review)
    assert records[2]["contributions"] == []  # failed: nothing to explain


def test_hostile_ids_stay_inside_the_report_folder(tmp_path: Path) -> None:
    preds = pd.DataFrame(
        {"status": ["failed", "failed"], "reason": ["r", "<script>alert(1)</script>"], "probability": np.nan},
        index=pd.Index(["../../evil", "a/b"], name="patient_id"),
    )
    out = write_patient_reports(preds, tmp_path / "r")
    assert sorted(p.parent for p in out.pages.values()) == [tmp_path / "r"] * 2
    assert not (tmp_path / "evil.html").exists()
    assert "<script>alert" not in out.pages["a/b"].read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_page_renders_in_headless_chromium(report_run: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, _ = report_run
    records = json.loads((folder / "preds.json").read_text())
    page = folder / records[1]["page"]
    shot = tmp_path / "page.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1000,1200"]
    subprocess.run([*cmd, page.as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<svg" in dom and dom.count('class="bar"') == len(records[1]["contributions"])
    assert 'aria-label="training ROC"' in dom
    assert "<img" not in dom  # self-contained: nothing to load


def test_roc_position_matches_a_naive_count_on_the_training_oof(
    report_run: tuple[Path, list[str]], signal_fit: tuple[Any, ...]
) -> None:
    folder, _ = report_run
    _, _, _, res = signal_fit
    oof = res.oof_proba["clinical"].reindex(res.y_train.index).to_numpy()
    y = res.y_train.to_numpy()
    records = json.loads((folder / "preds.json").read_text())
    for rec in records[:2]:
        for key, cut in (("roc_position", rec["probability"]), ("roc_threshold", rec["threshold"])):
            sens = float(np.mean(oof[y == 1] >= cut))
            spec = float(np.mean(oof[y == 0] < cut))
            assert rec[key] == pytest.approx({"sensitivity": sens, "specificity": spec})
    assert all(r["roc_position"] is None for r in records[2:])  # no probability, no position
    assert "training ROC" in (folder / records[0]["page"]).read_text()


def test_ok_pages_carry_a_probability_interval(report_run: tuple[Path, list[str]]) -> None:
    folder, _ = report_run
    records = json.loads((folder / "preds.json").read_text())
    for rec in records[:2]:
        iv = rec["interval"]
        assert iv["lower"] < rec["probability"] < iv["upper"]
        assert "95% interval" in (folder / rec["page"]).read_text()
    assert all(r["interval"] is None for r in records[2:])


def test_nomogram_points_are_the_study_scale_and_map_to_the_probability(
    report_run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Points per predictor recomputed naively from the bundle's scaler and coefficients (ranges: training
    mean ± 2 SD, 0/1 for an indicator; the widest predictor spans 100 points); the total maps to the probability."""
    from rccgrade.models.bundle import load_bundle

    folder, _ = report_run
    bundle = load_bundle(folder.parent / "clinical")
    chain = bundle.model.named_steps["features"].transformers_[0][2]
    scaler, clf = chain.named_steps["scale"], bundle.model.named_steps["clf"]
    names = [str(n) for n in scaler.feature_names_in_]
    b = clf.coef_.ravel() / scaler.scale_  # per original unit
    onehot = [n for n in names if "=" in n]
    lo = np.array(
        [0.0 if n in onehot else m - 2 * s for n, m, s in zip(names, scaler.mean_, scaler.scale_, strict=True)]
    )
    hi = np.array(
        [1.0 if n in onehot else m + 2 * s for n, m, s in zip(names, scaler.mean_, scaler.scale_, strict=True)]
    )
    per_point = np.max(np.abs(b) * (hi - lo)) / 100.0
    records = json.loads((folder / "preds.json").read_text())
    for rec in records[:2]:
        nomo = rec["nomogram"]
        assert nomo is not None and rec["nomogram_note"] == ""
        pts = {p["predictor"]: p for p in nomo["points"]}
        for k, n in enumerate(names):
            if b[k] == 0:
                continue
            naive = (b[k] * pts[n]["value"] - min(b[k] * lo[k], b[k] * hi[k])) / per_point
            assert pts[n]["points"] == pytest.approx(naive, rel=1e-9, abs=1e-9)
        assert sum(p["points"] for p in nomo["points"]) == pytest.approx(nomo["total"], abs=1e-9)
        assert nomo["probability"] == pytest.approx(rec["probability"], abs=1e-9)
        # the intercept-side of the mapping: total points → logit, independently
        lp = (
            clf.intercept_[0]
            - np.sum(b * scaler.mean_)
            + sum(min(bk * lo_k, bk * hi_k) for bk, lo_k, hi_k in zip(b, lo, hi, strict=True))
        )
        assert 1 / (1 + np.exp(-(lp + nomo["total"] * per_point))) == pytest.approx(rec["probability"], abs=1e-9)
    assert records[2]["nomogram"] is None  # failed: nothing to place on the nomogram
    page = (folder / records[0]["page"]).read_text()
    assert "Nomogram points" in page and "No nomogram" not in page


def test_pages_say_why_a_panel_is_absent(report_run: tuple[Path, list[str]]) -> None:
    folder, _ = report_run
    records = json.loads((folder / "preds.json").read_text())
    ok = records[0]
    assert ok["interval"] is not None and ok["interval_note"] == ""
    assert "precomputed (--features)" in ok["qc"]["note"] and ok["qc"]["image"] is None
    assert "not" in ok["gradcam"]["note"] and ok["gradcam"]["image"] is None
    page = (folder / ok["page"]).read_text()
    assert "No QC strip:" in page and "No Grad-CAM:" in page


def test_interval_notes_name_the_reason_per_classifier(signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    from rccgrade.models.page_panels import interval_note

    table, _, _, res = signal_fit
    rad = bundle_from_arms(res, "radiomics", table, tmp_path / "rad")
    from rccgrade.models.bundle import load_bundle

    loaded = load_bundle(rad)
    has_cov = (loaded.meta.get("extra") or {}).get("logit_covariance") is not None
    assert (interval_note(loaded) == "") == has_cov or bool(loaded.meta["extra"].get("oof_calibration"))
    stacked = load_bundle(bundle_from_arms(res, "stacked", table, tmp_path / "st"))
    assert interval_note(stacked) == ""  # the nearest-score interval covers the stacked arm
    stripped = dict(stacked.meta)
    stripped["extra"] = {k: v for k, v in stacked.meta["extra"].items() if k != "oof_calibration"}
    stacked_old = dataclasses.replace(stacked, meta=stripped)  # a bundle written before the OOF pairs were kept
    assert "stacked" in interval_note(stacked_old) and "base arms" in interval_note(stacked_old)


def test_stacked_pages_get_the_nearest_score_interval(signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    """A stacked arm has no coefficient covariance: its pages carry the nearest-score interval, which
    contains the probability's neighbourhood rate; a bundle without the stored OOF pairs would show none."""
    table, _, split, res = signal_fit
    bundle = bundle_from_arms(res, "stacked", table, tmp_path / "st")
    _, test = train_test_ids(split)
    path = save_table(table.loc[test[:3]], tmp_path / "f.parquet")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(bundle),
            "--features",
            str(path),
            "--out",
            str(tmp_path / "p.csv"),
            "--report",
            str(tmp_path / "r"),
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "r" / "preds.json").read_text())
    for rec in records:
        assert rec["status"] == "ok"
        iv = rec["interval"]
        assert iv is not None and "nearest out-of-fold" in iv["method"]
        assert 0.0 <= iv["lower"] < iv["upper"] <= 1.0
