"""``rccgrade predict BUNDLE [MANIFEST] --out preds.csv``: apply a trained model to new patients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rccgrade.cli_progress import cluster_config_option, command_cluster, local_parallel, scheduler_option
from rccgrade.cohort.column_map import parse_column_map
from rccgrade.errors import ModelError
from rccgrade.features.table import load_table
from rccgrade.models.bundle import load_bundle
from rccgrade.models.predict import (
    OOD_RANGE_FACTOR,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_OOD,
    predict_table,
)
from rccgrade.models.predict_manifest import predict_manifest_with_features


def write_report(
    bundle: Any,
    preds: pd.DataFrame,
    table: pd.DataFrame | None,
    folder: Path,
    banners: list[str] | None = None,
    preprocess_dir: Path | None = None,
) -> Any:
    """Per-patient pages of ``preds``; contributions of every patient that has features (ok or OOD).

    ``preprocess_dir`` (where ``predict`` preprocessed the manifest's images; None with ``--features``) gives
    the QC strip and the slices for Grad-CAM (:func:`rccgrade.models.page_panels.build_panels`).
    """
    import tempfile

    from rccgrade.models.explain import contributions
    from rccgrade.models.page_panels import build_panels
    from rccgrade.report.patient import write_patient_reports

    contrib = None
    warnings: dict[str, list[str]] = {}
    if table is not None:
        have = [p for p in preds.index if p in table.index and preds.loc[p, "status"] != STATUS_FAILED]
        if have:
            try:
                contrib = contributions(bundle.model, table.loc[have], bundle.arm)
            except ModelError as exc:
                for pid in have:
                    warnings.setdefault(pid, []).append(f"no feature contributions: {exc}")
    extra = dict(bundle.meta.get("extra") or {})
    intervals = None
    ok = [p for p in preds.index if preds.loc[p, "status"] == STATUS_OK]
    if table is not None and ok and extra.get("logit_covariance") is not None:
        from rccgrade.models.explain import probability_interval

        intervals = probability_interval(bundle.model, np.asarray(extra["logit_covariance"]), table.loc[ok])
    elif ok and extra.get("oof_calibration"):
        from rccgrade.models.score_interval import METHOD, score_interval

        cal = extra["oof_calibration"]
        try:
            intervals = score_interval(cal["oof"], cal["y"], preds.loc[ok, "probability"].astype(float))
            intervals.attrs["method"] = METHOD.format(k=int(intervals["k"].iloc[0]))
        except ModelError as exc:
            for pid in ok:
                warnings.setdefault(pid, []).append(f"no interval: {exc}")
    with tempfile.TemporaryDirectory(prefix="rccgrade-pages-") as scratch:
        panels = build_panels(bundle, preds, table, preprocess_dir, Path(scratch))
        return write_patient_reports(
            preds,
            folder,
            contrib,
            warnings=warnings,
            banners=banners or [],
            roc=extra.get("training_roc"),
            intervals=intervals,
            panels=panels,
        )


_STYLE = {STATUS_OK: "green", STATUS_FAILED: "bold red", STATUS_OOD: "bold yellow"}


def predict_command(
    bundle: Path = typer.Argument(..., help="Model bundle folder (holds bundle.json and model.skops)."),
    manifest: Path | None = typer.Argument(
        None, help="Manifest CSV of the new patients (images, mask, clinical columns; no grade needed)."
    ),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="Where to write the predictions CSV."),
    features: Path | None = typer.Option(
        None, "--features", help="Precomputed FeatureTable (Parquet) instead of computing features from MANIFEST."
    ),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="Folder for intermediate files when features are computed [default: next to --out]."
    ),
    allow_failures: bool = typer.Option(
        False,
        "--allow-failures",
        help="Exit 0 even when some patients failed or are out of distribution (batch use); they stay in the CSV.",
    ),
    ood_factor: float = typer.Option(
        OOD_RANGE_FACTOR,
        "--ood-factor",
        min=0.0,
        help="A feature beyond [min − k·range, max + k·range] of the training values is out of distribution.",
    ),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: all cores, 1: serial)."),
    scheduler: str | None = scheduler_option(),
    cluster_config: Path | None = cluster_config_option(),
    column_map: list[str] = typer.Option(
        [],
        "--map",
        help="MODEL_NAME=COLUMN: this cohort's column holding a clinical variable the model knows by another name "
        "(repeatable), e.g. --map hemoglobin=haemoglobin.",
    ),
    missing_variables: str = typer.Option(
        "refuse",
        "--missing-variables",
        help="A clinical variable the model needs is absent: refuse (default) or impute (training median/mode, "
        "loudly flagged on every page).",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Folder for one HTML page per patient (+ index.html and preds.json) with its feature contributions.",
    ),
) -> None:
    """Predict P(ISUP 3–4) and the class at the model's training threshold for each patient.

    Every patient of MANIFEST (or of the feature table) gets a row in the CSV with a status: ok, failed (with
    the reason: a missing or corrupt file, a bad clinical value, a failed stage …) or out_of_distribution.
    Failed and out-of-distribution rows have no probability. Exits with code 1 when any patient is not ok
    (unless --allow-failures), 2 when the bundle or the inputs as a whole are unusable.
    """
    console = Console()
    loaded = load_bundle(bundle)
    mapping = parse_column_map(column_map)
    table = None
    banners: list[str] = []
    work = work_dir or out.parent / "predict_work"
    preprocess_dir = None
    if features is not None:
        table, settings = load_table(features)
        if manifest is not None:
            made = predict_manifest_with_features(
                loaded,
                manifest,
                work,
                features=table,
                feature_settings=settings,
                ood_factor=ood_factor,
                column_map=mapping,
                missing_variables=missing_variables,
            )
            preds, table, banners = made.predictions, made.features, made.warnings
        else:
            if mapping or missing_variables != "refuse":
                raise ModelError("--map and --missing-variables apply to a MANIFEST's clinical columns; give one")
            preds = predict_table(loaded, table, settings, ood_factor=ood_factor)
    elif manifest is not None:
        # a cluster starts only for imaging features (a clinical model has no per-case work)
        imaging = any(str(c).startswith(("rad:", "kin:", "deep:")) for c in loaded.feature_names)
        with command_cluster(local_parallel(workers), scheduler, cluster_config) as cases:
            made = predict_manifest_with_features(
                loaded,
                manifest,
                work,
                parallel=cases.parallel() if imaging else cases.local,
                ood_factor=ood_factor,
                column_map=mapping,
                missing_variables=missing_variables,
                qc=True if report is not None else None,  # the pages' QC strip shows preprocessing's montages
            )
        preds, table, banners = made.predictions, made.features, made.warnings
        preprocess_dir = work / "preprocess"
    else:
        raise ModelError("give a MANIFEST of new patients or a feature table with --features")
    out.parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(out)

    if report is not None:
        written = write_report(loaded, preds, table, report, banners, preprocess_dir)
        console.print(f"wrote {len(written.pages)} patient page(s) and {written.index}", highlight=False)

    view = Table(title=escape(f"{loaded.arm} model — threshold {loaded.threshold:.3f}"))
    view.add_column("patient")
    view.add_column("status")
    view.add_column("P(high grade)", justify="right")
    view.add_column("class")
    view.add_column("reason", overflow="fold")
    shown = preds.head(20)
    for pid, row in shown.iterrows():
        status = str(row["status"])
        view.add_row(
            escape(str(pid)),
            f"[{_STYLE.get(status, 'red')}]{escape(status)}[/]",
            "" if pd.isna(row["probability"]) else f"{row['probability']:.3f}",
            escape(str(row["predicted_grade"] or "")),
            escape(str(row["reason"] or "")),
        )
    console.print(view)
    for msg in banners:
        console.print(f"WARNING: {escape(msg)}", style="bold yellow", highlight=False)
    if len(preds) > 20:
        console.print(f"… {len(preds) - 20} more", highlight=False)
    counts = preds["status"].value_counts()
    n_bad = int(counts.get(STATUS_FAILED, 0) + counts.get(STATUS_OOD, 0))
    summary = (
        f"{len(preds)} patient(s): {int(counts.get(STATUS_OK, 0))} ok, {int(counts.get(STATUS_FAILED, 0))} failed, "
        f"{int(counts.get(STATUS_OOD, 0))} out of distribution; wrote {out}"
    )
    console.print(escape(summary), highlight=False, style="bold red" if n_bad else "green")
    if n_bad and not allow_failures:
        console.print("some patients have no prediction (see the reason column); --allow-failures exits 0")
        raise typer.Exit(code=1)
