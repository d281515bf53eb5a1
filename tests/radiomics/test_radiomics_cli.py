"""``rccgrade radiomics`` on a preprocessing-style folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from radiomics_helpers import write_cases
from typer.testing import CliRunner

from rccgrade.radiomics.cli import radiomics_command

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(radiomics_command)
    return app


def test_cli_writes_tables_and_reports_failures(tmp_path: Path, fast_params: Path) -> None:
    write_cases(tmp_path / "pre" / "registered", 3)
    (tmp_path / "pre" / "registered" / "P002" / "mask.nii.gz").unlink()
    out = tmp_path / "rad"
    args = [str(tmp_path / "pre"), "--out", str(out), "--params", str(fast_params), "-j", "1", "--perturbations", "2"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 1, res.output
    assert "P002" in res.output
    features = pd.read_parquet(out / "features.parquet")
    assert list(features.index) == ["P000", "P001"]
    stability = pd.read_csv(out / "stability.csv")
    assert {"feature", "icc3_1", "icc2_1", "stable"} <= set(stability.columns)
    assert pd.read_csv(out / "failures.csv")["patient_id"].tolist() == ["P002"]


def test_cli_rejects_unknown_phase(tmp_path: Path) -> None:
    from rccgrade.errors import ConfigError

    with pytest.raises(ConfigError, match="venous"):
        CliRunner().invoke(_app(), [str(tmp_path), "--phase", "venous"], catch_exceptions=False)


def test_cli_rings_and_kinetic(tmp_path: Path, fast_params: Path) -> None:
    write_cases(tmp_path / "pre" / "registered", 2)
    out = tmp_path / "rad"
    args = [str(tmp_path / "pre"), "--out", str(out), "--params", str(fast_params), "-j", "1", "--no-stability"]
    args += ["--phase", "arterial", "--phase", "nephrographic", "--ring", "0.3", "--ring", "4", "--kinetic"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    features = pd.read_parquet(out / "features.parquet")
    assert "rad:nephrographic@ring4mm:original_firstorder_Mean" in features.columns
    assert "kin:tumour_mean_nephrographic_minus_arterial" in features.columns
    assert "ring left missing" in res.output and "arterial@ring0.3mm" in res.output
    assert len(pd.read_csv(out / "regions_missing.csv")) == 4
