"""``rccgrade study``, ``rccgrade demo`` and ``rccgrade evaluate``: the whole study from the command line.

The top of the dependency chain: cli → runner → stages → the domain packages.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rccgrade.cli_progress import cluster_config_option, scheduler_option
from rccgrade.errors import ConfigError

console = Console(stderr=True)
out_console = Console()


def _log_console() -> Console:
    """The console of the root logger's rich handler (log lines then print above the live progress display)."""
    for handler in logging.getLogger().handlers:
        found = getattr(handler, "console", None)
        if isinstance(found, Console):
            return found
    return console


class RichObserver:
    """Progress display: one line per stage with a bar for per-case work; ``cached`` stages are marked."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def stage_started(self, name: str, description: str) -> None:
        """Add the stage's line."""
        self.tasks[name] = self.progress.add_task(f"[bold]{name:<10}[/] {description}", total=None)

    def stage_progress(self, name: str, done: int, total: int) -> None:
        """Advance the stage's bar."""
        task = self.tasks.get(name)
        if task is not None:
            self.progress.update(task, completed=done, total=total)

    def stage_finished(self, record: Any) -> None:
        """Mark the stage ran / cached / skipped with its time."""
        task = self.tasks.get(record.name)
        if task is None:
            return
        style = {"cached": "cyan", "skipped": "dim", "ran": "green"}.get(record.status, "red")
        status = f"{record.status} (forced)" if record.forced else record.status
        detail = f" — {record.detail}" if record.detail else ""
        fails = f" [red]{record.n_failures} failed[/]" if record.n_failures else ""
        self.progress.update(
            task,
            description=f"[bold]{record.name:<10}[/] [{style}]{status}[/] {record.seconds:6.1f} s{detail}{fails}",
            total=1,
            completed=1,
        )


def _summary_table(result: Any) -> Table:
    from rccgrade.features.naming import arm_label

    table = Table(title="Discrimination (AUC, 95% CI)", title_justify="left")
    table.add_column("Arm")
    cohorts = sorted(
        {r["cohort"] for r in result.summary_rows()},
        key=lambda c: ("train", "test").index(c) if c in ("train", "test") else 9,
    )
    for c in cohorts:
        table.add_column("Training (OOF)" if c == "train" else c.capitalize(), justify="right")
    by_arm: dict[str, dict[str, str]] = {}
    for r in result.summary_rows():
        lo, hi = r["lo"], r["hi"]
        ci = f" [{lo:.3f}–{hi:.3f}]" if lo is not None and hi is not None else ""
        by_arm.setdefault(r["arm"], {})[r["cohort"]] = ("—" if r["auc"] is None else f"{r['auc']:.3f}") + ci
    for arm, vals in by_arm.items():
        table.add_row(arm_label(arm), *[vals.get(c, "—") for c in cohorts])
    return table


def _run(cfg: Any, scheduler: str | None, fallback_weights: str | None, force: list[str] | None = None) -> Any:
    from rccgrade.study.runner import forced_stages, run_study

    global console
    console = _log_console()
    forced = forced_stages(force or [])
    if forced:
        console.print(f"forcing {', '.join(force or [])}: recomputing {', '.join(forced)}", highlight=False)
    t0 = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        result = run_study(
            cfg,
            observer=RichObserver(progress),
            scheduler=scheduler,
            fallback_weights=fallback_weights,
            force=force or (),
        )
    wall = time.perf_counter() - t0
    if result.summary_rows():
        out_console.print(_summary_table(result))
    for w in result.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(w)}")
    cached = [r.name for r in result.records if r.status == "cached"]
    console.print(
        f"study finished in {wall:.1f} s"
        + (f" (reused from cache: {', '.join(cached)})" if cached else "")
        + (f" (recomputed by --force: {', '.join(result.forced)})" if result.forced else ""),
        highlight=False,
    )
    return result


