"""Per-patient feature tables for bench/grade_signal.py, computed once per cohort through rccgrade's own stages.

Runs the study stages ``cohort → preprocess → radiomics → clinical`` (no models, no deep features) on a
``rccgrade synth`` cohort with a configuration's preprocessing and radiomics settings, then writes one
parquet per cohort: the ``rad:`` and ``clin:`` columns, the label, and the generator's ``truth.csv`` columns
prefixed ``truth:`` (oracle ``p_high`` and the true phenotype ``z_*``; the benchmark uses them only to score
the oracle and the true-phenotype regression, never as features of an arm).

Deep features are left out on purpose: without ImageNet weights (offline) they come from random weights,
which is noise (the issue's demo numbers show what that does to the fusion); the noise-source arm (d) of the
benchmark measures exactly that failure mode with a controlled Gaussian block instead.

Usage::

    nice -n 10 .venv/bin/python bench/signal_features.py COHORT_DIR --config configs/paper.yaml \
        --out /work/bench_cache/h12-signal/c1_paper.parquet [--workers 2] [--no-stability]

``COHORT_DIR`` holds ``manifest.csv`` and ``truth.csv`` (``rccgrade synth``); the stage caches go to
``<out>.run/``, so a killed run resumes per case.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds radiomics.py: drop this folder from the import path first, so ``import radiomics``
# finds PyRadiomics.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402
import yaml  # noqa: E402


def build_tables(
    cohort_dir: Path,
    config_path: Path,
    out: Path,
    workers: int,
    stability: bool,
    rois: list[str] | None,
    register: bool = True,
    patients: tuple[int, int] | None = None,
    params: Path | None = None,
) -> dict[str, object]:
    """Run the stages and write ``out`` (parquet); return the cost record (seconds per stage, sizes)."""
    from rccgrade.config import config_from_dict
    from rccgrade.study.context import StudyContext, StudyObserver
    from rccgrade.study.runner import run_stage
    from rccgrade.study.stages import ClinicalStage, CohortStage, PreprocessStage, RadiomicsStage

    raw = yaml.safe_load(config_path.read_text())
    manifest = (cohort_dir / "manifest.csv").resolve()
    run_dir = out.parent / (out.stem + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    if patients is not None:  # a slice of the cohort (patient i is the same whatever the cohort size)
        rows = pd.read_csv(manifest, dtype=str, keep_default_na=False).iloc[patients[0] : patients[1]]
        for col in ("arterial", "nephrographic", "excretory", "mask"):
            rows[col] = [str((cohort_dir / v).resolve()) if v else v for v in rows[col]]
        manifest = run_dir / "manifest.csv"
        rows.to_csv(manifest, index=False)
    raw["cohort"] = {**raw.get("cohort", {}), "manifest": str(manifest)}
    raw["runs_dir"] = str(out.parent.resolve())
    raw["name"] = out.stem + ".run"
    raw["parallel"] = {"backend": "serial" if workers == 1 else "processes", "workers": workers}
    raw.pop("synth", None)
    raw.setdefault("radiomics", {}).setdefault("stability", {})["enabled"] = stability
    if params is not None:  # a declared cheaper PyRadiomics parameter file, for every arm alike
        raw["radiomics"]["params"] = str(params.resolve())
    if rois is not None:
        raw.setdefault("preprocess", {})["rois"] = rois
    if not register:
        raw.setdefault("preprocess", {}).setdefault("registration", {})["enabled"] = False
    cfg = config_from_dict(raw, source=str(config_path), base_dir=config_path.parent)
    ctx = StudyContext(config=cfg, run_dir=run_dir, parallel=cfg.parallel, observer=StudyObserver())
    seconds: dict[str, float] = {}
    for stage in (CohortStage(check_folds=False), PreprocessStage(), RadiomicsStage(always=True), ClinicalStage()):
        t0 = time.perf_counter()
        run_stage(ctx, stage)
        seconds[stage.name] = time.perf_counter() - t0
        print(f"{stage.name}: {seconds[stage.name]:.1f} s", flush=True)
    rad = ctx.results.radiomics.table  # type: ignore[union-attr]
    clin = ctx.results.clinical.table  # type: ignore[union-attr]
    truth = pd.read_csv(cohort_dir / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    table = rad.join(clin, how="inner")
    table["label"] = truth.loc[table.index, "high_grade"].astype(int)
    keep = ["p_high", "center", *[c for c in truth.columns if c.startswith("z_")]]
    for c in keep:
        table[f"truth:{c}"] = truth.loc[table.index, c].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out)
    n_cases = len(pd.read_csv(manifest, dtype=str))
    cost = {
        "cohort_dir": str(cohort_dir),
        "config": str(config_path),
        "n_patients_manifest": n_cases,
        "patients": list(patients) if patients else None,
        "n_patients_table": len(table),
        "n_radiomics_features": int(rad.shape[1]),
        "n_clinical_columns": int(clin.shape[1]),
        "workers": workers,
        "stability": stability,
        "registration": register,
        "radiomics_params": str(params) if params is not None else None,
        "stage_seconds": seconds,
        "cpu_count": os.cpu_count(),
        "load_average_end": list(os.getloadavg()),
    }
    Path(str(out) + ".cost.json").write_text(json.dumps(cost, indent=2))
    return cost


def from_radiomics_table(radiomics: Path, cohort_dir: Path, out: Path) -> dict[str, object]:
    """The same output from a radiomics FeatureTable a study already extracted (e.g. a cached ``radiomics``
    stage of the demo cohort): ``clin:`` columns from the manifest (``clinical_table``), label and truth."""
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.features.clinical import clinical_table
    from rccgrade.features.table import load_table

    rad, _ = load_table(radiomics)
    clin = clinical_table(load_cohort(cohort_dir / "manifest.csv"))
    truth = pd.read_csv(cohort_dir / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    table = rad.join(clin, how="inner")
    table["label"] = truth.loc[table.index, "high_grade"].astype(int)
    for c in ["p_high", "center", *[c for c in truth.columns if c.startswith("z_")]]:
        table[f"truth:{c}"] = truth.loc[table.index, c].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out)
    cost = {"from_table": str(radiomics), "n_patients_table": len(table), "n_radiomics_features": int(rad.shape[1])}
    Path(str(out) + ".cost.json").write_text(json.dumps(cost, indent=2))
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cohort_dir", type=Path)
    parser.add_argument("--config", type=Path, default=Path("configs/paper.yaml"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stability", action="store_true", help="also compute the ICC stability table (slow)")
    parser.add_argument(
        "--no-registration",
        action="store_true",
        help="skip registration (arterial-only features are identical: the arterial phase is the reference)",
    )
    parser.add_argument("--patients", default="", help="START:STOP, a slice of the manifest's rows (chunks)")
    parser.add_argument("--rois", default="tumour", help="comma-separated preprocess ROIs (slice images only)")
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="PyRadiomics parameter file replacing the config's radiomics.params (e.g. configs/radiomics_demo.yaml)",
    )
    parser.add_argument("--from-table", type=Path, default=None, help="reuse this radiomics parquet (no extraction)")
    args = parser.parse_args()
    if args.from_table is not None:
        print(json.dumps(from_radiomics_table(args.from_table, args.cohort_dir, args.out), indent=2))
        return
    rois = [r for r in args.rois.split(",") if r] or None
    patients = tuple(int(v) for v in args.patients.split(":")) if args.patients else None
    cost = build_tables(
        args.cohort_dir,
        args.config,
        args.out,
        args.workers,
        args.stability,
        rois,
        not args.no_registration,
        patients,
        args.params,
    )
    print(json.dumps(cost, indent=2))


if __name__ == "__main__":
    main()
