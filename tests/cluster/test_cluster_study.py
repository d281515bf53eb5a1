"""A real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes, one killed mid-preprocessing.

The cluster is what a SLURM or Kubernetes deployment looks like from rccgrade's side: a scheduler process at a
TCP address, worker processes each with its own working folder (``--local-directory``), and the run folder on a
file system every process sees. ``rccgrade study CONFIG --scheduler tcp://…`` runs as a separate process too.
The worker-failure half is deterministic: the doomed worker loads ``doomed_worker_preload.py``, whose first
preprocessing case writes a marker and hangs, and the test SIGKILLs that worker once the marker exists.

Checks: the study finishes; ``metrics.json`` equals a local serial run's and a local processes run's (parsed,
every number); every patient is in the preprocessing status exactly once and ok; every per-case file is complete
(readable) and no temporary file is left in the run folder. The scheduler starts with ``allowed-failures: 0``,
so the run survives only because rccgrade sets the scheduler's policy (``parallel.worker_failures``) itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from cluster_helpers import small_study_config

from rccgrade.atomic import is_temporary
from rccgrade.config import config_from_dict
from rccgrade.parallel import ParallelSettings
from rccgrade.study import run_study

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# hang guards, not speed limits: generous, since a loaded machine (e.g. a niced run beside a benchmark) can take
# minutes just to import rccgrade in the study's subprocess (the test itself needs about a minute of CPU)
START_TIMEOUT_S = 300.0
STUDY_TIMEOUT_S = 900.0


def _study_config(manifest: Path, runs_dir: Path, parallel: dict[str, Any]) -> dict[str, Any]:
    """The smallest study that still sends cohort validation, preprocessing and radiomics per case to workers."""
    return small_study_config("dist", manifest, runs_dir, parallel)


def _env(**extra: str) -> dict[str, str]:
    """The test's environment with this checkout's ``src`` first on PYTHONPATH (workers import this rccgrade)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", name]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group (``start_new_session``: the process and any child it started) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


class Cluster:
    """A scheduler and named workers, each its own process group with its log in ``logs``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.logs = base / "logs"
        self.logs.mkdir(parents=True)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.base, start_new_session=True
        )
        log.close()

    def start_scheduler(self) -> None:
        # allowed-failures 0: a case whose worker dies fails unless rccgrade sets the policy on the scheduler
        env = _env(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
        args = [*_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--dashboard-address", ":0", "--scheduler-file", str(self.base / "scheduler.json")]
        self._start("scheduler", args, env)

    def start_worker(self, name: str, preload: Path | None = None, **env: str) -> None:
        local = self.base / f"local-{name}"
        local.mkdir()
        args = [*_bin("dask"), "worker", "--scheduler-file", str(self.base / "scheduler.json"), "--name", name]
        args += ["--nthreads", "1", "--no-nanny", "--local-directory", str(local), "--no-dashboard"]
        args += ["--death-timeout", "60"]
        if preload is not None:
            args += ["--preload", str(preload)]
        self._start(name, args, _env(**env))

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.base / "scheduler.json").is_file():
            self.check_alive()
            assert time.monotonic() < deadline, "the scheduler did not write its scheduler file"
            time.sleep(0.1)
        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)
            # every worker imports this checkout's rccgrade (PYTHONPATH passed through the environment)
            where = client.run(lambda: __import__("rccgrade").__file__)
            assert set(where.values()) == {str(ROOT / "src" / "rccgrade" / "__init__.py")}, where

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited early:\n{self.log(name)}"

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def kill(self, name: str) -> None:
        _kill(self.procs[name])

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            _kill(proc)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Scheduler + a healthy worker + a doomed worker; every process is killed at the end, pass or fail."""
    c = Cluster(tmp_path / "cluster")
    try:
        c.start_scheduler()
        c.start_worker("healthy")
        block_dir = tmp_path / "blocked"
        block_dir.mkdir()
        c.start_worker("doomed", preload=HERE / "doomed_worker_preload.py", RCCGRADE_TEST_BLOCK_DIR=str(block_dir))
        yield c
    finally:
        c.close()


def _stage_folder(run_dir: Path, stage: str) -> Path:
    (folder,) = [p for p in (run_dir / "cache").iterdir() if p.is_dir() and p.name.startswith(f"{stage}-")]
    return folder


def _per_case_files_complete(run_dir: Path) -> list[Path]:
    """Read every per-case preprocessing output; returns them (a truncated file raises)."""
    pre = _stage_folder(run_dir, "preprocess")
    files = sorted(p for p in pre.rglob("*") if p.is_file())
    for p in files:
        if p.name.endswith(".nii.gz"):
            sitk.ReadImage(str(p))
        elif p.suffix == ".npy":
            np.load(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
    return files


@pytest.mark.slow
def test_scheduler_and_two_worker_processes_survive_a_killed_worker(cluster: Cluster, tmp_path: Path) -> None:
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(
        tmp_path / "cohort", n=16, seed=5, size="small", parallel=ParallelSettings(backend="serial")
    )
    # local references while the cluster starts
    serial = run_study(config_from_dict(_study_config(manifest, tmp_path / "serial", {"backend": "serial"})))
    procs = run_study(
        config_from_dict(_study_config(manifest, tmp_path / "procs", {"backend": "processes", "workers": 2}))
    )
    assert serial.metrics and serial.metrics == procs.metrics

    cluster.wait_for_workers(2)
    shared = tmp_path / "shared_runs"  # the cluster file system: every process reads and writes here
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(_study_config(manifest, shared, {"backend": "serial"})))
    out = open(tmp_path / "study.log", "wb")  # noqa: SIM115
    study = subprocess.Popen(
        [*_bin("rccgrade"), "study", str(cfg), "--scheduler", cluster.address],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        block_dir = tmp_path / "blocked"
        deadline = time.monotonic() + STUDY_TIMEOUT_S
        while not any(block_dir.iterdir()):
            assert study.poll() is None, "the study ended before the doomed worker got a preprocessing case"
            assert time.monotonic() < deadline, "the doomed worker never received a preprocessing case"
            time.sleep(0.05)
        (blocked,) = [p.name.removesuffix(".started") for p in block_dir.iterdir()]
        cluster.kill("doomed")  # mid-case: the marker exists, the case never returns
        rc = study.wait(timeout=STUDY_TIMEOUT_S)
    finally:
        _kill(study)
        out.close()
    log = (tmp_path / "study.log").read_text(errors="replace")
    assert rc == 0, log[-4000:]

    run_dir = shared / "dist"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == serial.metrics  # every number, parsed
    pre = _stage_folder(run_dir, "preprocess")
    status = pd.read_csv(pre / "status.csv", dtype={"patient_id": str})
    manifest_ids = pd.read_csv(manifest, dtype={"patient_id": str})["patient_id"]
    assert sorted(status["patient_id"]) == sorted(manifest_ids)  # each patient exactly once
    assert status["ok"].all(), status[["patient_id", "error"]]
    assert blocked in set(status["patient_id"])
    files = _per_case_files_complete(run_dir)
    assert any(blocked in str(p) for p in files)  # the killed worker's case was redone elsewhere
    leftovers = [p for p in run_dir.rglob("*") if is_temporary(p)]
    assert not leftovers, leftovers
    assert pd.read_csv(run_dir / "failures.csv").empty