def load_study_config(config: Path, name: str | None = None, runs_dir: Path | None = None) -> Any:
    """Load a study YAML for the CLI (relative paths resolve against its folder) and apply ``--name``/``--runs-dir``."""
    from rccgrade.config import load_config

    cfg = load_config(config)
    if name:
        cfg.name = name
    if runs_dir is not None:
        cfg.runs_dir = Path(runs_dir).resolve()
    return cfg


def with_column_map(cfg: Any, items: list[str], missing_variables: str = "refuse") -> Any:
    """``study --map`` entries merged into ``cohort.column_map``; ``--missing-variables`` checked.

    Raises:
        ConfigError: a ``--map`` entry contradicting the configuration's map, an unknown policy, or ``impute``:
            a study fits its imputer on its own training patients, so a variable absent from the whole cohort
            has nothing to be imputed from (``impute`` is for applying saved models: predict, evaluate).
    """
    from rccgrade.cohort.column_map import MISSING_POLICIES, parse_column_map

    if missing_variables not in MISSING_POLICIES:
        raise ConfigError(f"--missing-variables {missing_variables!r}: choose one of {list(MISSING_POLICIES)}")
    if missing_variables == "impute":
        raise ConfigError(
            "--missing-variables impute applies saved models to a new cohort (predict, evaluate): a study fits its "
            "imputer on its own training patients, so a variable absent from the whole cohort has nothing to be "
            "imputed from; map its column with --map MODEL_NAME=COLUMN or leave it out of cohort.clinical_columns"
        )
    mapping = parse_column_map(items)
    current = dict(cfg.cohort.column_map)
    clash = sorted(k for k, v in mapping.items() if k in current and current[k] != v)
    if clash:
        raise ConfigError(
            f"--map {clash} contradicts cohort.column_map in the configuration "
            f"({ {k: current[k] for k in clash} }); keep one of them"
        )
    if mapping:
        cfg.cohort = cfg.cohort.model_copy(update={"column_map": {**current, **mapping}})
    return cfg


def study_command(
    config: Path = typer.Argument(..., help="Study configuration YAML (e.g. configs/paper.yaml)."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786) for the per-case stages."
    ),
    name: str | None = typer.Option(None, "--name", help="Run name (default: the config's 'name')."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Parent folder of run folders."),
    fallback_weights: str | None = typer.Option(
        None,
        "--fallback-weights",
        help="Deep weights to use when ImageNet weights cannot be obtained (e.g. 'none'); the report then "
        "carries a warning banner. Default: fail with instructions.",
    ),
    force: list[str] | None = typer.Option(
        None,
        "--force",
        help="Recompute this stage and every stage after it even when cached (repeatable; 'all': every stage).",
    ),
    column_map: list[str] = typer.Option(
        [],
        "--map",
        help="MODEL_NAME=COLUMN: the manifest column holding a clinical variable (repeatable), added to "
        "cohort.column_map, e.g. --map haemoglobin=hemoglobin.",
    ),
    missing_variables: str = typer.Option(
        "refuse",
        "--missing-variables",
        help="A requested clinical variable absent from the whole cohort: refuse (the only choice when training; "
        "impute is for predict and evaluate).",
    ),
) -> None:
    """Run the whole study (cached stages are reused) and print where the report is."""
    cfg = with_column_map(load_study_config(config, name, runs_dir), column_map, missing_variables)
    result = _run(cfg, scheduler, fallback_weights, force)
    out_console.print(f"run folder: {result.run_dir}")
    if result.report is not None:
        out_console.print(f"report: {result.report}")


def _default_config() -> Path:
    here = Path.cwd() / "configs" / "default.yaml"
    if here.is_file():
        return here
    source = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    if source.is_file():
        return source
    raise ConfigError(
        "configs/default.yaml not found (looked in the current folder and beside the source tree); "
        "run the demo from the repository root or pass --config"
    )


