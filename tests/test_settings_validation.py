"""Settings reject what they cannot use at validation time: unknown parallel keys, unusable params files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rccgrade.config import config_from_dict, load_config
from rccgrade.errors import ConfigError
from rccgrade.parallel import ParallelSettings
from rccgrade.radiomics.settings import RadiomicsSettings


def test_parallel_unknown_key_is_an_error() -> None:
    with pytest.raises(ValidationError, match="worker"):
        ParallelSettings.model_validate({"worker": 4})
    with pytest.raises(ConfigError, match=r"parallel\.worker"):
        config_from_dict({"parallel": {"worker": 4}})
    assert config_from_dict({"parallel": {"workers": 4}}).parallel.workers == 4


def test_unknown_params_name_is_rejected_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="unknown PyRadiomics parameter set 'ct_defualt'"):
        RadiomicsSettings(params="ct_defualt")
    with pytest.raises(ConfigError, match="ct_defualt"):
        config_from_dict({"radiomics": {"params": "ct_defualt"}})
    assert RadiomicsSettings(params="ibsi").params == "ibsi"


def test_missing_or_invalid_params_file_is_rejected_when_the_config_is_read(tmp_path: Path) -> None:
    cfg = tmp_path / "study.yaml"
    cfg.write_text("radiomics:\n  params: my_params.yaml\n")
    with pytest.raises(ConfigError) as missing:
        load_config(cfg)
    assert str(tmp_path / "my_params.yaml") in str(missing.value)

    (tmp_path / "my_params.yaml").write_text("setting:\n  binWidht: 25\n")  # a typo PyRadiomics' schema refuses
    with pytest.raises(ConfigError, match="binWidht") as bad:
        load_config(cfg)
    assert "my_params.yaml" in str(bad.value)

    (tmp_path / "my_params.yaml").write_text("setting:\n  binWidth: 25\n")
    assert load_config(cfg).radiomics.params == str(tmp_path / "my_params.yaml")


def test_absolute_params_path_is_checked_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not found"):
        RadiomicsSettings(params=str(tmp_path / "absent.yaml"))


def _flat(text: str) -> str:
    return "".join(text.split())  # Rich wraps long lines, even inside a path


def test_cli_config_and_params_errors_show_the_file(tmp_path: Path) -> None:
    """Errors start with "[file …]": printed with markup escaped, the file survives on the command line."""
    from typer.testing import CliRunner

    from rccgrade.cli import app

    missing = tmp_path / "no_such_config.yaml"
    result = CliRunner().invoke(
        app, ["preprocess", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--config", str(missing)]
    )
    assert result.exit_code == 2
    assert _flat(f"[file {missing}]") in _flat(result.stderr) and "Traceback" not in result.output

    params = tmp_path / "bad_params.yaml"
    params.write_text("setting:\n  binWidht: 25\n")
    source = tmp_path / "pre"
    (source / "registered").mkdir(parents=True)
    result = CliRunner().invoke(app, ["radiomics", str(source), "--params", str(params), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    err = _flat(result.stderr)
    assert _flat(str(params)) in err and "binWidht" in err and "Traceback" not in result.output
