"""The study runner with stand-in stages: cache keys that cannot go stale, --force, the run-folder lock,
failed/interrupted records, safe run names and the configuration checked before any work.

The stand-in stages use the real cache (:func:`rccgrade.study.cache.cached`) and the real runner; only their
work is a counter, so every rule is checked in milliseconds. The real stages are checked end to end in
``test_study.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rccgrade.config import config_from_dict
from rccgrade.errors import ConfigError
from rccgrade.study import RUN_ORDER, forced_stages, read_stage_log, run_study
from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext
from rccgrade.study.lock import RunLockedError, run_lock

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


class CountingStage:
    """A cached stage whose work is to count its runs (and to write one file)."""

    def __init__(self, name: str, version: str = "v1", counter: dict[str, int] | None = None) -> None:
        self.name = name
        self.description = f"stand-in {name}"
        self.requires: tuple[str, ...] = ()
        self.version = version
        self.counter = counter if counter is not None else {}

    def run(self, ctx: StudyContext, record: StageRecord) -> None:
        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            self.counter[self.name] = self.counter.get(self.name, 0) + 1
            (folder / "out.txt").write_text(self.name)
            return {"detail": "computed"}

        cached(ctx, record, self.version, (ctx.config.seed,), compute)


class RaisingStage(CountingStage):
    def __init__(self, name: str, exc: BaseException) -> None:
        super().__init__(name)
        self.exc = exc

    def run(self, ctx: StudyContext, record: StageRecord) -> None:
        raise self.exc


def _config(tmp_path: Path, **extra: Any) -> Any:
    data = {"name": "fake", "runs_dir": str(tmp_path / "runs"), "models": {"arms": ["clinical"]}, **extra}
    return config_from_dict(data)


def _stages(counter: dict[str, int], **versions: str) -> dict[str, CountingStage]:
    return {n: CountingStage(n, versions.get(n, "v1"), counter) for n in RUN_ORDER}


def _status(run_dir: Path) -> dict[str, str]:
    return {r["name"]: r["status"] for r in read_stage_log(run_dir)}


def test_a_changed_stage_code_version_reruns_that_stage_only(tmp_path: Path) -> None:
    counter: dict[str, int] = {}
    cfg = _config(tmp_path)
    run_study(cfg, stages=_stages(counter))
    assert counter == dict.fromkeys(RUN_ORDER, 1)
    result = run_study(cfg, stages=_stages(counter))
    assert set(_status(result.run_dir).values()) == {"cached"} and counter == dict.fromkeys(RUN_ORDER, 1)
    # the models stage's code changed (its version was bumped): it alone is recomputed
    result = run_study(cfg, stages=_stages(counter, models="v2"))
    status = _status(result.run_dir)
    assert status["models"] == "ran" and counter["models"] == 2
    assert all(status[n] == "cached" for n in RUN_ORDER if n != "models")


def test_a_new_rccgrade_version_recomputes_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rccgrade.study.cache as cache_module

    counter: dict[str, int] = {}
    cfg = _config(tmp_path)
    run_study(cfg, stages=_stages(counter))
    monkeypatch.setattr(cache_module, "__version__", "999.0")
    result = run_study(cfg, stages=_stages(counter))
    assert set(_status(result.run_dir).values()) == {"ran"} and counter == dict.fromkeys(RUN_ORDER, 2)


def test_force_recomputes_the_stage_and_everything_after_it(tmp_path: Path) -> None:
    counter: dict[str, int] = {}
    cfg = _config(tmp_path)
    run_study(cfg, stages=_stages(counter))
    result = run_study(cfg, stages=_stages(counter), force=["models"])
    assert result.forced == ("models", "evaluate", "report")
    log = read_stage_log(result.run_dir)
    for r in log:
        after = RUN_ORDER.index(r["name"]) >= RUN_ORDER.index("models")
        assert r["status"] == ("ran" if after else "cached"), r
        assert r["forced"] is after
    assert counter["models"] == counter["evaluate"] == counter["report"] == 2 and counter["deep"] == 1
    assert "forced: recomputing models, evaluate, report" in (result.run_dir / "study.log").read_text()
    # all: every stage; an unknown stage name is a clear error naming the choices
    assert forced_stages(["all"]) == RUN_ORDER
    assert forced_stages(["report", "deep"]) == RUN_ORDER[RUN_ORDER.index("deep") :]
    with pytest.raises(ConfigError, match=r"unknown stage.*modles.*choose from"):
        run_study(cfg, stages=_stages(counter), force=["modles"])


@pytest.mark.parametrize(("exc", "status"), [(KeyboardInterrupt(), "interrupted"), (RuntimeError("a bug"), "failed")])
def test_a_stopped_or_broken_stage_is_recorded_as_such(tmp_path: Path, exc: BaseException, status: str) -> None:
    counter: dict[str, int] = {}
    stages: dict[str, Any] = _stages(counter)
    stages["radiomics"] = RaisingStage("radiomics", exc)
    with pytest.raises(type(exc)):  # a programming error propagates, with its traceback
        run_study(_config(tmp_path), stages=stages)
    log = read_stage_log(tmp_path / "runs" / "fake")
    assert [r["name"] for r in log] == ["cohort", "preprocess", "split", "radiomics"]
    assert log[-1]["status"] == status and {r["status"] for r in log[:-1]} == {"ran"}
    # the lock was released: the next run proceeds
    run_study(_config(tmp_path), stages=_stages(counter))


@pytest.mark.parametrize("name", ["../../escaped", "/abs/run", "a/b", "..", ".hidden", ""])
def test_a_run_name_cannot_leave_runs_dir(tmp_path: Path, name: str) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match="run name"):
        run_study(_config(tmp_path, name=name), stages=_stages({}))
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere


def test_an_unwritable_runs_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    cfg = config_from_dict({"name": "x", "runs_dir": str(blocker / "runs"), "models": {"arms": ["clinical"]}})
    with pytest.raises(ConfigError, match=r"cannot create or write the run folder.*runs_dir"):
        run_study(cfg, stages=_stages({}))


@pytest.mark.parametrize(
    ("models", "radiomics", "match"),
    [
        ({"arms": ["clinical", "radiomix"]}, {}, "unknown arm 'radiomix'"),
        ({"arms": ["deep:../x"]}, {}, "unknown arm"),
        ({"arms": ["combined"], "combined_sources": ["stacked"]}, {}, "unknown arm 'stacked'"),
        ({"arms": ["clinical"], "arm_classifiers": {"radiomics": "svm"}}, {}, "arm_classifiers"),
        ({"arms": ["radiomics"]}, {"params": "/no/such/params.yaml"}, "params"),
    ],
)
def test_the_configuration_is_checked_before_any_work(
    tmp_path: Path, models: dict[str, Any], radiomics: dict[str, Any], match: str
) -> None:
    counter: dict[str, int] = {}
    with pytest.raises(ConfigError, match=match):  # a bad params file is refused as early as the config itself
        run_study(_config(tmp_path, models=models, radiomics=radiomics, synth={"n": 40}), stages=_stages(counter))
    assert counter == {} and not (tmp_path / "runs").exists()


def test_a_synthetic_cohort_too_small_for_the_folds_is_refused_with_the_numbers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, synth={"n": 6}, models={"arms": ["clinical"], "cv_folds": 5})
    with pytest.raises(
        ConfigError,
        match=r"too small for the folds: synth\.n = 6 gives about 4 training .*cv_folds = 5 .*at least 4 .*each grade",
    ):
        run_study(cfg, stages=_stages({}))


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "fake"
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": "x", "started": "yesterday"}))
    result = run_study(_config(tmp_path), stages=_stages({}), lock_wait_s=0.1)
    assert set(_status(result.run_dir).values()) == {"ran"}


def test_the_lock_refuses_a_second_holder_in_process(tmp_path: Path) -> None:
    with run_lock(tmp_path), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"), run_lock(tmp_path, wait_s=0.2):
        pass
    with run_lock(tmp_path, wait_s=0.2):  # released
        pass


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_runner import _config, _stages, RUN_ORDER
    from rccgrade.study import run_study

    tmp = Path(sys.argv[1])

    class Waiting:
        name = "cohort"; description = "waits"; requires = (); version = "v1"
        def run(self, ctx, record):
            (tmp / "ready").write_text("")
            while not (tmp / "go").exists():
                time.sleep(0.05)

    stages = _stages({{}})
    stages["cohort"] = Waiting()
    run_study(_config(tmp), stages=stages)
    print("first study finished")
    """
)


