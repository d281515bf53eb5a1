"""Shared pieces of the stage commands: the rich progress bar of per-case work and where that work runs.

Every per-case stage reports ``progress(done, total)``; :func:`case_progress` turns that into one rich bar,
so the stage commands show the same bar and none re-implements it. Every command that runs per-case work
(validate, preprocess, radiomics, predict, evaluate) takes ``--scheduler ADDRESS`` and a configuration's
``cluster:`` section and opens them with :func:`command_cluster`, the code path ``rccgrade study`` uses
(:class:`rccgrade.cluster.CaseCluster`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rccgrade.cluster import CaseCluster, ClusterSettings, open_cluster
from rccgrade.parallel import ParallelSettings


@contextmanager
def case_progress(
    label: str, console: Console, total: int | None = None, *, transient: bool = True
) -> Iterator[Callable[[int, int], None]]:
    """A progress bar for per-case work; yields the ``progress(done, total)`` callback stages accept.

    Args:
        label: Text before the bar (rich markup allowed).
        console: Console to draw on.
        total: Number of items when known in advance (the callback updates it anyway).
        transient: Remove the bar when done (keep it for long, standalone commands).
    """
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total_now: int) -> None:
            bar.update(task, completed=done, total=total_now)

        yield update


def local_parallel(workers: int) -> ParallelSettings:
    """Executor settings for ``--workers N``: serial for 1, local processes otherwise (0 = all cores)."""
    return ParallelSettings(backend="serial" if workers == 1 else "processes", workers=workers)


SCHEDULER_HELP = (
    "Address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786) for the per-case work; its workers need the "
    "same rccgrade and the same file paths (shared file system). Wins over a cluster: section."
)
CLUSTER_CONFIG_HELP = (
    "YAML with a cluster: section (and optionally parallel:), e.g. the study's configuration: the per-case work "
    "runs on that cluster (SLURM/PBS/SGE/Kubernetes jobs are submitted only when there is work), docs/cluster.md."
)


def scheduler_option() -> Any:
    """The ``--scheduler ADDRESS`` option of a per-case command."""
    return typer.Option(None, "--scheduler", help=SCHEDULER_HELP)


def cluster_config_option() -> Any:
    """The ``--cluster-config YAML`` option of a per-case command."""
    return typer.Option(None, "--cluster-config", help=CLUSTER_CONFIG_HELP)


def cluster_sections(
    local: ParallelSettings, config: Path | None, cluster: ClusterSettings | None = None
) -> tuple[ClusterSettings, ParallelSettings]:
    """The ``cluster:`` section and executor settings a command uses: from ``config`` when given.

    Args:
        local: The command's own executor (``--workers``), used for ``kind: local``.
        config: A YAML file whose ``cluster:`` section (and the ``threads_per_worker`` / ``worker_failures`` of
            its ``parallel:`` section, when given) apply; its other sections are validated but unused here.
        cluster: An already loaded ``cluster:`` section (used when ``config`` is None; default ``local``).

    Raises:
        ConfigError: the YAML is missing or invalid (the message names the file and the field).
    """
    if config is None:
        return cluster or ClusterSettings(), local
    from rccgrade.config import load_config

    cfg = load_config(config)
    policy = {k: getattr(cfg.parallel, k) for k in ("threads_per_worker", "worker_failures")}
    return cfg.cluster, local.model_copy(update={k: v for k, v in policy.items() if k in cfg.parallel.model_fields_set})


@contextmanager
def command_cluster(
    local: ParallelSettings,
    scheduler: str | None = None,
    config: Path | None = None,
    *,
    cluster: ClusterSettings | None = None,
) -> Iterator[CaseCluster]:
    """Where a command's per-case work runs: ``--scheduler``, else the ``cluster:`` section, else ``local``.

    Args:
        local: The command's own executor (``--workers``), used for ``kind: local``.
        scheduler: ``--scheduler ADDRESS``; wins over the configuration.
        config: ``--cluster-config`` (see :func:`cluster_sections`).
        cluster: An already loaded ``cluster:`` section (instead of ``config``).

    Yields:
        The :class:`~rccgrade.cluster.CaseCluster`; call ``.parallel()`` right before per-case work runs (a
        SLURM/PBS/SGE/Kubernetes cluster submits its jobs then). A cluster it started is closed (its jobs
        cancelled) on exit, also after an error or Ctrl-C.

    Raises:
        ConfigError: the YAML is missing or invalid (the message names the file and the field).
    """
    section, parallel = cluster_sections(local, config, cluster)
    with open_cluster(section, parallel, scheduler) as cases:
        yield cases
