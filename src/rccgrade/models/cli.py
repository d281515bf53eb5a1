"""``rccgrade predict BUNDLE [MANIFEST] --out preds.csv``: apply a trained model to new patients."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from rccgrade.errors import ModelError
from rccgrade.features.table import join_tables, load_table
from rccgrade.models.bundle import ModelBundle, load_bundle
from rccgrade.models.predict import bundle_cohort, compute_features_for_bundle, predict_bundle


def _with_clinical(features: pd.DataFrame, manifest: Path, bundle: ModelBundle) -> pd.DataFrame:
    """Restrict to the manifest's patients and add its clinical columns when the model needs them."""
    from rccgrade.models.arms import clinical_table

    needed = bundle.feature_names
    cohort = bundle_cohort(bundle, manifest)
    ids = [p for p in cohort.patient_ids if p in features.index]
    absent = [p for p in cohort.patient_ids if p not in features.index]
    if absent:
        raise ModelError(f"{len(absent)} manifest patient(s) are not in the feature table: {absent[:5]}", path=manifest)
    features = features.loc[ids]
    need_clin = [c for c in needed if c.startswith("clin:") and c not in features.columns]
    if need_clin:
        clin = clinical_table(cohort).loc[ids]
        features = join_tables(features, clin[[c for c in clin.columns if c not in features.columns]])
    return features


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
) -> None:
    """Predict P(ISUP 3–4) and the class at the model's training threshold for each patient.

    Refuses features that are missing or were made with settings other than the model's, saying what
    differs.
    """
    console = Console()
    loaded = load_bundle(bundle)
    if features is not None:
        table, settings = load_table(features)
        if manifest is not None:
            table = _with_clinical(table, manifest, loaded)
    elif manifest is not None:
        table, settings = compute_features_for_bundle(loaded, manifest, work_dir or out.parent / "predict_work")
    else:
        raise ModelError("give a MANIFEST of new patients or a feature table with --features")
    preds = predict_bundle(loaded, table, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(out)
    view = Table(title=f"{loaded.arm} model — threshold {loaded.threshold:.3f}")
    view.add_column("patient")
    view.add_column("P(high grade)", justify="right")
    view.add_column("class")
    for pid, row in preds.head(20).iterrows():
        view.add_row(str(pid), f"{row['probability']:.3f}", str(row["predicted_grade"]))
    console.print(view)
    if len(preds) > 20:
        console.print(f"… {len(preds) - 20} more")
    console.print(f"wrote {len(preds)} prediction(s) to {out}")
