"""Grad-CAM's folded head: the network's single logit equals the deep arm's own linear prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rccgrade.deep.cam import fold_linear_head
from rccgrade.deep.settings import DeepSettings
from rccgrade.deep.weights import load_backbone
from rccgrade.errors import FeatureError


def test_folded_head_reproduces_the_linear_model_on_pooled_features() -> None:
    settings = DeepSettings(arch="resnet_tiny", weights="none", input_size=32)
    model, _ = load_backbone(settings, seed=0)
    model.eval()
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.random((3, 3, 32, 32)), dtype=torch.float32)
    with torch.no_grad():
        fc = model.fc
        model.fc = torch.nn.Identity()
        pooled = model(x).numpy().astype(np.float64)
        model.fc = fc
    dim = pooled.shape[1]
    idx = [dim - 1, 3, 0]
    coef = np.array([0.7, -1.3, 0.25])
    mean = pooled[:, idx].mean(axis=0) + 0.1
    scale = np.array([0.5, 2.0, 1.5])
    intercept = -0.4
    expected = intercept + ((pooled[:, idx] - mean) / scale) @ coef  # the arm's logit, computed directly
    folded = fold_linear_head(model, idx, coef, mean, scale, intercept)
    with torch.no_grad():
        got = folded(x).numpy().ravel()
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_bad_inputs_are_refused() -> None:
    model, _ = load_backbone(DeepSettings(arch="resnet_tiny", weights="none", input_size=32), seed=0)
    dim = model.fc.in_features
    with pytest.raises(FeatureError, match="outside"):
        fold_linear_head(model, [dim], [1.0], [0.0], [1.0], 0.0)
    with pytest.raises(FeatureError, match="positive"):
        fold_linear_head(model, [0], [1.0], [0.0], [0.0], 0.0)
    with pytest.raises(FeatureError, match="length"):
        fold_linear_head(model, [0, 1], [1.0], [0.0], [1.0], 0.0)