def test_two_studies_on_one_folder_one_refuses_and_both_end_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    first = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        for _ in range(600):
            if (tmp_path / "ready").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert (tmp_path / "ready").exists(), first.communicate()
        # the second study: the real command line on the same run folder (same name and runs_dir)
        cfg = tmp_path / "study.yaml"
        cfg.write_text(f"name: fake\nruns_dir: {tmp_path / 'runs'}\nmodels: {{arms: [clinical]}}\n")
        second = subprocess.run(
            [sys.executable, "-m", "rccgrade.cli", "study", str(cfg)], env=env, text=True, capture_output=True,
            timeout=300,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        out = " ".join((second.stdout + second.stderr).split())
        assert f"pid {first.pid}" in out and "another study is running" in out and "started" in out
        assert "Traceback" not in second.stderr
    finally:
        (tmp_path / "go").write_text("")
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert "first study finished" in stdout and "Traceback" not in stderr
    assert set(_status(tmp_path / "runs" / "fake").values()) == {"ran"}


def test_a_renamed_command_module_fails_at_import() -> None:
    source = (SRC / "rccgrade" / "cli.py").read_text().replace('"rccgrade.study.cli"', '"rccgrade.study.renamed"')
    with pytest.raises(ModuleNotFoundError, match=r"rccgrade\.study\.renamed"):
        exec(compile(source, "cli.py", "exec"), {"__name__": "rccgrade_cli_copy"})


class FallbackDeepStage(CountingStage):
    """A stand-in deep stage that, like an offline ImageNet fallback, used other weights than configured."""

    def __init__(self, weights: str) -> None:
        super().__init__("deep")
        self.weights = weights

    def run(self, ctx: StudyContext, record: StageRecord) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(settings=SimpleNamespace(weights=self.weights), folder=ctx.run_dir)


@pytest.mark.parametrize("used", ["none", "imagenet"])
def test_config_yaml_says_when_the_deep_weights_used_differ_from_the_setting(tmp_path: Path, used: str) -> None:
    from rccgrade.config import load_config

    cfg = _config(tmp_path, deep={"weights": "imagenet"})
    result = run_study(cfg, stages={**_stages({}), "deep": FallbackDeepStage(used)})
    text = (result.run_dir / "config.yaml").read_text()
    prov = json.loads((result.run_dir / "provenance.json").read_text())
    assert prov["deep_weights_effective"] == used
    noted = "this run's deep features used weights: none" in text.replace("\n# ", " ")
    assert noted == (used == "none") and text.startswith("#") == (used == "none")
    # the note is a comment: the file still loads as the configuration that was asked for
    assert load_config(result.run_dir / "config.yaml").deep.weights == "imagenet"
