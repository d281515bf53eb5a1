"""The study as a pipeline of typed stages: the run order (defined once), the requires/provides check, the
run folder (safe name, lock, ``config.yaml``, ``study.log``, ``stages.json``, ``failures.csv``, provenance).

cohort → preprocess → split → radiomics → deep → clinical → models → evaluate → report

The split comes before extraction so fine-tuning can use it (frozen extraction ignores it). Each stage is an
object with ``name``, ``requires``, ``version`` and ``run(ctx, record) → output``
(:class:`rccgrade.study.stage.Stage`); the runner stores the output in ``ctx.results.<name>``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rccgrade.cluster import open_cluster
from rccgrade.config import StudyConfig, dump_config
from rccgrade.errors import ConfigError, RccgradeError
from rccgrade.safepath import child_path
from rccgrade.study.context import StageRecord, StageResults, StudyContext, StudyObserver, log
from rccgrade.study.lock import DEFAULT_WAIT_S, run_lock
from rccgrade.study.preflight import check_config, check_run_name
from rccgrade.study.stage import Stage
from rccgrade.study.stages import (
    ClinicalStage,
    CohortStage,
    DeepStage,
    EvaluateStage,
    ModelsStage,
    PreprocessStage,
    RadiomicsStage,
    ReportStage,
    SplitStage,
)

STAGES: tuple[Stage, ...] = (
    CohortStage(),
    PreprocessStage(),
    SplitStage(),
    RadiomicsStage(),
    DeepStage(),
    ClinicalStage(),
    ModelsStage(),
    EvaluateStage(),
    ReportStage(),
)
"""The study's stages in the order they run."""

RUN_ORDER: tuple[str, ...] = tuple(s.name for s in STAGES)
"""Stage names in execution order."""


