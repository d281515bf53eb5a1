"""The ``cluster:`` section: parsing (good and bad sections, clear errors) and the dask-jobqueue objects it builds.

No SLURM, PBS or SGE is needed: constructing a jobqueue cluster starts only its scheduler (here, in this
process); the batch script it would submit is read with ``job_script()`` and checked line by line.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rccgrade.cluster import ClusterSettings, build_cluster, open_cluster
from rccgrade.config import config_from_dict, load_config
from rccgrade.errors import ConfigError
from rccgrade.parallel import ParallelSettings

SLURM: dict[str, Any] = {
    "kind": "slurm",
    "jobs": 3,
    "cores": 8,
    "processes": 2,
    "memory": "32GB",
    "walltime": "04:30:00",
    "queue": "short",
    "account": "radiology",
    "job_extra_directives": ["--qos=normal"],
    "job_script_prologue": ["source /shared/rccgrade/.venv/bin/activate"],
    "local_directory": "/scratch/$USER",
}


def test_default_is_local_and_a_full_slurm_section_parses(tmp_path: Path) -> None:
    assert config_from_dict({}).cluster.kind == "local"
    path = tmp_path / "study.yaml"
    path.write_text("name: s\ncluster:\n" + "".join(f"  {k}: {v!r}\n".replace("'", '"') for k, v in SLURM.items()))
    cfg = load_config(path)
    assert cfg.cluster.kind == "slurm" and cfg.cluster.jobs == 3 and cfg.cluster.queue == "short"
    assert cfg.cluster.job_extra_directives == ["--qos=normal"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"kind": "slurm", "jobz": 2}, "cluster.jobz"),  # a typo is an error, not ignored
        ({"kind": "lsf"}, "cluster.kind"),
        ({"kind": "slurm", "memory": "lots"}, "not a size"),
        ({"kind": "slurm", "memory": "100MB"}, "below 256 MB"),
        ({"kind": "slurm", "walltime": "4h"}, "HH:MM:SS"),
        ({"kind": "slurm", "jobs": 0}, "cluster.jobs"),
        ({"kind": "slurm", "cores": 6, "processes": 4}, "multiple of processes"),
        ({"kind": "scheduler"}, "needs 'address'"),
        ({"kind": "scheduler", "address": "10.0.0.5"}, "tcp://host:8786"),
        ({"kind": "local", "address": "tcp://10.0.0.5:8786"}, "only used with kind 'scheduler'"),
        ({"kind": "local", "queue": "short"}, "queue not used with kind 'local'"),
        ({"kind": "kubernetes", "queue": "short", "image": "x"}, "queue not used with kind 'kubernetes'"),
        ({"kind": "slurm", "image": "x"}, "image not used with kind 'slurm'"),
        ({"kind": "kubernetes"}, "needs 'image'"),
    ],
)
def test_bad_sections_are_refused_with_the_field_and_the_fix(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"cluster": section}, source="study.yaml")
    assert message in str(err.value) and "study.yaml" in str(err.value)


def test_slurm_cluster_object_and_its_job_script() -> None:
    cluster = build_cluster(ClusterSettings(**SLURM))
    try:
        script = cluster.job_script()
        header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
        assert "#SBATCH -p short" in header
        assert "#SBATCH -A radiology" in header
        assert "#SBATCH -t 04:30:00" in header
        assert "#SBATCH --cpus-per-task=8" in header
        assert "#SBATCH --mem=30G" in header  # dask-jobqueue writes 32 GB (decimal) as 30 GiB
        assert "#SBATCH --qos=normal" in header
        assert "source /shared/rccgrade/.venv/bin/activate" in script
        # 2 worker processes of 4 threads, 16 GB each, spilling to node-local scratch, this Python
        assert "--nworkers 2" in script and "--nthreads 4" in script and "--memory-limit 14.90GiB" in script
        assert "--local-directory /scratch/$USER" in script
        assert script.rstrip().splitlines()[-1].startswith(sys.executable)
        assert cluster.scheduler_address.startswith("tcp://")
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("kind", "directive", "account"), [("pbs", "#PBS", "#PBS -A radiology"), ("sge", "#$", "#$ -P radiology")]
)
def test_pbs_and_sge_scripts_carry_queue_account_and_walltime(kind: str, directive: str, account: str) -> None:
    settings = ClusterSettings(**{**SLURM, "kind": kind, "job_extra_directives": []})
    cluster = build_cluster(settings)
    try:
        script = cluster.job_script()
        assert f"{directive} -q short" in script and account in script and "04:30:00" in script
    finally:
        cluster.close()


def test_kubernetes_without_the_optional_package_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # whether or not the extra is installed here: a None entry makes the import fail as if it were absent
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ConfigError, match=r"dask-kubernetes.*rccgrade\[kubernetes\].*kind: scheduler"):
        build_cluster(ClusterSettings(kind="kubernetes", image="ghcr.io/example/rccgrade:0.1"))


class FakeKubeCluster:
    """``dask_kubernetes.operator.KubeCluster`` as far as rccgrade uses it: the real keyword-only constructor
    parameters (no ``**kwargs``: a misspelt argument is a TypeError, as it would be against a real cluster) and
    the real ``scale(n, worker_group)``. Its scheduler is a LocalCluster of this test."""

    built: ClassVar[list[FakeKubeCluster]] = []
    address: ClassVar[str] = ""

    def __init__(
        self,
        *,
        name: str | None = None,
        namespace: str | None = None,
        image: str | None = None,
        n_workers: int | None = None,
        resources: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        worker_command: list[str] | None = None,
        shutdown_on_close: bool | None = None,
        resource_timeout: int = 60,
    ) -> None:
        self.kwargs = {
            "name": name,
            "namespace": namespace,
            "image": image,
            "n_workers": n_workers,
            "resources": resources,
            "worker_command": worker_command,
        }
        self.scaled: list[tuple[int, str]] = []
        self.closed = 0
        FakeKubeCluster.built.append(self)

    @property
    def scheduler_address(self) -> str:
        return FakeKubeCluster.address

    def scale(self, n: int, worker_group: str = "default") -> None:
        self.scaled.append((n, worker_group))

    def close(self, timeout: int = 3600) -> None:
        self.closed += 1


@pytest.fixture()
def one_worker() -> Iterator[Any]:
    """A scheduler with one in-process worker: what a started cluster's first job or pod gives."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as real:
        yield real