def demo_command(
    config: Path | None = typer.Option(None, "--config", help="Study configuration (default: configs/default.yaml)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Parent folder of the demo's run folder."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address for per-case stages."),
) -> None:
    """The demo: a synthetic cohort (generated under runs/demo if missing), the whole study, the report path."""
    path = config or _default_config()
    cfg = load_study_config(path, runs_dir=runs_dir)
    if cfg.cohort.manifest is None and cfg.synth is None:
        raise ConfigError("the demo configuration needs a 'synth:' section", path=path)
    console.print(f"demo: {path} → {Path(cfg.runs_dir) / cfg.name}")
    result = _run(cfg, scheduler, fallback_weights="none")
    if result.report is not None:
        out_console.print(f"report: {result.report}")


def evaluate_command(
    bundle: Path = typer.Argument(
        ..., help="Model bundle folder (runs/<name>/bundles/<arm>) or a run's bundles/ folder."
    ),
    manifest: Path = typer.Argument(..., help="Manifest CSV of the external cohort (labels required)."),
    out: Path = typer.Option(Path("external"), "--out", help="Output folder (predictions, metrics, report)."),
    name: str = typer.Option("External cohort", "--name", help="Name of the cohort in the report."),
    scheduler: str | None = scheduler_option(),
    cluster_config: Path | None = cluster_config_option(),
    allow_failures: bool = typer.Option(False, "--allow-failures", help="Exit 0 even when some patients failed."),
    column_map: list[str] = typer.Option(
        [],
        "--map",
        help="MODEL_NAME=COLUMN: this cohort's column holding a clinical variable the models know by another name "
        "(repeatable), e.g. --map hemoglobin=haemoglobin.",
    ),
    missing_variables: str = typer.Option(
        "refuse",
        "--missing-variables",
        help="A clinical variable a model needs is absent from the whole cohort: refuse (default) or impute "
        "(the bundle's training median/mode for every patient, warned in the report's banner).",
    ),
) -> None:
    """External validation of saved model(s) on another cohort, which may lack a phase.

    Every manifest row is in predictions.csv with each model's status (ok / failed / out_of_distribution) and
    reason; the exit code is 1 when any patient has no prediction from some model, unless --allow-failures.
    Patients far outside a model's training distribution keep their probability in the statistics (leaving them
    out would flatter the model) and are flagged out_of_distribution.
    """
    from rccgrade.cli_progress import cluster_sections
    from rccgrade.cohort.column_map import parse_column_map
    from rccgrade.parallel import ParallelSettings
    from rccgrade.study.external import evaluate_external

    cluster, parallel = cluster_sections(ParallelSettings(), cluster_config)
    result = evaluate_external(
        bundle,
        manifest,
        out,
        cohort_name=name,
        scheduler=scheduler,
        cluster=cluster,
        parallel=parallel,
        column_map=parse_column_map(column_map),
        missing_variables=missing_variables,
    )
    table = Table(title=f"External validation — {name}", title_justify="left")
    for col in ("Arm", "n", "AUC [95% CI]", "Sensitivity", "Specificity"):
        table.add_column(col, justify="left" if col == "Arm" else "right")

    def num(v: float | None, d: int) -> str:
        return "—" if v is None else f"{v:.{d}f}"

    for r in result.rows:
        table.add_row(
            r["label"],
            str(r["n"]),
            f"{num(r['auc'], 3)} [{num(r['auc_lo'], 3)}–{num(r['auc_hi'], 3)}]",
            num(r["sensitivity"], 2),
            num(r["specificity"], 2),
        )
    out_console.print(table)
    for w in result.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(w)}")
    out_console.print(f"report: {result.report}")
    counts = result.metrics.get("status_counts", {})
    n_bad = max((c.get("failed", 0) for c in counts.values()), default=0)
    if n_bad:
        console.print(
            f"[bold yellow]{n_bad} of {result.metrics.get('n_manifest')} patient(s) have no prediction from some "
            f"model[/]: see the status and reason columns of {escape(str(result.out_dir / 'predictions.csv'))}",
            highlight=False,
        )
        if not allow_failures:
            raise typer.Exit(code=1)
