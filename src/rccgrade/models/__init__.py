"""rccgrade.models: arms (clinical / radiomics / deep / combined / stacked), tuning, split, bundles, predict.

The public names are imported lazily so that reading the configuration (which imports
:mod:`rccgrade.models.settings`) does not load scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ArmsResult": "rccgrade.models.arms",
    "StackedClassifier": "rccgrade.models.arms",
    "build_arm": "rccgrade.models.arms",
    "clinical_table": "rccgrade.models.arms",
    "describe_model": "rccgrade.models.arms",
    "fit_arms": "rccgrade.models.arms",
    "predict_arms": "rccgrade.models.arms",
    "choose_threshold": "rccgrade.models.arms",
    "make_classifier": "rccgrade.models.classifiers",
    "make_split": "rccgrade.models.split",
    "read_split": "rccgrade.models.split",
    "repeated_cv_oof": "rccgrade.models.split",
    "write_split": "rccgrade.models.split",
    "ModelBundle": "rccgrade.models.bundle",
    "bundle_from_arms": "rccgrade.models.bundle",
    "load_bundle": "rccgrade.models.bundle",
    "save_bundle": "rccgrade.models.bundle",
    "study_feature_settings": "rccgrade.models.bundle",
    "compute_features_for_bundle": "rccgrade.models.predict_manifest",
    "predict_manifest": "rccgrade.models.predict_manifest",
    "predict_bundle": "rccgrade.models.predict",
    "ModelSettings": "rccgrade.models.settings",
    "SelectionSettings": "rccgrade.models.settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rccgrade.models' has no attribute {name!r}")
