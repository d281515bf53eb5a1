"""Where the per-case work of a study runs: this machine, an existing Dask scheduler, or a cluster rccgrade starts.

The ``cluster:`` section of the study configuration (:class:`ClusterSettings`):

* ``local`` (default): the ``parallel:`` section alone decides (serial, local processes or a LocalCluster).
* ``scheduler``: an existing Dask scheduler at ``address`` (e.g. one started by the Dask Helm chart or the
  dask-kubernetes operator, or by hand with ``dask scheduler``); the same as ``--scheduler ADDRESS``.
* ``slurm``, ``pbs``, ``sge``: rccgrade starts a ``dask_jobqueue`` cluster — a scheduler in the study's process
  and ``jobs`` batch jobs of ``cores`` cores and ``memory`` each, every job running ``processes`` Dask workers
  — and closes it (cancelling the jobs) when the study ends.
* ``kubernetes``: a ``dask_kubernetes`` operator ``KubeCluster`` of ``jobs`` worker pods running ``image``
  (needs the optional ``dask-kubernetes`` package and the Dask operator in the Kubernetes cluster).

Only cohort validation, preprocessing and radiomics run per case on the workers; the deep, models, evaluation
and report stages run in the study's own process. Every process must see the run folder at the same path (a
shared file system), see docs/cluster.md.

A started cluster is started lazily (:class:`CaseCluster`): its jobs are submitted when the first per-case
work is about to run, so a re-run whose per-case stages all come from the cache submits nothing. ``rccgrade
study``, ``evaluate``, ``validate``, ``preprocess``, ``radiomics`` and ``predict`` all open it the same way
(:func:`open_cluster`; the commands through :func:`rccgrade.cli_progress.command_cluster`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from rccgrade.errors import ConfigError
from rccgrade.parallel import ParallelSettings

log = logging.getLogger(__name__)

ClusterKind = Literal["local", "scheduler", "slurm", "pbs", "sge", "kubernetes"]
BATCH_KINDS = ("slurm", "pbs", "sge")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:[0-5]\d(:[0-5]\d)?$")
_BATCH_ONLY = ("queue", "account", "walltime", "job_extra_directives", "job_script_prologue", "python")
_STARTED_ONLY = ("cores", "memory", "processes", "local_directory", "log_directory", "interface")


def unused_fields(kind: str) -> tuple[str, ...]:
    """The ``cluster:`` fields that ``kind`` does not use: setting one is an error, dumping leaves them out."""
    unused: list[str] = [] if kind in BATCH_KINDS else list(_BATCH_ONLY)
    if kind in ("local", "scheduler"):
        unused += [*_STARTED_ONLY, "jobs", "image", "namespace"]
    if kind in BATCH_KINDS:
        unused += ["image", "namespace"]
    if kind == "kubernetes":  # pods log to Kubernetes and use the pod network
        unused += ["log_directory", "interface"]
    return tuple(dict.fromkeys(unused))


class ClusterSettings(BaseModel):
    """The ``cluster:`` section: where per-case work runs (see the module docstring for the kinds).

    Attributes:
        kind: ``local`` | ``scheduler`` | ``slurm`` | ``pbs`` | ``sge`` | ``kubernetes``.
        address: ``kind: scheduler``: the scheduler's address (``tcp://host:8786`` or ``tls://…``).
        jobs: Batch jobs (SLURM/PBS/SGE) or worker pods (Kubernetes) to start.
        cores: Cores per job; the job's worker processes share them.
        processes: Dask worker processes per job (each gets ``cores / processes`` threads).
        memory: Memory per job (``"16GB"``, ``"64GiB"``); Dask spills and pauses workers near it.
        walltime: Job time limit (``HH:MM:SS`` or ``D-HH:MM:SS``), at least the study's expected duration.
        queue: Partition (SLURM) or queue (PBS/SGE); None: the site default.
        account: Account / project to charge (SLURM ``--account``, PBS ``-A``, SGE ``-P``).
        job_extra_directives: Extra scheduler directives, one per line, e.g. ``["--gres=gpu:1", "--qos=long"]``.
        job_script_prologue: Shell lines run before the worker starts, e.g. ``["module load python/3.11",
            "source /shared/rccgrade/.venv/bin/activate"]``; workers must import the same rccgrade.
        python: Python on the compute nodes (default: this process's interpreter, fine on a shared file system).
        local_directory: Node-local scratch folder for the workers' spill files (e.g. ``$TMPDIR``), not the run folder.
        log_directory: Folder for the jobs' stdout/stderr (None: the current folder).
        interface: Network interface the workers and the scheduler use (e.g. ``ib0``); None: the default route.
        image: ``kind: kubernetes``: container image with the same rccgrade version installed.
        namespace: ``kind: kubernetes``: namespace of the worker pods (None: the current context's).
        start_timeout_s: Seconds to wait for the first worker before the study fails (queues can be slow).
    """

    model_config = ConfigDict(extra="forbid")

    kind: ClusterKind = "local"
    address: str | None = None
    jobs: int = Field(1, ge=1)
    cores: int = Field(4, ge=1)
    processes: int = Field(1, ge=1)
    memory: str = "16GB"
    walltime: str = "02:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    python: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    interface: str | None = None
    image: str | None = None
    namespace: str | None = None
    start_timeout_s: float = Field(600.0, gt=0)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        from dask.utils import parse_bytes

        try:
            n = parse_bytes(value)
        except (ValueError, TypeError):
            raise ValueError(f"memory {value!r} is not a size; write e.g. '16GB' or '64GiB'") from None
        if n < 2**28:
            raise ValueError(f"memory {value!r} is below 256 MB per job; write e.g. '16GB'")
        return value

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        if not _WALLTIME.match(value):
            raise ValueError(f"walltime {value!r} must be HH:MM:SS or D-HH:MM:SS, e.g. '02:00:00'")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(tcp|tls|ucx|inproc)://\S+$", value):
            raise ValueError(f"address {value!r} must look like tcp://host:8786")
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> ClusterSettings:
        kind, given = self.kind, self.model_fields_set
        if kind == "scheduler" and not self.address:
            raise ValueError("kind 'scheduler' needs 'address' (e.g. tcp://10.0.0.5:8786)")
        if kind != "scheduler" and self.address:
            raise ValueError(f"'address' is only used with kind 'scheduler' (kind is {kind!r})")
        unused = [f for f in unused_fields(kind) if f in given]
        if unused:
            raise ValueError(f"{', '.join(sorted(set(unused)))} not used with kind {kind!r}; remove them")
        if kind == "kubernetes" and not self.image:
            raise ValueError("kind 'kubernetes' needs 'image' (a container image with rccgrade installed)")
        if self.cores % self.processes:
            raise ValueError(f"cores ({self.cores}) must be a multiple of processes ({self.processes})")
        return self

    @model_serializer(mode="wrap")
    def _used_only(self, handler: Any) -> dict[str, Any]:
        """Dump only the fields the kind uses, so a dumped section (a run's ``config.yaml``) loads again."""
        data = handler(self)
        for name in (*unused_fields(self.kind), *(() if self.kind == "scheduler" else ("address",))):
            data.pop(name, None)
        return data


def build_cluster(settings: ClusterSettings) -> Any:
    """The (not yet scaled) Dask cluster object for a ``slurm``/``pbs``/``sge``/``kubernetes`` section.

    Constructing a jobqueue cluster starts its scheduler in this process but submits no job; ``scale`` does.
    ``cluster.job_script()`` shows the batch script each job will run.

    Raises:
        ConfigError: another kind, or ``kubernetes`` without the optional ``dask-kubernetes`` package.
    """
    if settings.kind in BATCH_KINDS:
        import dask_jobqueue

        cls = {
            "slurm": dask_jobqueue.SLURMCluster,
            "pbs": dask_jobqueue.PBSCluster,
            "sge": dask_jobqueue.SGECluster,
        }[settings.kind]
        kwargs: dict[str, Any] = {
            "cores": settings.cores,
            "processes": settings.processes,
            "memory": settings.memory,
            "walltime": settings.walltime,
            "queue": settings.queue,
            "job_extra_directives": list(settings.job_extra_directives),
            "job_script_prologue": list(settings.job_script_prologue),
            "python": settings.python or sys.executable,
            "local_directory": settings.local_directory,
            "log_directory": settings.log_directory,
            "interface": settings.interface,
            "job_name": "rccgrade",
            "scheduler_options": {"dashboard_address": ":0"},
        }
        if settings.account:
            kwargs["project" if settings.kind == "sge" else "account"] = settings.account
        return cls(**kwargs)
    if settings.kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError:
            raise ConfigError(
                "cluster kind 'kubernetes' needs the optional package dask-kubernetes "
                "(pip install 'rccgrade[kubernetes]'); or start the scheduler with the Dask Helm chart and use "
                "kind: scheduler with its address (docs/cluster.md)"
            ) from None
        return KubeCluster(**kube_arguments(settings))
    raise ConfigError(f"cluster kind {settings.kind!r} is not started by rccgrade")


def kube_arguments(settings: ClusterSettings) -> dict[str, Any]:
    """Keyword arguments of ``dask_kubernetes.operator.KubeCluster`` for a ``kind: kubernetes`` section.

    Every worker pod requests (and is limited to) ``cores`` CPUs and ``memory``, written as a Kubernetes
    quantity in MiB (Kubernetes refuses ``16GB``); it runs ``processes`` Dask workers of ``cores / processes``
    threads, each limited to its share of the memory. The cluster is named ``rccgrade-<random>``, so two
    studies never connect to each other's cluster, and starts with no worker: :class:`CaseCluster` scales it
    to ``jobs`` pods when per-case work needs it.
    """
    from dask.utils import parse_bytes

    memory = parse_bytes(settings.memory)
    threads = settings.cores // settings.processes
    requests = {"cpu": str(settings.cores), "memory": f"{memory // 2**20}Mi"}
    command = ["dask", "worker", "--nworkers", str(settings.processes), "--nthreads", str(threads)]
    command += ["--memory-limit", str(memory // settings.processes)]
    if settings.local_directory:
        command += ["--local-directory", settings.local_directory]
    return {
        "name": "rccgrade-{uuid}",
        "image": settings.image,
        "namespace": settings.namespace,
        "n_workers": 0,
        "resources": {"requests": requests, "limits": dict(requests)},
        "worker_command": command,
    }


class CaseCluster:
    """Where per-case work runs, with a cluster rccgrade starts brought up only when work needs it (lazily).

    A study (or a command) holds one for its whole run. Stages and commands ask :meth:`parallel` right before
    they hand per-case work to :func:`rccgrade.parallel.run_cases`; the first such call of a ``slurm``/``pbs``/
    ``sge``/``kubernetes`` section builds the cluster, submits its jobs and waits for the first worker. A run
    whose per-case stages all come from the cache never calls it, so it submits no job. Work that stays in
    this process (the models stage's worker count) reads :attr:`local` instead.

    Args:
        settings: The ``cluster:`` section.
        parallel: The ``parallel:`` section (or a command's ``--workers`` settings).
        scheduler: ``--scheduler ADDRESS`` from the command line; it wins over the ``cluster:`` section.
        factory: Builds the (unscaled) cluster object; default :func:`build_cluster` (tests pass a fake).
    """

    def __init__(
        self,
        settings: ClusterSettings,
        parallel: ParallelSettings,
        scheduler: str | None = None,
        *,
        factory: Callable[[ClusterSettings], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.local = parallel
        self.scheduler = scheduler
        self._factory = factory
        self._cluster: Any = None
        self._started: ParallelSettings | None = None

    @property
    def started(self) -> bool:
        """True once a cluster was built (and its jobs submitted) by :meth:`parallel`."""
        return self._cluster is not None

    @property
    def starts_cluster(self) -> bool:
        """True when :meth:`parallel` would build a cluster (kind slurm/pbs/sge/kubernetes, no ``--scheduler``)."""
        return not self.scheduler and self.settings.kind not in ("local", "scheduler")

    def parallel(self) -> ParallelSettings:
        """Executor settings for per-case work about to run; builds and starts the cluster on the first call.

        Returns:
            The ``parallel:`` settings (``kind: local``), or a copy with ``backend: dask`` and the scheduler's
            address (``--scheduler``, ``kind: scheduler``, or the started cluster's own scheduler).

        Raises:
            ConfigError: no worker of a started cluster joined within ``start_timeout_s`` (the cluster is
                closed again), or ``kubernetes`` without its optional package.
        """
        if self.scheduler or self.settings.kind == "scheduler":
            address = self.scheduler or self.settings.address
            return self.local.model_copy(update={"scheduler": address, "backend": "dask"})
        if self.settings.kind == "local":
            return self.local
        if self._started is None:
            self._started = self._start()
        return self._started

    def _start(self) -> ParallelSettings:
        import dask
        from distributed import Client

        settings = self.settings
        factory = self._factory or build_cluster
        # the scheduler runs in this process: its policy for cases whose worker died is the study's
        with dask.config.set({"distributed.scheduler.allowed-failures": self.local.worker_failures}):
            self._cluster = cluster = factory(settings)
        try:
            if settings.kind == "kubernetes":
                cluster.scale(settings.jobs)  # the operator's KubeCluster scales pods: scale(n)
            else:
                cluster.scale(jobs=settings.jobs)
            log.info(
                "%s cluster: %d job(s) of %d cores / %s requested; scheduler %s",
                settings.kind,
                settings.jobs,
                settings.cores,
                settings.memory,
                cluster.scheduler_address,
            )
            with Client(cluster.scheduler_address, timeout="60s") as client:
                try:
                    client.wait_for_workers(1, timeout=settings.start_timeout_s)
                except TimeoutError:
                    raise ConfigError(
                        f"no Dask worker of the {settings.kind} cluster started within "
                        f"{settings.start_timeout_s:g} s; check the job queue and the jobs' logs "
                        "(cluster.log_directory), or raise cluster.start_timeout_s"
                    ) from None
        except BaseException:
            self.close()
            raise
        return self.local.model_copy(update={"scheduler": cluster.scheduler_address, "backend": "dask"})

    def close(self) -> None:
        """Close a started cluster (cancelling its jobs or deleting its pods); nothing to do otherwise."""
        cluster, self._cluster, self._started = self._cluster, None, None
        if cluster is not None:
            cluster.close()


@contextmanager
def open_cluster(
    settings: ClusterSettings,
    parallel: ParallelSettings,
    scheduler: str | None = None,
    *,
    factory: Callable[[ClusterSettings], Any] | None = None,
) -> Iterator[CaseCluster]:
    """A :class:`CaseCluster` for a run; a cluster it started is closed (jobs cancelled) on exit.

    Nothing is started on entry: the first per-case work that runs (:meth:`CaseCluster.parallel`) starts it,
    so a run whose per-case stages are all cached submits no job. The close also happens after a failure
    or Ctrl-C.

    Args:
        settings: The ``cluster:`` section.
        parallel: The ``parallel:`` section.
        scheduler: ``--scheduler ADDRESS`` from the command line; it wins over the ``cluster:`` section.
        factory: Builds the cluster object (default :func:`build_cluster`).
    """
    cases = CaseCluster(settings, parallel, scheduler, factory=factory)
    try:
        yield cases
    finally:
        cases.close()
