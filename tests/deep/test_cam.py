"""Grad-CAM: MONAI's map equals a naive Grad-CAM written here; the PNG shows three phases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rccgrade.deep.backbone import build_resnet, replace_head
from rccgrade.deep.cam import gradcam_figure, gradcam_map
from rccgrade.errors import FeatureError


def _naive_gradcam(model: torch.nn.Module, x: torch.Tensor, class_idx: int) -> np.ndarray:
    store: dict[str, torch.Tensor] = {}

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        store["a"] = out

    handle = model.layer4.register_forward_hook(hook)
    try:
        logits = model(x)
        logits[0, class_idx].backward()
    finally:
        handle.remove()
    acts, grads = store["a"], store["a"].grad
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].detach().numpy()
    return (cam - cam.min()) / (cam.max() - cam.min())


@pytest.mark.parametrize("outputs", [1, 1000])
def test_gradcam_matches_naive_implementation(outputs: int) -> None:
    torch.manual_seed(0)
    model = build_resnet("resnet_tiny")
    if outputs == 1:
        replace_head(model, 1)
    model.eval()
    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 64), dtype=np.float32)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    heat, score = gradcam_map(model, image, mean=mean, std=std)
    x = (torch.as_tensor(image[None]) - 0.5) / 0.25
    with torch.no_grad():
        logits = model(x)
    idx = int(logits.argmax(1)[0])
    ref = _naive_gradcam(model, x.clone().requires_grad_(True), idx)
    assert np.isfinite(ref).all() and ref.max() == 1.0  # a non-degenerate map, so the comparison means something
    assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_allclose(heat, ref, atol=1e-4)
    expected = torch.sigmoid(logits[0, 0]) if outputs == 1 else torch.softmax(logits, 1)[0, idx]
    assert score == pytest.approx(float(expected), rel=1e-5)


def test_gradcam_figure_writes_png_with_three_phases(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = replace_head(build_resnet("resnet_tiny"), 1).eval()
    image = np.zeros((3, 48, 48), dtype=np.float32)
    image[0, 10:30, 10:30], image[1, 12:32, 12:32], image[2, 14:34, 14:34] = 0.9, 0.6, 0.3
    out = gradcam_figure(model, image, tmp_path / "cam" / "p001.png", input_size=64, title="p001 · box")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(FeatureError, match=r"\(3, H, W\)"):
        gradcam_map(model, np.zeros((2, 48, 48), dtype=np.float32))
