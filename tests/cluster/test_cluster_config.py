"""The ``cluster:`` section: parsing (good and bad sections, clear errors) and the dask-jobqueue objects it builds.

No SLURM, PBS or SGE is needed: constructing a jobqueue cluster starts only its scheduler (here, in this
process); the batch script it would submit is read with ``job_script()`` and checked line by line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


def test_kubernetes_without_the_optional_package_says_what_to_do() -> None:
    try:  # dask-kubernetes is an optional extra, not installed by requirements.lock
        import dask_kubernetes  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"rccgrade\[kubernetes\].*kind: scheduler"):
            build_cluster(ClusterSettings(kind="kubernetes", image="ghcr.io/example/rccgrade:0.1"))
    else:  # pragma: no cover - only where the extra is installed
        pytest.skip("dask-kubernetes is installed; its KubeCluster needs a Kubernetes API")


def test_scheduler_kind_and_command_line_address_become_the_dask_backend() -> None:
    parallel = ParallelSettings(backend="processes", worker_failures=2)
    with open_cluster(ClusterSettings(), parallel) as p:
        assert p is parallel
    with open_cluster(ClusterSettings(kind="scheduler", address="tcp://10.0.0.5:8786"), parallel) as p:
        assert (p.backend, p.scheduler, p.worker_failures) == ("dask", "tcp://10.0.0.5:8786", 2)
    with open_cluster(ClusterSettings(kind="scheduler", address="tcp://a:1"), parallel, scheduler="tcp://b:2") as p:
        assert p.scheduler == "tcp://b:2"  # --scheduler wins over the file