@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
        run_dir: The run folder.
        records: One record per stage.
        metrics: Contents of ``metrics.json``.
        report: Path of ``report.html`` (None when the report is disabled).
        warnings: Warnings shown in the report's banner.
        forced: Stages recomputed because of ``force``.
    """

    run_dir: Path
    records: list[StageRecord]
    metrics: dict[str, Any]
    report: Path | None
    warnings: list[str]
    forced: tuple[str, ...] = ()

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


def check_order(stages: Sequence[Stage]) -> None:
    """Every stage's ``requires`` is provided by a stage before it, and each name has a result slot.

    Raises:
        RuntimeError: a stage list that cannot run (a programming error, not a user's).
    """
    slots = set(StageResults.slots())
    seen: set[str] = set()
    for stage in stages:
        if stage.name not in slots:
            raise RuntimeError(f"stage {stage.name!r} has no slot in StageResults")
        if stage.name in seen:
            raise RuntimeError(f"stage {stage.name!r} appears twice in the run order")
        missing = [r for r in stage.requires if r not in seen]
        if missing:
            raise RuntimeError(f"stage {stage.name!r} requires {missing}, which do not run before it")
        seen.add(stage.name)


def forced_stages(force: Iterable[str], order: Sequence[str] = RUN_ORDER) -> tuple[str, ...]:
    """The stages ``--force`` recomputes: each named stage and every stage after it (``all``: every stage).

    Raises:
        ConfigError: an unknown stage name.
    """
    names = list(force)
    if not names:
        return ()
    if "all" in names:
        return tuple(order)
    unknown = [n for n in names if n not in order]
    if unknown:
        raise ConfigError(f"--force: unknown stage(s) {unknown}; choose from {', '.join(order)} or 'all'")
    first = min(order.index(n) for n in names)
    return tuple(order[first:])


def prepare_run_dir(config: StudyConfig) -> Path:
    """Create ``<runs_dir>/<name>`` (the name is one safe folder name inside ``runs_dir``).

    Raises:
        ConfigError: the run name is not a safe folder name, or ``runs_dir`` cannot be created or written.
    """
    check_run_name(config.name)
    runs_dir = Path(config.runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        run_dir = child_path(runs_dir, config.name)
        run_dir.mkdir(exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot create or write the run folder ({exc.strerror or exc}); set runs_dir (or --runs-dir) to a "
            "folder you can write",
            path=runs_dir,
        ) from None
    return run_dir


def run_stage(ctx: StudyContext, stage: Stage) -> Any:
    """Run one stage with its record (timed, logged, failures recorded) and store its output in ``ctx.results``."""
    with _stage_record(ctx, stage) as rec:
        if stage.name in ctx.force:
            rec.forced = True
        output = stage.run(ctx, rec)
        setattr(ctx.results, stage.name, output)
    return output


@contextmanager
def _stage_record(ctx: StudyContext, stage: Stage) -> Iterator[StageRecord]:
    """Time a stage and record it; a failure or Ctrl-C is recorded as ``failed`` / ``interrupted``."""
    rec = StageRecord(name=stage.name, status="ran")
    ctx.observer.stage_started(stage.name, stage.description)
    t0 = time.perf_counter()
    try:
        yield rec
    except KeyboardInterrupt:
        rec.status = "interrupted"
        raise
    except BaseException as exc:
        rec.status = "failed"
        rec.detail = rec.detail or f"{type(exc).__name__}: {exc}"[:300]
        raise
    finally:
        rec.seconds = time.perf_counter() - t0
        ctx.records.append(rec)
        ctx.observer.stage_finished(rec)
        log.info(
            "stage %-10s %-7s %6.1f s%s%s%s",
            stage.name,
            rec.status,
            rec.seconds,
            "  (forced)" if rec.forced else "",
            f"  key {rec.key}" if rec.key else "",
            f"  ({rec.detail})" if rec.detail else "",
        )


def run_study(
    config: StudyConfig,
    *,
    observer: StudyObserver | None = None,
    scheduler: str | None = None,
    fallback_weights: str | None = None,
    stages: Mapping[str, Stage] | None = None,
    force: Iterable[str] = (),
    lock_wait_s: float = DEFAULT_WAIT_S,
) -> StudyResult:
    """Run the whole study (cached stages are reused) and return what it produced.

    Args:
        config: The validated study configuration (``load_config``).
        observer: Receives progress events (the CLI's rich display); default: none.
        scheduler: Dask scheduler address for the per-case stages (overrides ``parallel.scheduler`` and the
            ``cluster:`` section). A ``cluster:`` of kind slurm/pbs/sge/kubernetes is started when the first stage
            has per-case work to run (never, when every per-case stage is cached) and closed (its jobs
            cancelled) when the study ends (:class:`rccgrade.cluster.CaseCluster`).
        fallback_weights: Deep weights to use when ImageNet weights cannot be obtained (e.g. ``none`` for
            the offline demo); the report then carries a warning banner. None: such a run fails with the
            deep stage's message saying where to put the weights file.
        stages: Replacement stages by name (tests, custom pipelines); default :data:`STAGES`.
        force: Stage names (or ``all``) to recompute with every stage after them, even when cached.
        lock_wait_s: Seconds to wait for another study holding the run folder before refusing.

    Returns:
        A :class:`StudyResult`.

    Raises:
        ConfigError: the configuration cannot run (checked in full before any work).
        RunLockedError: another study holds the run folder.
        RccgradeError: a stage cannot proceed at all (no usable case, …); per-case problems are collected
            in ``failures.csv`` instead.
    """
    from rccgrade.provenance import build_provenance, write_provenance

    pipeline = [dict(stages or {}).get(s.name, s) for s in STAGES]
    check_order(pipeline)
    forced = forced_stages(force, [s.name for s in pipeline])
    check_config(config)
    run_dir = prepare_run_dir(config)
    with run_lock(run_dir, wait_s=lock_wait_s), open_cluster(config.cluster, config.parallel, scheduler) as cases:
        dump_config(config, run_dir / "config.yaml")
        handler = logging.FileHandler(run_dir / "study.log", mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("rccgrade")
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        ctx = StudyContext(
            config=config,
            run_dir=run_dir,
            parallel=config.parallel,
            cases=cases,
            observer=observer or StudyObserver(),
            fallback_weights=fallback_weights,
            force=frozenset(forced),
        )
        t0 = time.perf_counter()
        try:
            log.info("study %s → %s", config.name, run_dir)
            if forced:
                log.info("forced: recomputing %s", ", ".join(forced))
            for stage in pipeline:
                if stage.name == "report":  # provenance first, so the report shows it
                    _write_provenance(ctx, build_provenance, write_provenance, time.perf_counter() - t0)
                run_stage(ctx, stage)
                if stage.name == "deep":
                    _note_effective_weights(ctx)
            _write_provenance(ctx, build_provenance, write_provenance, time.perf_counter() - t0)
        finally:  # also after a failure: what ran, what was cached and which cases failed
            _write_failures(ctx)
            _write_stage_log(ctx)
            root.removeHandler(handler)
            handler.close()
    evaluation = ctx.results.evaluate
    report = ctx.results.report
    return StudyResult(
        run_dir=run_dir,
        records=list(ctx.records),
        metrics=dict(evaluation.metrics) if evaluation is not None else {},
        report=report.path if report is not None else None,
        warnings=list(ctx.warnings),
        forced=forced,
    )


def read_stage_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of the last run (``stages.json``): name, status, key, seconds, failures, detail, forced."""
    path = Path(run_dir) / "stages.json"
    if not path.is_file():
        raise RccgradeError("no stages.json in the run folder; run the study first", path=path)
    return json.loads(path.read_text())


def _write_failures(ctx: StudyContext) -> Path:
    import pandas as pd

    path = ctx.run_dir / "failures.csv"
    pd.DataFrame(ctx.failures, columns=["stage", "patient_id", "error"]).to_csv(path, index=False)
    return path


def _write_stage_log(ctx: StudyContext) -> Path:
    path = ctx.run_dir / "stages.json"
    path.write_text(json.dumps([asdict(r) for r in ctx.records], indent=1))
    return path


def _note_effective_weights(ctx: StudyContext) -> None:
    """Rewrite ``config.yaml`` with a heading comment when the deep features used other weights than configured
    (an offline ImageNet fallback), so the file does not claim weights the run lacked."""
    deep = ctx.results.deep
    if deep is None or deep.settings.weights == ctx.config.deep.weights:
        return
    note = (
        f"deep.weights below is the setting; this run's deep features used weights: {deep.settings.weights} "
        f"(the configured {ctx.config.deep.weights!r} could not be obtained; see provenance.json, "
        "deep_weights_effective). Rerunning this file where those weights exist gives other deep features."
    )
    dump_config(ctx.config, ctx.run_dir / "config.yaml", notes=[note])


def _write_provenance(ctx: StudyContext, build: Any, write: Any, total: float) -> None:
    deep = ctx.results.deep
    extra: dict[str, Any] = {"run_dir": str(ctx.run_dir), "total_seconds": round(total, 3)}
    if deep is not None:
        extra["deep_weights_effective"] = deep.settings.weights
        meta = deep.folder / "metadata.json"
        if meta.is_file():
            extra["deep_metadata"] = {
                k: v
                for k, v in json.loads(meta.read_text()).items()
                if k in ("weights", "random_init", "warnings", "device", "mode", "arch")
            }
    prov = build(
        ctx.config,
        input_checksums=dict(ctx.results.cohort.checksums) if ctx.results.cohort is not None else {},
        timings={r.name: r.seconds for r in ctx.records},
        stages=[asdict(r) for r in ctx.records],
        warnings=ctx.warnings,
        extra=extra,
    )
    write(prov, ctx.run_dir / "provenance.json")
