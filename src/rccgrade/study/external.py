"""External validation: apply saved model bundles to another cohort and report the same statistics.

The bundles record the settings of every stage that made their features (``bundle.json`` →
``feature_settings``). This module recomputes those features for the external cohort with exactly those
settings, by running the study's own stages (cohort, preprocess, radiomics, deep, clinical), predicts with
each bundle at its training-derived threshold and evaluates discrimination (AUC with DeLong CI),
classification at that threshold, calibration (the model is *not* recalibrated), decision curves and paired
DeLong comparisons.

An external cohort may lack a phase (e.g. no excretory series): the manifest's phase columns decide which
phases are read; preprocessing fills the missing channels with its documented strategy
(``preprocess.missing_phases``) and the report says so. A bundle whose features need a missing phase (e.g.
arterial radiomics without an arterial series) is reported as not applicable rather than silently skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cluster import ClusterSettings, open_cluster
from rccgrade.cohort.manifest_info import manifest_phases
from rccgrade.cohort.types import PHASES
from rccgrade.config import dump_config
from rccgrade.errors import ConfigError, ModelError, RccgradeError
from rccgrade.features.naming import CLINICAL, DEEP, KINETIC, RADIOMICS, STACKED, kinds_of_columns
from rccgrade.parallel import ParallelSettings
from rccgrade.study.context import StudyContext, StudyObserver, need
from rccgrade.study.lock import run_lock
from rccgrade.study.outputs import FigurePaths
from rccgrade.study.report_blocks import delong_blocks, metrics_rows, qc_block, table1_blocks
from rccgrade.study.runner import run_stage
from rccgrade.study.stages import ClinicalStage, CohortStage, DeepStage, PreprocessStage, RadiomicsStage
from rccgrade.study.stages.evaluate import jsonable, save_figures

__all__ = ["ExternalResult", "evaluate_external", "find_bundles", "manifest_phases"]


@dataclass
class ExternalResult:
    """What :func:`evaluate_external` produced.

    Attributes:
        out_dir: Output folder.
        rows: One summary row per evaluated arm (``label``, ``n``, ``auc``, ``auc_lo``, ``auc_hi``, …).
        metrics: Contents of ``metrics.json``.
        report: Path of ``report.html``.
        warnings: Warnings (missing phases, arms not applicable …).
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    metrics: dict[str, Any]
    report: Path
    warnings: list[str] = field(default_factory=list)


