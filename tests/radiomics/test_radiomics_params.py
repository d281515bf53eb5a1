"""Parameter files: shipped ones valid and as documented; user files validated by PyRadiomics' schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rccgrade.config import StudyConfig
from rccgrade.errors import ConfigError
from rccgrade.radiomics.params import load_params, validate_params
from rccgrade.radiomics.settings import RadiomicsSettings

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def test_ct_default_is_what_the_issue_specifies() -> None:
    p = load_params("ct_default")
    s = p["setting"]
    assert s["resampledPixelSpacing"] == [1.0, 1.0, 1.0]
    assert s["interpolator"] == "sitkBSpline" and s["binWidth"] == 25 and s["preCrop"] is True
    assert p["imageType"]["LoG"]["sigma"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert set(p["imageType"]) == {"Original", "LoG", "Wavelet"}
    assert set(p["featureClass"]) == {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}


def test_ibsi_has_no_resampling_and_bin_width_one() -> None:
    s = load_params("ibsi")["setting"]
    assert "resampledPixelSpacing" not in s and s["binWidth"] == 1 and s["gldm_a"] == 0 and s["distances"] == [1]


def test_user_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"imageType": {"Original": {}}, "setting": {"binCount": 32}}))
    assert load_params(path)["setting"]["binCount"] == 32


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"setting": {"binWidht": 25}}, "binWidht"),
        ({"setting": {"binWidth": -1}}, "binWidth"),
        ({"imageType": {"Gabor": {}}}, "Gabor"),
        ({"featureClass": {"glcmm": None}}, "glcmm"),
        ({"setting": {"interpolator": "sitkCubic"}}, "sitkCubic"),
    ],
)
def test_invalid_user_file_names_file_and_problem(tmp_path: Path, content: dict, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert fragment in str(info.value) and "bad.yaml" in str(info.value)


def test_missing_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(path)
    with pytest.raises(ConfigError):
        validate_params({"setting": "x"})


def test_settings_defaults_and_validation() -> None:
    s = StudyConfig().radiomics
    assert s.params == "ct_default" and s.phases == ["arterial"] and s.stability.threshold == 0.75
    with pytest.raises(ValueError):
        RadiomicsSettings(phases=["venous"])
    with pytest.raises(ValueError):
        RadiomicsSettings(unknown=1)
