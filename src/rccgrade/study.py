"""The whole study in one call: cohort → preprocess → radiomics / deep / clinical → models → evaluation → report.

Each stage's output lives in ``<run_dir>/cache/<stage>-<key>/`` where ``key`` is
:func:`rccgrade.cache.stable_hash` of the stage's own settings and the keys of what it reads. A finished
stage writes ``stage.json`` into its folder; a re-run whose key matches reuses the folder (logged as
``cached``) instead of recomputing. So after changing only a model setting, preprocessing, radiomics and
deep extraction are reused and only the models, the statistics and the report are redone. Per-case stages
also keep their own per-case caches, so a run killed midway resumes where it stopped.

Keys are deliberately narrow: preprocessing depends on the image and mask checksums (not on the manifest's
clinical columns), frozen deep features on the slice images (not on the labels or the split), and only
fine-tuned deep features on the split and labels.

The run folder (DESIGN §3) holds ``config.yaml`` (fully resolved), ``provenance.json``, ``validation.csv``,
``split.csv``, ``predictions.csv``, ``metrics.json``, ``failures.csv``, ``figures/``, ``bundles/<arm>/``,
``stages.json`` (what ran and what was cached), ``study.log`` and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cache import stable_hash
from rccgrade.config import StudyConfig, dump_config
from rccgrade.errors import ConfigError, FeatureError, RccgradeError
from rccgrade.parallel import ParallelSettings

log = logging.getLogger(__name__)

STAGE_VERSION = "study-1"
"""Bumped when the study's own stage outputs change shape (invalidates every stage cache)."""

STAGES: tuple[str, ...] = (
    "cohort",
    "preprocess",
    "radiomics",
    "deep",
    "clinical",
    "split",
    "models",
    "evaluate",
    "report",
)
"""Stages in the order they run."""

RANDOM_WEIGHTS_BANNER = (
    "Deep features come from a RANDOMLY INITIALISED ResNet50 (weights: none) because the ImageNet weights "
    "were not available offline. Deep-model results are not comparable with the reference study. Put "
    "resnet50-0676ba61.pth into torch's hub cache (…/hub/checkpoints/) or set deep.weights to a local .pth "
    "file and re-run: only the deep, model and report stages are recomputed."
)

CONFIGURED_RANDOM_BANNER = (
    "Deep features come from a randomly initialised network (deep.weights: none, as configured): deep-model "
    "results are not comparable with ImageNet-initialised models such as the reference study's."
)


# --------------------------------------------------------------------------- records and observer


@dataclass
class StageRecord:
    """What happened to one stage in this run.

    Attributes:
        name: Stage name.
        status: ``ran`` (computed now), ``cached`` (reused from its cache folder) or ``skipped`` (not
            needed by this configuration).
        key: Cache key (None for uncached stages).
        seconds: Wall time in this run.
        n_failures: Cases this stage could not process.
        detail: One line for the log and the report.
    """

    name: str
    status: str
    key: str | None = None
    seconds: float = 0.0
    n_failures: int = 0
    detail: str = ""


