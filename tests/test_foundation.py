"""Package-level checks: version, CLI entry point, config validation, executor and feature tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rccgrade
from rccgrade.cli import app
from rccgrade.config import config_from_dict, load_config
from rccgrade.errors import ConfigError, FeatureError, RccgradeError
from rccgrade.features.table import join_tables, load_table, save_table
from rccgrade.parallel import ParallelSettings, run_cases


def test_version_and_help() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0
    assert rccgrade.__version__ in out.stdout
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    assert "ISUP" in out.stdout


def test_config_rejects_unknown_keys(tmp_path) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text("name: x\nseeed: 3\n")
    with pytest.raises(ConfigError, match="seeed"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    cfg = config_from_dict({"name": "x", "cohort": {"manifest": "m.csv"}}, base_dir=tmp_path)
    assert cfg.cohort.manifest == (tmp_path / "m.csv").resolve()


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise RccgradeError("bad case", patient_id="p3")
    if x == 4:
        raise ValueError("boom")
    return x * x


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_run_cases_keeps_order_and_isolates_failures(backend: str) -> None:
    items = list(range(6))
    outcomes = run_cases(
        _square_or_fail, items, keys=[f"p{i}" for i in items], settings=ParallelSettings(backend=backend, workers=2)
    )
    assert [o.key for o in outcomes] == [f"p{i}" for i in items]
    assert [o.value for o in outcomes if o.ok] == [0, 1, 4, 25]
    failed = {o.key: o.error for o in outcomes if not o.ok}
    assert set(failed) == {"p3", "p4"}
    assert "patient p3" in failed["p3"]
    assert "ValueError" in failed["p4"]


def test_feature_table_roundtrip_and_contract(tmp_path) -> None:
    idx = pd.Index(["a", "b"], name="patient_id")
    rad = pd.DataFrame({"rad:arterial:x": [1.0, 2.0]}, index=idx)
    clin = pd.DataFrame({"clin:age": [50.0, np.nan]}, index=idx)
    joined = join_tables(rad, clin)
    path = save_table(joined, tmp_path / "t.parquet", settings={"binWidth": 25})
    back, settings = load_table(path)
    pd.testing.assert_frame_equal(back, joined)
    assert settings == {"binWidth": 25}
    with pytest.raises(FeatureError):
        join_tables(rad, rad)
    with pytest.raises(FeatureError):
        save_table(pd.DataFrame({"x": [1]}, index=pd.Index(["a"], name="patient_id")), tmp_path / "bad.parquet")