def test_kubernetes_cluster_gets_the_configured_image_namespace_pods_and_resources(
    monkeypatch: pytest.MonkeyPatch, one_worker: Any
) -> None:
    package, operator = types.ModuleType("dask_kubernetes"), types.ModuleType("dask_kubernetes.operator")
    operator.KubeCluster = FakeKubeCluster  # type: ignore[attr-defined]
    package.operator = operator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dask_kubernetes", package)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", operator)
    monkeypatch.setattr(FakeKubeCluster, "built", [])
    monkeypatch.setattr(FakeKubeCluster, "address", one_worker.scheduler_address)
    section = {
        "kind": "kubernetes",
        "image": "registry.example.org/rccgrade:1.2",
        "namespace": "rcc",
        "jobs": 8,
        "cores": 4,
        "processes": 2,
        "memory": "16GB",
        "local_directory": "/tmp/dask",
    }
    settings = config_from_dict({"cluster": section}).cluster
    with open_cluster(settings, ParallelSettings(worker_failures=1)) as cases:
        assert FakeKubeCluster.built == []  # nothing is created before per-case work needs it
        par = cases.parallel()
        (kube,) = FakeKubeCluster.built
        assert kube.scaled == [(8, "default")]  # 8 worker pods
    assert kube.closed == 1  # pods deleted when the run ends
    assert (par.backend, par.scheduler, par.worker_failures) == ("dask", one_worker.scheduler_address, 1)
    kw = kube.kwargs
    assert kw["image"] == "registry.example.org/rccgrade:1.2" and kw["namespace"] == "rcc"
    assert kw["n_workers"] == 0 and kw["name"] == "rccgrade-{uuid}"  # KubeCluster fills in a random id
    # 16 GB = 16e9 bytes = 15258 MiB per pod (Kubernetes refuses "16GB"), requested and limited
    assert kw["resources"] == {
        "requests": {"cpu": "4", "memory": "15258Mi"},
        "limits": {"cpu": "4", "memory": "15258Mi"},
    }
    assert kw["worker_command"] == [
        "dask", "worker", "--nworkers", "2", "--nthreads", "2", "--memory-limit", "8000000000",
        "--local-directory", "/tmp/dask",
    ]  # fmt: skip


