"""The typed state of one study run: settings, the run folder, the stages' outputs and what happened.

A stage reads the outputs of earlier stages from :attr:`StudyContext.results` (one typed slot per stage,
:class:`StageResults`) and returns its own output object; the runner stores it. Nothing else crosses a
stage boundary: warnings and per-case failures are collected here for the report and ``failures.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from rccgrade.config import StudyConfig
from rccgrade.parallel import ParallelSettings

if TYPE_CHECKING:
    from rccgrade.cluster import CaseCluster
    from rccgrade.study.outputs import (
        ClinicalOutput,
        CohortOutput,
        DeepOutput,
        EvaluateOutput,
        ModelsOutput,
        PreprocessOutput,
        RadiomicsOutput,
        ReportOutput,
        SplitOutput,
    )

log = logging.getLogger("rccgrade.study")

T = TypeVar("T")


@dataclass
class StageRecord:
    """What happened to one stage in this run.

    Attributes:
        name: Stage name.
        status: ``ran`` (computed now), ``cached`` (reused from its cache folder), ``skipped`` (not needed by
            this configuration), ``failed`` (raised an error) or ``interrupted`` (stopped by the user).
        key: Cache key (None for uncached stages).
        seconds: Wall time in this run.
        n_failures: Cases this stage could not process.
        detail: One line for the log and the report.
        forced: The stage was recomputed because ``--force`` named it or an earlier stage.
    """

    name: str
    status: str
    key: str | None = None
    seconds: float = 0.0
    n_failures: int = 0
    detail: str = ""
    forced: bool = False


class StudyObserver:
    """Receives progress events; the CLI subclasses it with a rich display. The default does nothing."""

    def stage_started(self, name: str, description: str) -> None:
        """A stage begins (``description`` is a human-readable line)."""

    def stage_progress(self, name: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of the running stage are finished."""

    def stage_finished(self, record: StageRecord) -> None:
        """A stage ended (ran, cached, skipped, failed or interrupted)."""


@dataclass
class StageResults:
    """One typed slot per stage; ``None`` until the stage has run (or when it was skipped)."""

    cohort: CohortOutput | None = None
    preprocess: PreprocessOutput | None = None
    split: SplitOutput | None = None
    radiomics: RadiomicsOutput | None = None
    deep: DeepOutput | None = None
    clinical: ClinicalOutput | None = None
    models: ModelsOutput | None = None
    evaluate: EvaluateOutput | None = None
    report: ReportOutput | None = None

    @classmethod
    def slots(cls) -> tuple[str, ...]:
        """Names of the slots (the stage names a stage may require or provide)."""
        return tuple(f.name for f in fields(cls))


@dataclass
class StudyContext:
    """State of one run, passed to every stage.

    Attributes:
        config: The validated configuration.
        run_dir: The run folder.
        parallel: The ``parallel:`` settings of work that stays in this process (the models stage's workers).
        cases: Where per-case work runs (:class:`rccgrade.cluster.CaseCluster`; None: on ``parallel``); ask
            :meth:`case_parallel` only when per-case work is about to run, so a cached run starts no cluster.
        observer: Progress events.
        fallback_weights: Deep weights to use when ImageNet weights cannot be obtained (None: fail).
        force: Stages to recompute even when their cache folder exists.
        results: The stages' typed outputs.
        warnings: Warnings for the log and the report's banner.
        failures: Per-case failures (``stage``, ``patient_id``, ``error``) for ``failures.csv``.
        records: One record per stage run so far.
    """

    config: StudyConfig
    run_dir: Path
    parallel: ParallelSettings
    cases: CaseCluster | None = None
    observer: StudyObserver = field(default_factory=StudyObserver)
    fallback_weights: str | None = None
    force: frozenset[str] = frozenset()
    results: StageResults = field(default_factory=StageResults)
    warnings: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    records: list[StageRecord] = field(default_factory=list)

    @property
    def seed(self) -> int:
        """The study's master seed."""
        return int(self.config.seed)

    def case_parallel(self) -> ParallelSettings:
        """Executor settings for per-case work about to run: the configured cluster, started on first use.

        Call it only when there is per-case work (a stage's cache missed): a configured SLURM/PBS/SGE/Kubernetes
        cluster submits its jobs on the first call (:meth:`rccgrade.cluster.CaseCluster.parallel`).
        """
        return self.cases.parallel() if self.cases is not None else self.parallel

    def add_failures(self, stage: str, rows: Iterable[Mapping[str, Any]] | pd.DataFrame | None) -> int:
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

    def progress(self, stage: str) -> Any:
        """A ``progress(done, total)`` callback that forwards to the observer for ``stage``."""

        def callback(done: int, total: int) -> None:
            self.observer.stage_progress(stage, done, total)

        return callback


def need(value: T | None, stage: str) -> T:
    """The output of ``stage``; a programming error (wrong run order) when it has not run.

    Raises:
        RuntimeError: ``stage`` has not produced its output (the runner's requires/provides check prevents
            this for the shipped stages).
    """
    if value is None:
        raise RuntimeError(f"the output of stage {stage!r} is needed but that stage has not run")
    return value
