"""The study with every registered phase, rings and kinetic features: the columns and the `kinetic` source flow
through to the models (the per-item cache rules are tested in test_multiphase.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from rccgrade.config import config_from_dict
from rccgrade.errors import ConfigError
from rccgrade.features.table import load_table
from rccgrade.study import run_study

ROOT = Path(__file__).resolve().parents[2]
PHASES = ["arterial", "nephrographic", "excretory"]

EXTENDED: dict[str, Any] = {
    "name": "ext",
    "seed": 1,
    "synth": {"n": 16, "seed": 7, "size": "small"},
    "parallel": {"backend": "serial"},
    "preprocess": {"registration": {"enabled": False}, "rois": ["tumour"], "image_size": 32, "qc": False},
    "radiomics": {
        "params": str(ROOT / "configs" / "radiomics_demo.yaml"),
        "phases": PHASES,
        "rings_mm": [2, 10],
        "kinetic": {"enabled": True},
        "stability": {"enabled": False},
    },
    "models": {
        "arms": ["clinical", "radiomics", "kinetic", "combined", "stacked"],
        "combined_sources": ["clinical", "radiomics", "kinetic"],
        "cv_folds": 3,
        "nested_oof": False,
        "selection": {"lasso_cs": 4, "lasso_cv": 3},
    },
    "evaluation": {"roc_band_bootstrap": 0},
    "report": {"enabled": False},
}


def _config(runs_dir: Path, **radiomics: Any) -> Any:
    data = json.loads(json.dumps(EXTENDED))
    data["radiomics"].update(radiomics)
    data["runs_dir"] = str(runs_dir)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    runs = tmp_path_factory.mktemp("runs_ext")
    return run_study(_config(runs)), runs


def test_every_phase_ring_and_kinetic_column_reaches_the_models(run: tuple[Any, Path]) -> None:
    result, _ = run
    folder = next((result.run_dir / "cache").glob("radiomics-*"))
    table, settings = load_table(folder / "features.parquet")
    assert len(table) == 16
    for phase in PHASES:
        assert f"rad:{phase}:original_firstorder_Mean" in table.columns
        assert f"rad:{phase}@ring10mm:original_firstorder_Mean" in table.columns
    assert settings["rings_mm"] == [2.0, 10.0] and settings["kinetic"]["enabled"]
    # the 2 mm ring is thinner than the small images' ≈4 mm voxels: missing, listed, the patients kept
    assert not any("@ring2mm" in c for c in table.columns)
    missing = pd.read_csv(folder / "regions_missing.csv")
    assert set(missing["phase"]) == {f"{p}@ring2mm" for p in PHASES} and len(missing) == 16 * 3
    assert any("ring2mm" in w for w in result.warnings)
    kin = [c for c in table.columns if c.startswith("kin:")]
    assert "kin:tumour_mean_nephrographic_minus_arterial" in kin
    assert "kin:original_glcm_Contrast_excretory_minus_arterial" in kin
    # the synthetic tumours wash out between the arterial and the excretory phase
    assert (table["kin:tumour_p50_excretory_minus_arterial"] < 0).mean() > 0.5

    models = json.loads((next((result.run_dir / "cache").glob("models-*")) / "models.json").read_text())
    assert set(models["arms"]) == {"clinical", "radiomics", "kinetic", "combined", "stacked"}
    assert models["n_candidates"]["kinetic"] == len(kin)
    assert models["n_candidates"]["radiomics"] == sum(c.startswith("rad:") for c in table.columns)
    assert models["n_candidates"]["combined"] > models["n_candidates"]["radiomics"] + len(kin)
    bundle = json.loads((result.run_dir / "bundles" / "kinetic" / "bundle.json").read_text())
    assert bundle["arm"] == "kinetic"
    pred = pd.read_csv(result.run_dir / "predictions.csv")
    assert pred["kinetic"].between(0, 1).all()


def test_kinetic_arm_without_kinetic_features_is_refused(tmp_path: Path) -> None:
    from rccgrade.study.preflight import check_config

    with pytest.raises(ConfigError, match=r"kinetic\.enabled"):
        check_config(_config(tmp_path, kinetic={"enabled": False}))