def test_kubernetes_refuses_batch_and_host_keys() -> None:
    for key, value in (("log_directory", "/logs"), ("interface", "ib0"), ("walltime", "01:00:00")):
        with pytest.raises(ConfigError, match=f"{key} not used with kind 'kubernetes'"):
            config_from_dict({"cluster": {"kind": "kubernetes", "image": "x", key: value}})


class Recorder:
    """A cluster factory for ``open_cluster``: records each build, scale and close; the scheduler is real."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, settings: ClusterSettings) -> Any:
        self.calls.append(("build", settings.kind))
        recorder = self

        class Jobs:
            scheduler_address = recorder.address

            def scale(self, jobs: int) -> None:
                recorder.calls.append(("scale", jobs))

            def close(self) -> None:
                recorder.calls.append(("close",))

        return Jobs()


def test_a_batch_cluster_is_built_and_scaled_only_when_work_asks_and_closed_once(one_worker: Any) -> None:
    slurm = ClusterSettings(kind="slurm", jobs=3)
    factory = Recorder(one_worker.scheduler_address)
    with open_cluster(slurm, ParallelSettings(), factory=factory) as cases:
        assert cases.local.backend == "processes"  # work staying in this process never starts the cluster
    assert factory.calls == []  # no per-case work: nothing submitted
    with open_cluster(slurm, ParallelSettings(), factory=factory) as cases:
        first, second = cases.parallel(), cases.parallel()
        assert first == second and first.scheduler == one_worker.scheduler_address
    assert factory.calls == [("build", "slurm"), ("scale", 3), ("close",)]
    factory.calls.clear()
    with pytest.raises(KeyboardInterrupt), open_cluster(slurm, ParallelSettings(), factory=factory) as cases:
        cases.parallel()
        raise KeyboardInterrupt
    assert factory.calls[-1] == ("close",)  # jobs cancelled after Ctrl-C too


def test_no_worker_within_the_start_timeout_is_a_clear_error_and_cancels_the_jobs() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        factory = Recorder(empty.scheduler_address)
        settings = ClusterSettings(kind="pbs", start_timeout_s=0.5)
        expected = r"no Dask worker of the pbs cluster started within 0.5 s"
        with (
            pytest.raises(ConfigError, match=expected),
            open_cluster(settings, ParallelSettings(), factory=factory) as c,
        ):
            c.parallel()
    assert factory.calls == [("build", "pbs"), ("scale", 1), ("close",)]


def test_scheduler_kind_and_command_line_address_become_the_dask_backend() -> None:
    parallel = ParallelSettings(backend="processes", worker_failures=2)
    with open_cluster(ClusterSettings(), parallel) as cases:
        assert cases.parallel() is parallel
    with open_cluster(ClusterSettings(kind="scheduler", address="tcp://10.0.0.5:8786"), parallel) as cases:
        p = cases.parallel()
        assert (p.backend, p.scheduler, p.worker_failures) == ("dask", "tcp://10.0.0.5:8786", 2)
    slurm = ClusterSettings(kind="slurm")
    for section in (ClusterSettings(kind="scheduler", address="tcp://a:1"), slurm):
        with open_cluster(section, parallel, scheduler="tcp://b:2", factory=Recorder("unused")) as cases:
            assert cases.parallel().scheduler == "tcp://b:2"  # --scheduler wins over the file
            assert not cases.started


@pytest.mark.parametrize(
    "section",
    [
        {},
        {"kind": "scheduler", "address": "tcp://10.0.0.5:8786"},
        SLURM,
        {"kind": "pbs", "queue": "workq"},
        {"kind": "kubernetes", "image": "ghcr.io/x/rccgrade:1", "jobs": 2, "namespace": "radiology"},
    ],
)
def test_a_dumped_configuration_loads_again_unchanged(section: dict[str, Any], tmp_path: Path) -> None:
    """A run's ``config.yaml`` is the resolved configuration; re-running from it must work. The defaults of
    fields a kind does not use are left out of the dump, since setting them is refused."""
    from rccgrade.config import dump_config

    cfg = config_from_dict({"name": "s", "runs_dir": str(tmp_path / "runs"), "cluster": section})
    path = dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert again.cluster.model_fields_set <= set(ClusterSettings.model_fields)
    dumped = again.cluster.model_dump(mode="json")
    assert ClusterSettings(**dumped) == cfg.cluster
    if cfg.cluster.kind == "local":
        assert set(dumped) == {"kind", "start_timeout_s"}
