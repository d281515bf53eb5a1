"""The smallest study that still sends cohort validation, preprocessing and radiomics per case to workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def small_study_config(
    name: str,
    manifest: Path,
    runs_dir: Path,
    parallel: dict[str, Any],
    *,
    models: dict[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A study config dict: one radiomics arm on ``radiomics_demo`` features, no registration, stability or report.

    ``models`` entries override the models section; ``top`` adds top-level sections (e.g. ``cluster``).
    """
    return {
        "name": name,
        "seed": 3,
        "runs_dir": str(runs_dir),
        "cohort": {"manifest": str(manifest)},
        "parallel": parallel,
        **top,
        "preprocess": {"registration": {"enabled": False}, "rois": ["tumour"], "image_size": 32, "qc": False},
        "radiomics": {"params": str(ROOT / "configs" / "radiomics_demo.yaml"), "stability": {"enabled": False}},
        "models": {
            "arms": ["radiomics"],
            "cv_folds": 3,
            "nested_oof": False,
            "selection": {"lasso_cs": 4, "lasso_cv": 3},
            "param_grids": {"logistic": {"C": [1.0]}},
            **(models or {}),
        },
        "evaluation": {"roc_band_bootstrap": 0, "n_bootstrap": 100},
        "report": {"enabled": False},
    }
