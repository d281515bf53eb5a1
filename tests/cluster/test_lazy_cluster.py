"""A configured SLURM/PBS/SGE/Kubernetes cluster starts only when per-case work runs, in every command.

The cluster factory (:func:`rccgrade.cluster.build_cluster`) is replaced by one that records each build, scale
and close and hands out a real scheduler: a LocalCluster with one in-process worker, whose transition counter
says whether work was sent to it. Nothing here needs SLURM; what is checked is rccgrade's side: when it submits
jobs (never for a re-run whose per-case stages are all cached), that the per-case work then runs there, and that
``study``, ``evaluate``, ``validate``, ``preprocess``, ``radiomics`` and ``predict`` all honour the ``cluster:``
section and ``--scheduler`` the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from cluster_helpers import small_study_config

from rccgrade.config import config_from_dict
from rccgrade.parallel import ParallelSettings
from rccgrade.study import read_stage_log, run_study

ROOT = Path(__file__).resolve().parents[2]
SLURM = {"kind": "slurm", "jobs": 2, "cores": 2, "memory": "4GB"}


class Jobs:
    """What rccgrade uses of a jobqueue cluster; its "jobs" are the one worker of the test's scheduler."""

    def __init__(self, log: list[tuple[Any, ...]], address: str) -> None:
        self.log, self.scheduler_address = log, address

    def scale(self, jobs: int) -> None:
        self.log.append(("scale", jobs))

    def close(self) -> None:
        self.log.append(("close",))