def find_bundles(path: str | Path) -> list[Path]:
    """A bundle folder, or every bundle inside a run's ``bundles/`` folder (sorted).

    Raises:
        ModelError: no ``bundle.json`` at or under ``path``.
    """
    path = Path(path)
    if (path / "bundle.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("*/bundle.json"))
    if not found and (path / "bundles").is_dir():
        found = sorted(p.parent for p in (path / "bundles").glob("*/bundle.json"))
    if not found:
        raise ModelError(
            "no model bundle here: pass a bundle folder (runs/<name>/bundles/<arm>) or a run's bundles/ folder",
            path=path,
        )
    return found


def _study_config(
    fs: dict[str, Any],
    manifest: Path,
    out: Path,
    phases: list[str],
    arms: list[str],
    column_map: Mapping[str, str] | None = None,
) -> Any:
    from rccgrade.config import StudyConfig
    from rccgrade.models.settings import ModelSettings

    cohort = dict(fs.get("cohort") or {})
    radiomics = dict(fs.get("radiomics") or {})
    if radiomics:
        # Stability (ICC) only decides which features a model may use; the model is already fitted, so the
        # external cohort needs the features, not their stability.
        radiomics["stability"] = {**dict(radiomics.get("stability") or {}), "enabled": False}
        radiomics["phases"] = [p for p in radiomics.get("phases", ["arterial"]) if p in phases] or radiomics.get(
            "phases", ["arterial"]
        )
    data = {
        "name": "external",
        "runs_dir": str(out.parent),
        "cohort": {
            "manifest": str(manifest),
            "phases": phases,
            "mask_phase": cohort.get("mask_phase", "arterial"),
            "label": cohort.get("label"),
            "clinical_types": fs.get("clinical_types") or {},
            # this cohort's own names for the model's variables (--map); the training cohort's map is not reused
            "column_map": dict(column_map or {}),
        },
        "preprocess": fs.get("preprocess") or {},
        "radiomics": radiomics,
        "deep": dict(fs.get("deep") or {}),
        "models": ModelSettings(arms=arms).model_dump(mode="json"),
    }
    cfg = StudyConfig.model_validate(data)
    cfg.runs_dir = out.parent
    cfg.name = out.name
    return cfg


def evaluate_external(
    bundle: str | Path,
    manifest: str | Path,
    out: str | Path,
    *,
    cohort_name: str = "External cohort",
    scheduler: str | None = None,
    column_map: Mapping[str, str] | None = None,
    missing_variables: str = "refuse",
    cluster: ClusterSettings | None = None,
    parallel: ParallelSettings | None = None,
) -> ExternalResult:
    """External validation of one bundle or of every bundle of a run on the cohort of ``manifest``.

    Args:
        bundle: A bundle folder or a folder of bundles (``runs/<name>/bundles``).
        manifest: The external cohort's manifest (labels required; phases may be missing).
        out: Output folder: ``predictions.csv``, ``metrics.json``, ``figures/``, ``report.html`` and stage caches.
        cohort_name: Name of the cohort in the report.
        scheduler: Dask scheduler address for the per-case stages (wins over ``cluster``).
        column_map: Model variable → this cohort's column (``--map hemoglobin=haemoglobin``), as for ``predict``.
        missing_variables: ``refuse`` (default: a clinical variable a model reads that the whole cohort lacks
            stops the run, naming it and both fixes) or ``impute`` (the bundle's fitted imputer fills it for
            every patient; warned on the terminal and in the report's banner), as for ``predict``.
        cluster: Where the per-case stages run (the ``cluster:`` section, :mod:`rccgrade.cluster`), as in a
            study: a SLURM/PBS/SGE/Kubernetes cluster starts only when a per-case stage has work and is
            closed at the end. None: this machine.
        parallel: The ``parallel:`` settings (None: local processes on every core).

    Returns:
        An :class:`ExternalResult`.

    Raises:
        ModelError: no bundle, bundles trained with different feature settings, or (``refuse``) a clinical
            variable a model needs is absent from the cohort.
        ConfigError: an unknown ``missing_variables`` policy.
        RccgradeError: the cohort has no usable labelled case.
    """
    from rccgrade.cohort.column_map import MISSING_POLICIES
    from rccgrade.models.bundle import load_bundle

    if missing_variables not in MISSING_POLICIES:
        raise ConfigError(f"--missing-variables {missing_variables!r}: choose one of {list(MISSING_POLICIES)}")
    out = Path(out).resolve()
    manifest = Path(manifest).resolve()
    bundles = [load_bundle(p) for p in find_bundles(bundle)]
    fs = bundles[0].feature_settings
    for b in bundles[1:]:
        if json.dumps(b.feature_settings, sort_keys=True) != json.dumps(fs, sort_keys=True):
            raise ModelError(
                f"bundles {bundles[0].arm!r} and {b.arm!r} were trained on features made with different settings; "
                "evaluate them separately",
                path=b.path,
            )
    phases = manifest_phases(manifest)
    warnings: list[str] = []
    missing = [p for p in PHASES if p not in phases]
    if missing:
        strategy = (fs.get("preprocess") or {}).get("missing_phases", "repeat")
        warnings.append(
            f"The external cohort has no {', '.join(missing)} phase: its image channels were filled by the "
            f"'{strategy}' strategy, so deep features differ in kind from the development cohort's."
        )
    arms = [b.arm for b in bundles]
    cfg = _study_config(fs, manifest, out, phases, [a for a in arms if a != STACKED] or [CLINICAL], column_map)
    if parallel is not None:
        cfg.parallel = parallel
    if cluster is not None:
        cfg.cluster = cluster
    run_dir = _output_folder(out)
    # two evaluations never write one output folder at once; a cluster starts only for per-case work
    with run_lock(run_dir), open_cluster(cfg.cluster, cfg.parallel, scheduler) as cases:
        dump_config(cfg, run_dir / "config.yaml")
        ctx = StudyContext(config=cfg, run_dir=run_dir, parallel=cfg.parallel, cases=cases, observer=StudyObserver())
        ctx.warnings.extend(warnings)
        return _evaluate(ctx, bundles, arms, phases, cohort_name, missing_variables)


def _output_folder(out: Path) -> Path:
    """Create the output folder (a path the user chose, not an identifier).

    Raises:
        ConfigError: it cannot be created or written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot create or write the output folder ({exc.strerror or exc}); pass another --out", path=out
        ) from None
    return out


def _evaluate(
    ctx: StudyContext,
    bundles: list[Any],
    arms: list[str],
    phases: list[str],
    cohort_name: str,
    missing_variables: str = "refuse",
) -> ExternalResult:
    """The features of the external cohort (the study's stages), the predictions, statistics and report."""
    from rccgrade.cohort.column_map import imputed_variables_message
    from rccgrade.features.table import join_tables
    from rccgrade.models.predict import STATUS_FAILED, STATUS_OK, STATUS_OOD, out_of_distribution, predict_table
    from rccgrade.models.predict_manifest import missing_clinical_variables, unit_warnings

    run_dir = ctx.run_dir
    out = run_dir
    needed: set[str] = set()
    for b in bundles:
        needed |= kinds_of_columns(b.feature_names)
    run_stage(ctx, CohortStage(check_folds=False))
    # predict's rule for a clinical variable absent from the whole cohort: refuse (naming it) or impute (loudly)
    imputed: list[str] = []
    for b in bundles:
        found = missing_clinical_variables(b, need(ctx.results.cohort, "cohort").cohort, missing_variables)
        imputed += [v for v in found if v not in imputed]
    if imputed:
        ctx.warn(imputed_variables_message(imputed))
    tables = []
    if needed & {RADIOMICS, KINETIC, DEEP}:
        run_stage(ctx, PreprocessStage())
    if needed & {RADIOMICS, KINETIC}:  # kinetic features come from the radiomics stage
        tables.append(need(run_stage(ctx, RadiomicsStage(always=True)), "radiomics").table)
    if DEEP in needed:
        tables.append(need(run_stage(ctx, DeepStage(always=True)), "deep").table)
    clinical = need(run_stage(ctx, ClinicalStage()), "clinical")
    if clinical.table.shape[1]:
        tables.append(clinical.table)
    table = join_tables(*tables) if tables else pd.DataFrame(index=pd.Index(clinical.table.index, name="patient_id"))
    for var in imputed:
        if f"clin:{var}" not in table.columns:
            table[f"clin:{var}"] = np.nan  # the bundle's fitted imputer fills it (its training median/mode)
    for b in bundles:
        for msg in unit_warnings(b, table):
            ctx.warn(msg)  # deduplicated: one line per variable however many models read it
    cohort = need(ctx.results.cohort, "cohort")
    labels = cohort.labels()
    patients, rows, failed = _every_case(cohort.validation, ctx.failures)
    preds = pd.DataFrame(
        {"row": pd.array(rows, dtype="Int64"), "y": labels.reindex(patients).astype("Int64").to_numpy()},
        index=pd.Index(patients, name="patient_id"),
    )
    thresholds: dict[str, float] = {}
    applicable: list[str] = []
    usable = table.loc[[p for p in table.index if p not in failed]]
    for b in bundles:
        try:
            # every probability is kept for the statistics: leaving out the patients least like the training
            # cohort would flatter the model; they are flagged instead (status out_of_distribution + reason)
            res = predict_table(b, usable, patients=patients, failures=failed, rows=rows, ood_factor=math.inf)
        except RccgradeError as exc:
            ctx.warn(f"{b.arm}: not applicable to this cohort ({exc.message})")
            continue
        res = res[~res.index.duplicated()].copy()
        ood = out_of_distribution(
            usable.reindex(columns=b.feature_names), b.training_distribution, probability_kept=True
        )
        flagged = [p for p in ood.index[ood != ""] if p in res.index and res.at[p, "status"] == STATUS_OK]
        res.loc[flagged, "status"] = STATUS_OOD
        # keep what predict_table already said (e.g. the imputed feature groups) after the distribution flag
        prior = res["reason"].where(res["reason"].notna(), "").astype(str)
        res.loc[flagged, "reason"] = [" | ".join(r for r in (ood[p], prior[p]) if r) for p in flagged]
        preds[b.arm] = res["probability"].where(res["status"] != STATUS_FAILED)
        preds[f"{b.arm}.status"] = res["status"]
        preds[f"{b.arm}.reason"] = res["reason"]
        thresholds[b.arm] = b.threshold
        applicable.append(b.arm)
        # per-patient imputation (e.g. a ring thinner than the voxels), beyond the cohort-wide imputed variables
        own = [c for c in b.feature_names if c not in {f"clin:{v}" for v in imputed}]
        gaps = usable.reindex(columns=own).isna().any(axis=1)
        filled = [p for p in gaps.index[gaps] if p in res.index and res.at[p, "status"] != STATUS_FAILED]
        if filled:
            ctx.warn(
                f"{b.arm}: {len(filled)} patient(s) predicted with missing feature values imputed by the model's "
                f"training medians/modes ({', '.join(map(str, filled[:5]))}{' …' if len(filled) > 5 else ''}); "
                "predictions.csv names the imputed feature groups per patient"
            )
        if flagged:
            ctx.warn(
                f"{b.arm}: {len(flagged)} patient(s) lie far outside the training distribution of the model's features "
                f"({', '.join(map(str, flagged[:5]))}{' …' if len(flagged) > 5 else ''}); their predictions are kept "
                "in the statistics and flagged out_of_distribution in predictions.csv"
            )
    # one evaluation set for every arm (paired comparisons): labelled patients every applicable arm predicted
    ok = preds["y"].notna()
    for arm in applicable:
        ok &= preds[f"{arm}.status"] != STATUS_FAILED
    left_out = preds.loc[~ok & preds["y"].notna()]
    if len(left_out):
        ctx.warn(
            f"{len(left_out)} labelled patient(s) of the {len(preds)} manifest rows are not in the statistics "
            f"(no prediction from at least one model): {', '.join(map(str, left_out.index[:8]))}"
            + (" …" if len(left_out) > 8 else "")
            + "; predictions.csv gives each one's status and reason per model"
        )
    ids = [str(p) for p in preds.index[ok]]
    if not ids:
        preds.to_csv(run_dir / "predictions.csv", float_format="%.10g")
        worst = [
            f"{arm}: {int((preds[f'{arm}.status'] == STATUS_FAILED).sum())} without prediction, e.g. "
            f"{next(iter(preds.loc[preds[f'{arm}.status'] == STATUS_FAILED, f'{arm}.reason']), '')[:200]}"
            for arm in applicable
            if (preds[f"{arm}.status"] == STATUS_FAILED).any()
        ]
        raise RccgradeError(
            "no labelled case of the external cohort has a prediction from every model ("
            + " | ".join(worst)
            + "); predictions.csv gives the status and reason per model and patient",
            path=out,
        )
    evaluated = list(applicable)
    stats_preds = preds.loc[ok, ["y", *evaluated]].copy()
    stats_preds["y"] = stats_preds["y"].astype(int)
    stats_preds.index = pd.Index(ids, name="patient_id")
    preds.to_csv(run_dir / "predictions.csv", float_format="%.10g")
    pd.DataFrame(ctx.failures, columns=["stage", "patient_id", "error"]).to_csv(run_dir / "failures.csv", index=False)
    metrics, evals, dca = _statistics(ctx, stats_preds, evaluated, thresholds)
    metrics["n_manifest"] = len(preds)
    metrics["status_counts"] = {
        arm: {str(k): int(v) for k, v in preds[f"{arm}.status"].value_counts().items()} for arm in evaluated
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    figures = (
        save_figures(ctx, evals, run_dir / "figures", decision_curves={"test": dca} if dca is not None else None)
        if evaluated
        else {}
    )
    report = _report(ctx, cohort_name, metrics, evaluated, figures, phases)
    rows = metrics_rows(metrics["arms"], evaluated, cohorts=("external",))
    return ExternalResult(out_dir=run_dir, rows=rows, metrics=metrics, report=report, warnings=list(ctx.warnings))


def _every_case(validation: Any, failures: list[dict[str, str]]) -> tuple[list[str], list[int | None], dict[str, str]]:
    """Every manifest row's patient id and line, and why each unusable or failed case has no features.

    Returns:
        ``(patients, rows, failed)``: ids in manifest order (a row without an id is named ``<row N>``), their
        manifest lines, and patient → reason for the cases validation refused or a stage could not process.
    """
    cases = validation.cases
    patients: list[str] = []
    rows: list[int | None] = []
    for rec in cases.to_dict("records"):
        row = None if pd.isna(rec.get("row")) else int(rec["row"])
        pid = rec.get("patient_id")
        patients.append(str(pid) if isinstance(pid, str) and pid else f"<row {row}>")
        rows.append(row)
    failed: dict[str, str] = {}
    problems = validation.problems
    errors = problems[problems["severity"] == "error"] if len(problems) else problems
    for pid, group in errors.groupby("patient_id", sort=False) if len(errors) else []:
        failed[str(pid)] = "unusable: " + "; ".join(
            f"{r.code} ({r.message}{'; file ' + str(r.file) if isinstance(r.file, str) and r.file else ''})"
            for r in group.head(3).itertuples(index=False)
        )
    for f in failures:
        failed.setdefault(str(f["patient_id"]), f"{f['stage']} failed: {f['error']}")
    return patients, rows, failed


def _statistics(
    ctx: StudyContext, preds: pd.DataFrame, arms: list[str], thresholds: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    from rccgrade.stats.dca import decision_curve, default_thresholds
    from rccgrade.stats.evaluate import evaluate_predictions
    from rccgrade.stats.roc import compare_models

    settings = ctx.config.evaluation
    y = preds["y"].to_numpy(int)
    evals = {
        a: evaluate_predictions(
            None, None, y, preds[a].to_numpy(float), settings, seed=ctx.seed, threshold=thresholds[a], arm=a
        )
        for a in arms
    }
    flat = {a: {k.replace("test.", "external.", 1): v for k, v in ev.flat().items()} for a, ev in evals.items()}
    comparisons = {}
    if len(arms) >= 2:
        comparisons["external"] = compare_models(
            y,
            {a: preds[a].to_numpy(float) for a in arms},
            level=settings.ci_level,
            correction=settings.multiple_testing,
        ).to_dict(orient="records")
    t = default_thresholds(settings.dca_threshold_min, settings.dca_threshold_max, settings.dca_threshold_step)
    dca = decision_curve(y, {a: preds[a].to_numpy(float) for a in arms}, t) if arms else None
    metrics = jsonable(
        {
            "cohort": "external",
            "n": len(y),
            "n_high": int(np.sum(y)),
            "arms": flat,
            "comparisons": comparisons,
            "thresholds": thresholds,
        }
    )
    return metrics, evals, dca


def _report(
    ctx: StudyContext,
    cohort_name: str,
    metrics: dict[str, Any],
    arms: list[str],
    figures: dict[str, FigurePaths],
    phases: list[str],
) -> Path:
    from rccgrade import __version__
    from rccgrade.report.html import Figure, ReportContext, default_checklist, render_report

    cohort = need(ctx.results.cohort, "cohort")
    figs: dict[str, Figure] = {}
    captions = {
        "roc": f"ROC curves of the saved models in the {cohort_name} (pointwise 95% bootstrap bands).",
        "calibration_test": f"Calibration of the saved models in the {cohort_name} (no recalibration).",
        "dca_test": f"Decision curves of the saved models in the {cohort_name}.",
    }
    keys = []
    for name, paths in figures.items():
        key = f"ext_{name}"
        figs[key] = Figure(
            caption=captions.get(name, name), png=paths.png, svg=paths.svg, width="90%" if name == "roc" else "70%"
        )
        keys.append(key)
    n, n_high = metrics["n"], metrics["n_high"]
    text = (
        f"{n} patients of the {cohort_name} ({n_high} high grade, {100 * n_high / max(n, 1):.1f}%) with phases "
        f"{', '.join(phases)}. Features were recomputed with the settings stored in the model bundles; each model "
        "was applied unchanged, at the decision threshold chosen on its development cohort."
    )
    rows = metrics_rows(metrics["arms"], arms, cohorts=("external",))
    context = ReportContext(
        title=f"External validation — {cohort_name}",
        run_name=ctx.config.name,
        version=__version__,
        summary=[text],
        warnings=list(ctx.warnings),
        qc=qc_block(cohort.validation, ctx.results.preprocess, ctx.failures),
        cohort={
            "n_total": cohort.n_total,
            "n_usable": len(cohort.cohort),
            "n_excluded": cohort.n_total - len(cohort.cohort),
            "n_high": n_high,
            "prevalence": 100.0 * n_high / max(n, 1),
        },
        table1=table1_blocks(cohort.cohort, None, ctx.config.report),
        delong=delong_blocks(metrics.get("comparisons", {}), arms),
        figures=figs,
        external=[{"name": cohort_name, "text": text, "metrics": rows, "figures": keys}],
        sections=("summary", "patients", "external", "checklist"),
    )
    context.checklist = default_checklist(context)
    return render_report(context, ctx.run_dir / "report.html", ctx.config.report)