class StudyObserver:
    """Receives progress events; the CLI subclasses it with a rich display. The default does nothing."""

    def stage_started(self, name: str, description: str) -> None:
        """A stage begins (``description`` is a human-readable line)."""

    def stage_progress(self, name: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of the running stage are finished."""

    def stage_finished(self, record: StageRecord) -> None:
        """A stage ended (ran, cached or skipped)."""


@dataclass
class StudyContext:
    """State passed from stage to stage during one run."""

    config: StudyConfig
    run_dir: Path
    parallel: ParallelSettings
    observer: StudyObserver
    fallback_weights: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    records: list[StageRecord] = field(default_factory=list)
    cohort: Any = None
    validation: Any = None

    @property
    def seed(self) -> int:
        """The study's master seed."""
        return int(self.config.seed)

    def add_failures(self, stage: str, rows: Any) -> int:
        """Record per-case failures of a stage (rows with ``patient_id`` and ``error``); returns their count."""
        if rows is None:
            return 0
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict(orient="records")
        n = 0
        for r in rows:
            detail = r.get("error", "")
            for extra in ("roi", "phase"):
                if r.get(extra):
                    detail = f"[{extra} {r[extra]}] {detail}"
            self.failures.append({"stage": stage, "patient_id": str(r.get("patient_id", "")), "error": str(detail)})
            n += 1
        return n

    def warn(self, text: str) -> None:
        """A warning for the log and the report's banner (deduplicated)."""
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning(text)


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
        run_dir: The run folder.
        records: One record per stage.
        metrics: Contents of ``metrics.json``.
        report: Path of ``report.html`` (None when the report is disabled).
        warnings: Warnings shown in the report's banner.
    """

    run_dir: Path
    records: list[StageRecord]
    metrics: dict[str, Any]
    report: Path | None
    warnings: list[str]

    def summary_rows(self) -> list[dict[str, Any]]:
        """Rows ``arm, cohort, auc, lo, hi, n`` for the CLI's summary table."""
        rows = []
        for arm, m in self.metrics.get("arms", {}).items():
            for cohort in ("train", "test"):
                if f"{cohort}.auc" in m:
                    lo, hi = m.get(f"{cohort}.auc.ci", [None, None])
                    rows.append(
                        {
                            "arm": arm,
                            "cohort": cohort,
                            "auc": m[f"{cohort}.auc"],
                            "lo": lo,
                            "hi": hi,
                            "n": m.get(f"{cohort}.n"),
                        }
                    )
        return rows


# --------------------------------------------------------------------------- cache helpers


def stage_dir(run_dir: Path, stage: str, key: str) -> Path:
    """Cache folder of a stage: ``<run_dir>/cache/<stage>-<key>``."""
    return Path(run_dir) / "cache" / f"{stage}-{key}"


def _marker(folder: Path) -> Path:
    return folder / "stage.json"


def read_stage_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of the last run (``stages.json``): name, status (ran/cached/skipped), key, seconds."""
    path = Path(run_dir) / "stages.json"
    if not path.is_file():
        raise RccgradeError("no stages.json in the run folder; run the study first", path=path)
    return json.loads(path.read_text())


@contextmanager
def _timed_stage(ctx: StudyContext, name: str, description: str) -> Iterator[StageRecord]:
    rec = StageRecord(name=name, status="ran")
    ctx.observer.stage_started(name, description)
    t0 = time.perf_counter()
    try:
        yield rec
    finally:
        rec.seconds = time.perf_counter() - t0
        ctx.records.append(rec)
        ctx.observer.stage_finished(rec)
        log.info(
            "stage %-10s %-7s %6.1f s%s%s",
            name,
            rec.status,
            rec.seconds,
            f"  key {rec.key}" if rec.key else "",
            f"  ({rec.detail})" if rec.detail else "",
        )


def _cached(
    ctx: StudyContext,
    name: str,
    description: str,
    key_parts: tuple[Any, ...],
    compute: Callable[[Path, Callable[[int, int], None]], dict[str, Any]],
) -> tuple[Path, dict[str, Any]]:
    """Run ``compute(folder, progress)`` unless ``<stage>-<key>/stage.json`` exists; return folder and manifest.

    ``compute`` writes its files into the folder and returns a JSON-able manifest (counts, failures, …)
    that is stored in ``stage.json`` and returned again on a cached run.
    """
    key = stable_hash(STAGE_VERSION, name, *key_parts)
    ctx.keys[name] = key
    folder = stage_dir(ctx.run_dir, name, key)
    with _timed_stage(ctx, name, description) as rec:
        rec.key = key
        marker = _marker(folder)
        if marker.is_file():
            manifest = json.loads(marker.read_text())["manifest"]
            rec.status = "cached"
        else:
            folder.mkdir(parents=True, exist_ok=True)

            def progress(done: int, total: int) -> None:
                ctx.observer.stage_progress(name, done, total)

            t0 = time.perf_counter()
            manifest = compute(folder, progress)
            payload = {"stage": name, "key": key, "seconds": round(time.perf_counter() - t0, 3), "manifest": manifest}
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload, indent=1, default=str))
            tmp.replace(marker)
        failures = manifest.get("failures", [])
        rec.n_failures = ctx.add_failures(name, failures)
        rec.detail = str(manifest.get("detail", ""))
    return folder, manifest


# --------------------------------------------------------------------------- stage: cohort


def _synth_cohort(ctx: StudyContext) -> Path:
    """Generate the configured synthetic cohort under ``<run_dir>/cohort`` once; return its manifest."""
    from rccgrade.synth.writer import write_cohort

    synth = ctx.config.synth
    assert synth is not None
    folder = ctx.run_dir / "cohort"
    stamp = folder / "study-synth.json"
    wanted = synth.model_dump(mode="json")
    manifest = folder / "manifest.csv"
    if stamp.is_file() and manifest.is_file() and json.loads(stamp.read_text()) == wanted:
        log.info("synthetic cohort found at %s", folder)
        return manifest

    def progress(done: int, total: int) -> None:
        ctx.observer.stage_progress("cohort", done, total)

    if folder.exists():
        shutil.rmtree(folder)
    manifest = write_cohort(
        folder, n=synth.n, seed=synth.seed, size=synth.size, fmt=synth.format, parallel=ctx.parallel, progress=progress
    )
    stamp.write_text(json.dumps(wanted, indent=1))
    return manifest


def _call_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments its signature accepts (adapter across stage API versions)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def stage_cohort(ctx: StudyContext) -> None:
    """Load (or generate) the cohort, validate every case, checksum every input file."""
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.validate import validate_cohort
    from rccgrade.provenance import ChecksumCache

    cfg = ctx.config
    with _timed_stage(ctx, "cohort", "load, validate and checksum the cohort") as rec:
        manifest = cfg.cohort.manifest
        if manifest is None or not Path(manifest).is_file():
            if cfg.synth is None:
                raise ConfigError(
                    "the study has no cohort: set cohort.manifest to your manifest CSV"
                    + (f" (not found: {manifest})" if manifest else "")
                    + ", or add a 'synth:' section to generate a synthetic cohort"
                )
            manifest = _synth_cohort(ctx)
            rec.detail = "synthetic cohort"
        manifest = Path(manifest).resolve()
        ctx.outputs["manifest"] = manifest
        cohort = load_cohort(manifest, settings=cfg.cohort)

        def progress(done: int, total: int) -> None:
            ctx.observer.stage_progress("cohort", done, total)

        report = validate_cohort(cohort, settings=cfg.cohort, parallel=ctx.parallel, progress=progress)
        report.write_csv(ctx.run_dir / "validation.csv")
        ctx.validation = report
        usable = set(report.usable)
        seen: set[str] = set()
        keep = []
        for case in cohort.cases:
            if case.patient_id in usable and case.patient_id not in seen:
                keep.append(case.patient_id)
                seen.add(case.patient_id)
        bad = report.cases[report.cases["status"] != "usable"]
        for row in bad.itertuples(index=False):
            codes = str(getattr(row, "codes", ""))
            ctx.failures.append({"stage": "validate", "patient_id": str(row.patient_id), "error": f"unusable: {codes}"})
        rec.n_failures = len(bad)
        if not keep:
            raise RccgradeError(
                f"no usable case in the cohort ({report.summary()}); see validation.csv",
                path=ctx.run_dir / "validation.csv",
            )
        ctx.cohort = cohort.subset(keep)

        cache = ChecksumCache(ctx.run_dir / "cache" / "checksums.json")
        root = manifest.parent
        image_sums: dict[str, dict[str, str]] = {}
        sums: dict[str, str] = {_rel(manifest, root): cache.checksum(manifest)}
        if cfg.cohort.clinical_csv is not None:
            sums[_rel(Path(cfg.cohort.clinical_csv), root)] = cache.checksum(cfg.cohort.clinical_csv)
        for i, case in enumerate(ctx.cohort.cases):
            per: dict[str, str] = {}
            for name, path in [*case.images.items(), ("mask", case.mask)]:
                digest = cache.checksum(path)
                per[name] = digest
                sums[_rel(Path(path), root)] = digest
            image_sums[case.patient_id] = per
            ctx.observer.stage_progress("cohort", i + 1, len(ctx.cohort.cases))
        cache.save()
        ctx.checksums = sums
        geometry = {
            "mask_phase": cfg.cohort.mask_phase,
            "label": cfg.cohort.label,
            "labels": {c.patient_id: c.label for c in ctx.cohort.cases},
        }
        ctx.keys["images"] = stable_hash(image_sums, geometry)
        labels = ctx.cohort.labels()
        ctx.keys["labels"] = stable_hash({str(k): (None if pd.isna(v) else int(v)) for k, v in labels.items()})
        splits = ctx.cohort.splits()
        ctx.keys["manifest_split"] = stable_hash({str(k): v for k, v in splits.items()})
        clin = ctx.cohort.clinical_frame()
        ctx.keys["clinical_data"] = stable_hash(
            clin.astype("object").where(clin.notna(), None).to_dict(orient="index"), dict(ctx.cohort.clinical_types)
        )
        rec.detail = f"{len(keep)} usable of {len(cohort.cases)} cases" + (f"; {rec.detail}" if rec.detail else "")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(Path(path).resolve())


# --------------------------------------------------------------------------- stage: preprocess


def stage_preprocess(ctx: StudyContext) -> None:
    """Register phases, build ROI slice images, QC montages (per-case cached inside the stage too)."""
    from rccgrade.preprocess.pipeline import run_preprocess

    settings = ctx.config.preprocess

    def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
        res = run_preprocess(ctx.cohort, folder, settings, ctx.parallel, progress)
        return {
            "ok_ids": res.ok_ids,
            "flagged_ids": res.flagged_ids,
            "failures": res.failures.to_dict(orient="records"),
            "qc_sheet": None if res.qc_sheet is None else str(Path(res.qc_sheet).relative_to(folder)),
            "detail": f"{len(res.ok_ids)} cases ok, {len(res.flagged_ids)} registration fallbacks",
        }

    folder, manifest = _cached(
        ctx, "preprocess", "register phases, ROI slice images", (settings, ctx.keys["images"]), compute
    )
    ctx.outputs["preprocess_dir"] = folder
    ctx.outputs["preprocess"] = manifest


def _ok_cohort(ctx: StudyContext) -> Any:
    ok = set(ctx.outputs["preprocess"]["ok_ids"])
    return ctx.cohort.subset([p for p in ctx.cohort.patient_ids if p in ok])


# --------------------------------------------------------------------------- stage: radiomics


def _needs_source(ctx: StudyContext, source: str) -> bool:
    arms = ctx.config.models.arms
    combined = any(a in ("combined", "stacked") for a in arms)
    fused = ctx.config.models.combined_sources
    if source == "deep":
        return any(a.startswith("deep") for a in arms) or (combined and any(s.startswith("deep") for s in fused))
    return source in arms or (combined and source in fused)


def stage_radiomics(ctx: StudyContext) -> None:
    """PyRadiomics features of the registered phases, with the ICC stability table."""
    if not _needs_source(ctx, "radiomics"):
        _skip(ctx, "radiomics", "no arm uses radiomics")
        return
    from rccgrade.features.table import load_table
    from rccgrade.radiomics.extract import extract_radiomics

    settings = ctx.config.radiomics
    cohort = _ok_cohort(ctx)

    def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
        res = extract_radiomics(
            cohort,
            folder,
            settings,
            ctx.parallel,
            progress,
            registered_dir=Path(ctx.outputs["preprocess_dir"]) / "registered",
        )
        n_feat = res.features.shape[1]
        return {
            "n_patients": int(res.features.shape[0]),
            "n_features": int(n_feat),
            "failures": res.failures.to_dict(orient="records"),
            "stability": res.stability is not None,
            "detail": f"{res.features.shape[0]} patients × {n_feat} features",
        }

    folder, _ = _cached(
        ctx,
        "radiomics",
        "PyRadiomics features and stability",
        (settings, ctx.keys["preprocess"], sorted(cohort.patient_ids)),
        compute,
    )
    table, _ = load_table(folder / "features.parquet")
    ctx.outputs["radiomics"] = table
    ctx.outputs["radiomics_dir"] = folder
    stab = folder / "stability.csv"
    ctx.outputs["stability"] = pd.read_csv(stab, index_col="feature") if stab.is_file() else None


def _skip(ctx: StudyContext, name: str, why: str) -> None:
    with _timed_stage(ctx, name, why) as rec:
        rec.status = "skipped"
        rec.detail = why


# --------------------------------------------------------------------------- stage: deep


def effective_deep_settings(ctx: StudyContext) -> Any:
    """The deep settings actually used: ImageNet weights when obtainable, else the fallback (with a banner).

    Raises:
        FeatureError: ImageNet weights cannot be obtained and no fallback is allowed (the message says
            where to put the file).
    """
    from rccgrade.deep.weights import resolve_weights_file

    deep = ctx.config.deep
    fallback = getattr(deep, "fallback_weights", None) or ctx.fallback_weights
    if deep.weights.lower() != "imagenet":
        if deep.weights.lower() == "none":
            ctx.warn(CONFIGURED_RANDOM_BANNER)
        return deep
    try:
        resolve_weights_file(deep)
    except FeatureError as exc:
        if not fallback:
            raise
        log.warning("ImageNet weights unavailable: %s", exc.message)
        ctx.warn(RANDOM_WEIGHTS_BANNER)
        update: dict[str, Any] = {"weights": fallback}
        return deep.model_copy(update=update)
    return deep


def stage_deep(ctx: StudyContext) -> None:
    """Pooled ResNet features per ROI setting (frozen, or fine-tuned on the training patients only)."""
    if not _needs_source(ctx, "deep"):
        _skip(ctx, "deep", "no arm uses deep features")
        return
    from rccgrade.deep.features import extract_deep_features, write_metadata
    from rccgrade.features.table import load_table, save_table
    from rccgrade.preprocess.slices import load_slices

    settings = effective_deep_settings(ctx)
    ctx.outputs["deep_settings"] = settings
    pre_dir = Path(ctx.outputs["preprocess_dir"])
    ok = set(ctx.outputs["preprocess"]["ok_ids"])
    finetune = settings.mode == "finetune"
    key_parts: tuple[Any, ...] = (settings, ctx.keys["preprocess"], sorted(ok), ctx.seed)
    if finetune:
        key_parts += (ctx.keys["split"], ctx.keys["labels"])

    def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
        images = {roi: {p: a for p, a in load_slices(pre_dir, roi).items() if p in ok} for roi in settings.rois}
        kwargs: dict[str, Any] = {}
        if finetune:
            split = ctx.outputs["split"]
            kwargs["train_ids"] = split.loc[split["split"] == "train", "patient_id"].tolist()
            labels = ctx.cohort.labels()
            kwargs["labels"] = {str(k): int(v) for k, v in labels.items() if not pd.isna(v)}
        res = extract_deep_features(
            images, settings, seed=ctx.seed, cache_dir=folder / "cache", progress=progress, **kwargs
        )
        save_table(res.table, folder / "features.parquet", settings=settings.model_dump(mode="json"))
        write_metadata(res, folder / "metadata.json")
        if res.probabilities is not None:
            res.probabilities.to_csv(folder / "probabilities.csv")
        return {
            "failures": res.failures,
            "random_init": res.random_init,
            "warnings": list(res.metadata.get("warnings", [])),
            "model_files": {k: str(v) for k, v in res.model_files.items()},
            "detail": f"{res.table.shape[0]} patients × {res.table.shape[1]} features ({settings.mode}, "
            f"weights {settings.weights})",
        }

    folder, manifest = _cached(ctx, "deep", "ResNet features per ROI setting", key_parts, compute)
    table, _ = load_table(folder / "features.parquet")
    ctx.outputs["deep"] = table
    ctx.outputs["deep_dir"] = folder
    ctx.outputs["deep_manifest"] = manifest
    if manifest.get("random_init") and not any("randomly" in w.lower() for w in ctx.warnings):
        ctx.warn(RANDOM_WEIGHTS_BANNER)


# --------------------------------------------------------------------------- stage: clinical and split


def clinical_table(cohort: Any) -> pd.DataFrame:
    """Clinical variables as a FeatureTable (``clin:<name>``; categorical columns keep their categories)."""
    frame = cohort.clinical_frame().copy()
    frame.columns = [f"clin:{c}" for c in frame.columns]
    frame.index = frame.index.astype(str)
    frame.index.name = "patient_id"
    return frame


def stage_clinical(ctx: StudyContext) -> None:
    """The clinical FeatureTable (no fitting: encoding and imputation happen inside the model pipelines)."""
    with _timed_stage(ctx, "clinical", "clinical variables") as rec:
        table = clinical_table(ctx.cohort)
        ctx.outputs["clinical"] = table
        rec.detail = f"{table.shape[1]} variables"
        if table.shape[1] == 0 and _needs_source(ctx, "clinical"):
            ctx.warn("the cohort has no clinical variables: the clinical arm is left out")


def stage_split(ctx: StudyContext) -> None:
    """Train/test split: the manifest's ``split`` column, else stratified 7:3 with the study seed."""
    from rccgrade.models.split import make_split, write_split

    with _timed_stage(ctx, "split", "train/test split") as rec:
        labels = ctx.cohort.labels()
        labels.index = labels.index.astype(str)
        split = make_split(labels, ctx.cohort.splits(), test_size=ctx.config.models.test_size, seed=ctx.seed)
        write_split(split, ctx.run_dir)
        ctx.outputs["split"] = split
        ctx.outputs["split_source"] = "manifest" if ctx.cohort.splits().notna().any() else "stratified random"
        ctx.keys["split"] = stable_hash(split.to_dict(orient="list"))
        n_train = int((split["split"] == "train").sum())
        rec.detail = f"{n_train} train / {len(split) - n_train} test ({ctx.outputs['split_source']})"


# --------------------------------------------------------------------------- stage: models


def feature_tables(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    """Source name → FeatureTable of the sources this run computed."""
    out = {}
    for name in ("clinical", "radiomics", "deep"):
        table = ctx.outputs.get(name)
        if table is not None and table.shape[1] > 0:
            out[name] = table
    return out


def stage_models(ctx: StudyContext) -> None:
    """Fit every arm on training patients only; save bundles and per-patient probabilities."""
    from rccgrade import study_models

    tables = feature_tables(ctx)
    settings = ctx.config.models
    key_parts = (
        settings,
        ctx.keys.get("split"),
        ctx.keys.get("labels"),
        ctx.keys.get("radiomics"),
        ctx.keys.get("deep"),
        ctx.keys.get("clinical_data"),
        ctx.seed,
        study_models.ADAPTER_VERSION,
    )

    def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
        return study_models.fit_and_save(ctx, tables, folder, progress)

    folder, manifest = _cached(ctx, "models", "fit model arms (training patients only)", key_parts, compute)
    ctx.outputs["models_dir"] = folder
    ctx.outputs["models"] = manifest
    # The run folder's own copies (DESIGN §3): predictions.csv and bundles/<arm>/.
    shutil.copyfile(folder / "predictions.csv", ctx.run_dir / "predictions.csv")
    bundles = ctx.run_dir / "bundles"
    if bundles.exists():
        shutil.rmtree(bundles)
    if (folder / "bundles").is_dir():
        shutil.copytree(folder / "bundles", bundles)
    ctx.outputs["predictions"] = pd.read_csv(ctx.run_dir / "predictions.csv", dtype={"patient_id": str})


# --------------------------------------------------------------------------- stages: evaluate and report


def stage_evaluate(ctx: StudyContext) -> None:
    """Every statistic for every arm and cohort → ``metrics.json`` and ``figures/``."""
    from rccgrade import study_models

    with _timed_stage(ctx, "evaluate", "statistics and figures") as rec:
        metrics = study_models.evaluate_run(ctx)
        ctx.outputs["metrics"] = metrics
        rec.detail = f"{len(metrics.get('arms', {}))} arms"


def stage_report(ctx: StudyContext) -> None:
    """The self-contained HTML report."""
    if not ctx.config.report.enabled:
        _skip(ctx, "report", "report disabled")
        return
    from rccgrade import study_report

    with _timed_stage(ctx, "report", "HTML report") as rec:
        path = study_report.write_study_report(ctx)
        ctx.outputs["report"] = path
        rec.detail = str(path.name)


StageFn = Callable[[StudyContext], None]

STAGE_FUNCTIONS: dict[str, StageFn] = {
    "cohort": stage_cohort,
    "preprocess": stage_preprocess,
    "split": stage_split,
    "radiomics": stage_radiomics,
    "deep": stage_deep,
    "clinical": stage_clinical,
    "models": stage_models,
    "evaluate": stage_evaluate,
    "report": stage_report,
}

RUN_ORDER: tuple[str, ...] = (
    "cohort",
    "preprocess",
    "split",
    "radiomics",
    "deep",
    "clinical",
    "models",
    "evaluate",
    "report",
)
"""Execution order (the split comes before extraction so fine-tuning can use it; frozen extraction ignores it)."""


# --------------------------------------------------------------------------- driver


def prepare_run_dir(config: StudyConfig) -> Path:
    """Create the run folder and write the resolved ``config.yaml``."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    return run_dir


def _write_failures(ctx: StudyContext) -> Path:
    path = ctx.run_dir / "failures.csv"
    pd.DataFrame(ctx.failures, columns=["stage", "patient_id", "error"]).to_csv(path, index=False)
    return path


def run_study(
    config: StudyConfig,
    *,
    observer: StudyObserver | None = None,
    scheduler: str | None = None,
    fallback_weights: str | None = None,
    stages: Mapping[str, StageFn] | None = None,
) -> StudyResult:
    """Run the whole study (cached stages are reused) and return what it produced.

    Args:
        config: The validated study configuration (``load_config``).
        observer: Receives progress events (the CLI's rich display); default: none.
        scheduler: Dask scheduler address for the per-case stages (overrides ``parallel.scheduler``).
        fallback_weights: Deep weights to use when ImageNet weights cannot be obtained (e.g. ``none`` for
            the offline demo); the report then carries a warning banner. None: such a run fails with the
            deep stage's message saying where to put the weights file.
        stages: Replacement stage functions by name (tests, custom pipelines); default :data:`STAGE_FUNCTIONS`.

    Returns:
        A :class:`StudyResult`.

    Raises:
        RccgradeError: a stage cannot proceed at all (no usable case, invalid settings, …); per-case
            problems are collected in ``failures.csv`` instead.
    """
    from rccgrade.provenance import build_provenance, write_provenance

    parallel = config.parallel
    if scheduler:
        parallel = parallel.model_copy(update={"scheduler": scheduler, "backend": "dask"})
    run_dir = prepare_run_dir(config)
    handler = logging.FileHandler(run_dir / "study.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("rccgrade")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    ctx = StudyContext(
        config=config,
        run_dir=run_dir,
        parallel=parallel,
        observer=observer or StudyObserver(),
        fallback_weights=fallback_weights,
    )
    functions = dict(STAGE_FUNCTIONS)
    functions.update(stages or {})
    t0 = time.perf_counter()
    try:
        log.info("study %s → %s", config.name, run_dir)
        for name in RUN_ORDER:
            if name == "report":
                # provenance first, so the report shows it
                _write_provenance(ctx, build_provenance, write_provenance, time.perf_counter() - t0)
            functions[name](ctx)
        _write_provenance(ctx, build_provenance, write_provenance, time.perf_counter() - t0)
    finally:  # also after a failure: what ran, what was cached and which cases failed
        _write_failures(ctx)
        _write_stage_log(ctx)
        root.removeHandler(handler)
        handler.close()
    return StudyResult(
        run_dir=run_dir,
        records=list(ctx.records),
        metrics=ctx.outputs.get("metrics", {}),
        report=ctx.outputs.get("report"),
        warnings=list(ctx.warnings),
    )


def _write_stage_log(ctx: StudyContext) -> Path:
    path = ctx.run_dir / "stages.json"
    path.write_text(json.dumps([asdict(r) for r in ctx.records], indent=1))
    return path


def _write_provenance(
    ctx: StudyContext, build: Callable[..., dict[str, Any]], write: Callable[..., Path], total: float
) -> None:
    deep = ctx.outputs.get("deep_settings")
    extra: dict[str, Any] = {"run_dir": str(ctx.run_dir), "total_seconds": round(total, 3)}
    if deep is not None:
        extra["deep_weights_effective"] = deep.weights
    meta = ctx.outputs.get("deep_dir")
    if meta is not None and (Path(meta) / "metadata.json").is_file():
        extra["deep_metadata"] = {
            k: v
            for k, v in json.loads((Path(meta) / "metadata.json").read_text()).items()
            if k in ("weights", "random_init", "warnings", "device", "mode", "arch")
        }
    prov = build(
        ctx.config,
        input_checksums=ctx.checksums,
        timings={r.name: r.seconds for r in ctx.records},
        stages=[asdict(r) for r in ctx.records],
        warnings=ctx.warnings,
        extra=extra,
    )
    write(prov, ctx.run_dir / "provenance.json")


def metrics_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two ``metrics.json`` contents hold the same numbers (NaN equals NaN)."""

    def norm(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, float) and np.isnan(x):
            return "nan"
        return x

    return norm(a) == norm(b)