class Env:
    """The shared scheduler, the call log of the fake factory and a small cohort."""

    def __init__(self, scheduler: Any, log: list[tuple[Any, ...]], manifest: Path, base: Path) -> None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        self.scheduler, self.log, self.manifest, self.base = scheduler, log, manifest, base

        class Finished(SchedulerPlugin):
            done = 0

            def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
                if finish == "memory" and str(key).startswith("rccgrade-"):
                    self.done += 1

        self.counter = Finished()
        scheduler.scheduler.add_plugin(self.counter)

    @property
    def address(self) -> str:
        return str(self.scheduler.scheduler_address)

    def transitions(self) -> int:
        """Per-case tasks (keys ``rccgrade-…``) finished on the scheduler so far."""
        return int(self.counter.done)

    def builds(self) -> list[tuple[Any, ...]]:
        return [c for c in self.log if c[0] == "build"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from distributed import LocalCluster

    from rccgrade.synth.writer import write_cohort

    base = tmp_path_factory.mktemp("lazy")
    manifest = write_cohort(base / "cohort", n=16, seed=5, size="small", parallel=ParallelSettings(backend="serial"))
    log: list[tuple[Any, ...]] = []

    def factory(settings: Any) -> Jobs:
        log.append(("build", settings.kind))
        return Jobs(log, scheduler.scheduler_address)

    with (
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as scheduler,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr("rccgrade.cluster.build_cluster", factory)
        yield Env(scheduler, log, manifest, base)


def _study(env: Env, cluster: dict[str, Any], **models: Any) -> dict[str, Any]:
    return small_study_config(
        "lazy", env.manifest, env.base / "runs", {"backend": "serial"}, models=models, cluster=cluster
    )


@pytest.fixture(scope="module")
def study(env: Env) -> Path:
    """A study on the "SLURM" cluster: its jobs are submitted once, for the per-case stages, and cancelled."""
    before = env.transitions()
    result = run_study(config_from_dict(_study(env, SLURM)))
    assert env.log == [("build", "slurm"), ("scale", 2), ("close",)]
    assert env.transitions() > before  # validation, preprocessing and radiomics ran on its workers
    assert result.metrics
    return result.run_dir


def test_a_rerun_with_every_per_case_stage_cached_submits_no_job(env: Env, study: Path) -> None:
    env.log.clear()
    # only a model setting changes: the models stage reruns, every per-case stage comes from the cache
    result = run_study(config_from_dict(_study(env, SLURM, param_grids={"logistic": {"C": [0.5]}})))
    assert env.log == []  # no cluster built, no job submitted
    stages = {s["name"]: s for s in read_stage_log(result.run_dir)}
    assert stages["preprocess"]["status"] == "cached" and stages["radiomics"]["status"] == "cached"
    assert stages["models"]["status"] == "ran" and "validation reused" in stages["cohort"]["detail"]


def test_a_changed_image_is_validated_again(env: Env, study: Path, tmp_path: Path) -> None:
    import shutil

    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.settings import CohortSettings
    from rccgrade.provenance import ChecksumCache
    from rccgrade.study.stages.validation_cache import validation_key

    folder = tmp_path / "cohort"
    shutil.copytree(env.manifest.parent, folder)
    cohort, settings = load_cohort(folder / "manifest.csv"), CohortSettings()
    checksums = ChecksumCache(tmp_path / "checksums.json")
    inputs = {"manifest": folder / "manifest.csv"}
    key = validation_key(cohort, settings, inputs, checksums.checksum)
    assert validation_key(cohort, settings, inputs, checksums.checksum) == key
    assert validation_key(cohort, CohortSettings(label=2), inputs, checksums.checksum) != key
    mask = Path(cohort.cases[3].mask)
    data = bytearray(mask.read_bytes())
    data[-1] ^= 1  # one byte of one case's mask
    mask.write_bytes(bytes(data))
    assert validation_key(cohort, settings, inputs, checksums.checksum) != key
    mask.unlink()
    assert validation_key(cohort, settings, inputs, checksums.checksum) != key


def test_evaluate_honours_the_cluster_section_and_a_rerun_submits_nothing(
    env: Env, study: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    bundle = sorted(study.glob("cache/models-*/bundles/*"))[0]
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({"cluster": SLURM, "parallel": {"worker_failures": 1}}))
    args = ["evaluate", str(bundle), str(env.manifest), "--out", str(tmp_path / "ext"), "--cluster-config", str(config)]
    env.log.clear()
    before = env.transitions()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert env.log == [("build", "slurm"), ("scale", 2), ("close",)] and env.transitions() > before
    metrics = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert metrics["n_manifest"] == 16
    env.log.clear()
    res = CliRunner().invoke(app, args)  # the same cohort again: features and validation come from the cache
    assert res.exit_code == 0, res.output
    assert env.log == []
    assert json.loads((tmp_path / "ext" / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize("how", ["cluster-config", "scheduler"])
def test_every_per_case_command_runs_its_cases_on_the_configured_cluster(
    env: Env, study: Path, tmp_path: Path, how: str
) -> None:
    from typer.testing import CliRunner

    from rccgrade.cli import app

    four = tmp_path / "four.csv"
    table = pd.read_csv(env.manifest, dtype={"patient_id": str})
    cohort = env.manifest.parent
    for col in ("arterial", "nephrographic", "excretory", "mask"):
        table[col] = [str((cohort / p).resolve()) for p in table[col]]
    table.head(4).to_csv(four, index=False)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"cluster": SLURM, "preprocess": {"registration": {"enabled": False}}}))
    where = ["--cluster-config", str(config)] if how == "cluster-config" else ["--scheduler", env.address]
    bundle = sorted(study.glob("cache/models-*/bundles/*"))[0]
    commands = {
        "validate": ["validate", str(four), "--out", str(tmp_path / "validation.csv"), *where],
        "preprocess": [
            "preprocess", str(four), "--out", str(tmp_path / "pre"), "--no-qc", "--no-register",
            *(["--config", str(config)] if how == "cluster-config" else where),
        ],
        "radiomics": [
            "radiomics", str(tmp_path / "pre"), "--out", str(tmp_path / "rad"), "--params",
            str(ROOT / "configs" / "radiomics_demo.yaml"), "--no-stability", *where,
        ],
        "predict": [
            "predict", str(bundle), str(four), "--out", str(tmp_path / "preds.csv"),
            "--work-dir", str(tmp_path / "work"), "--allow-failures", *where,
        ],
    }  # fmt: skip
    for name, args in commands.items():
        env.log.clear()
        before = env.transitions()
        res = CliRunner().invoke(app, args)
        assert res.exit_code in (0, 1), (name, res.output, res.exception)  # 1: a case with a problem
        assert env.transitions() > before, f"{name}: no case ran on the cluster"
        expected = [("build", "slurm"), ("scale", 2), ("close",)] if how == "cluster-config" else []
        assert env.log == expected, (name, env.log)
    assert len(pd.read_csv(tmp_path / "preds.csv")) == 4


def test_the_validation_key_never_reads_what_validation_has_not_vetted(tmp_path: Path) -> None:
    """A manifest may name a FIFO (reading blocks forever) or ``/`` (hashing reads the disk): neither is read."""
    import os

    from rccgrade.study.stages.validation_cache import file_digest

    read: list[Path] = []

    def checksum(path: Path) -> str:
        read.append(path)
        return "sha"

    fifo = tmp_path / "phase.nii.gz"
    os.mkfifo(fifo)
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"a")
    image = tmp_path / "image.nii.gz"
    image.write_bytes(b"b")
    assert file_digest(checksum, fifo) == "unavailable: not a regular file or folder"
    assert file_digest(checksum, tmp_path / "missing.nii.gz") == "unavailable: FileNotFoundError"
    folder = file_digest(checksum, series)
    assert folder[0] == "folder" and "1.dcm" in folder[-1]
    (series / "1.dcm").write_bytes(b"ab")  # a changed slice changes the folder's identity
    assert file_digest(checksum, series) != folder
    assert file_digest(checksum, image) == "sha"
    assert read == [image]  # only the regular file was read
