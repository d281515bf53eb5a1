"""Deep features: ResNet50 (torchvision layout, built with MONAI) on the three phases stacked as channels.

Public API (names resolve lazily, so importing :mod:`rccgrade.deep.settings` — as the study config does —
stays cheap; torch and MONAI are imported inside the functions that need them):

* :func:`extract_deep_features` → :class:`DeepResult` — the stage (frozen or leakage-free fine-tuned).
* :class:`CNNFineTuner` — scikit-learn-style classifier over patients' slice stacks.
* :func:`build_resnet`, :func:`load_backbone`, :func:`load_state_dict_file`, :func:`fetch_weights`.
* :func:`gradcam_figure` — Grad-CAM overlaid on the three phases (PNG).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "build_resnet": "backbone",
    "feature_dim": "backbone",
    "pooled_features": "backbone",
    "replace_head": "backbone",
    "gradcam_figure": "cam",
    "gradcam_map": "cam",
    "DeepResult": "features",
    "embed_slices": "features",
    "extract_deep_features": "features",
    "feature_columns": "features",
    "CNNFineTuner": "finetune",
    "finetune_roi": "finetune",
    "load_finetuned": "finetune",
    "DeepSettings": "settings",
    "IMAGENET_MEAN": "weights",
    "IMAGENET_STD": "weights",
    "IMAGENET_WEIGHTS": "weights",
    "WeightsInfo": "weights",
    "fetch_weights": "weights",
    "load_backbone": "weights",
    "load_state_dict_file": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rccgrade.deep.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rccgrade.deep' has no attribute {name!r}")
