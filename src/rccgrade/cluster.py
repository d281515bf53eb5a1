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
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rccgrade.errors import ConfigError
from rccgrade.parallel import ParallelSettings

log = logging.getLogger(__name__)

ClusterKind = Literal["local", "scheduler", "slurm", "pbs", "sge", "kubernetes"]
BATCH_KINDS = ("slurm", "pbs", "sge")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:[0-5]\d(:[0-5]\d)?$")
_BATCH_ONLY = ("queue", "account", "walltime", "job_extra_directives", "job_script_prologue", "python")
_STARTED_ONLY = ("cores", "memory", "processes", "local_directory", "log_directory", "interface")


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
        unused = [f for f in _BATCH_ONLY if f in given] if kind not in BATCH_KINDS else []
        if kind in ("local", "scheduler"):
            unused += [f for f in (*_STARTED_ONLY, "jobs", "image", "namespace") if f in given]
        if kind in BATCH_KINDS:
            unused += [f for f in ("image", "namespace") if f in given]
        if unused:
            raise ValueError(f"{', '.join(sorted(set(unused)))} not used with kind {kind!r}; remove them")
        if kind == "kubernetes" and not self.image:
            raise ValueError("kind 'kubernetes' needs 'image' (a container image with rccgrade installed)")
        if self.cores % self.processes:
            raise ValueError(f"cores ({self.cores}) must be a multiple of processes ({self.processes})")
        return self


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
        threads = settings.cores // settings.processes
        resources = {"requests": {"cpu": str(settings.cores), "memory": settings.memory}}
        resources["limits"] = dict(resources["requests"])
        return KubeCluster(
            name="rccgrade",
            image=settings.image,
            namespace=settings.namespace,
            n_workers=0,
            resources=resources,
            worker_command=["dask", "worker", "--nthreads", str(threads)],
        )
    raise ConfigError(f"cluster kind {settings.kind!r} is not started by rccgrade")


@contextmanager
def open_cluster(
    settings: ClusterSettings, parallel: ParallelSettings, scheduler: str | None = None
) -> Iterator[ParallelSettings]:
    """The executor settings for the study's per-case stages, with any cluster it needs running meanwhile.

    Args:
        settings: The ``cluster:`` section.
        parallel: The ``parallel:`` section.
        scheduler: ``--scheduler ADDRESS`` from the command line; it wins over the ``cluster:`` section.

    Yields:
        ``parallel`` itself (``kind: local``), or a copy with ``backend: dask`` and the scheduler's address.
        A started cluster is closed (its jobs cancelled) on exit, also after a failure or Ctrl-C.
    """
    if scheduler or settings.kind == "scheduler":
        address = scheduler or settings.address
        yield parallel.model_copy(update={"scheduler": address, "backend": "dask"})
        return
    if settings.kind == "local":
        yield parallel
        return
    import dask
    from distributed import Client

    # the scheduler runs in this process: its policy for cases whose worker died is the study's
    with dask.config.set({"distributed.scheduler.allowed-failures": parallel.worker_failures}):
        cluster = build_cluster(settings)
    try:
        cluster.scale(jobs=settings.jobs)
        log.info(
            "%s cluster: %d job(s) of %d cores / %s requested; scheduler %s",
            settings.kind,
            settings.jobs,
            settings.cores,
            settings.memory,
            cluster.scheduler_address,
        )
        with Client(cluster) as client:
            try:
                client.wait_for_workers(1, timeout=settings.start_timeout_s)
            except TimeoutError:
                raise ConfigError(
                    f"no Dask worker of the {settings.kind} cluster started within {settings.start_timeout_s:g} s; "
                    "check the job queue and the jobs' logs (cluster.log_directory), or raise "
                    "cluster.start_timeout_s"
                ) from None
        yield parallel.model_copy(update={"scheduler": cluster.scheduler_address, "backend": "dask"})
    finally:
        cluster.close()
