"""The network sees ImageNet-normalised images (issue 18): features = pooled_features(model, (x/255 − mean)/std).

The expected features are computed here, with ImageNet's published statistics written out, from a known
8-bit image. Inputs normalised with other statistics (none, or the ``unit`` ones) give different features,
so a pipeline that drops or changes the normalisation fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rccgrade.deep.backbone import build_resnet, pooled_features
from rccgrade.deep.features import extract_deep_features

from .synthetic import fast_settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics (RGB, images in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE = 32


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A seeded resnet_tiny state dict with non-trivial batch-norm statistics, saved as a local .pth."""
    torch.manual_seed(5)
    model = build_resnet("resnet_tiny")
    state = model.state_dict()
    gen = torch.Generator().manual_seed(9)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(0.2 * torch.randn(value.shape, generator=gen))
        elif key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=gen))
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    torch.save(state, path)
    return path, state


def _known_image() -> np.ndarray:
    """An 8-bit image (3, 32, 32) with a different pattern per channel."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    channels = [(8 * xx) % 256, (8 * yy) % 256, (4 * (xx + yy) + 17) % 256]
    return np.stack(channels).astype(np.uint8)


def _reference_features(state: dict[str, torch.Tensor], x: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    model = build_resnet("resnet_tiny")
    model.load_state_dict(state)
    model.eval()
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        return pooled_features(model, (torch.from_numpy(x) - m) / s).numpy()


def test_features_are_those_of_the_imagenet_normalised_image(tiny_weights: tuple[Path, dict]) -> None:
    path, state = tiny_weights
    img = _known_image()
    x = (img.astype(np.float32) / 255.0)[None]  # (1, 3, H, W) in [0, 1], the stage's input contract
    settings = fast_settings(arch="resnet_tiny", weights=str(path), input_size=SIZE)  # no resize
    result = extract_deep_features({"box": {"p": x}}, settings)
    assert result.metadata["weights"]["normalization"] == "imagenet"  # auto: a local state dict is ImageNet's
    got = result.table.loc["p"].to_numpy(dtype=np.float64)

    expected = _reference_features(state, x, IMAGENET_MEAN, IMAGENET_STD)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    for wrong_mean, wrong_std in (((0.0,) * 3, (1.0,) * 3), ((0.5,) * 3, (0.5,) * 3), (IMAGENET_STD, IMAGENET_MEAN)):
        other = _reference_features(state, x, wrong_mean, wrong_std)[0]
        assert not np.allclose(other, expected, rtol=1e-3, atol=1e-4)  # the check tells the inputs apart
        assert not np.allclose(got, other, rtol=1e-3, atol=1e-4), (wrong_mean, wrong_std)


def test_explicit_unit_normalisation_is_applied(tiny_weights: tuple[Path, dict]) -> None:
    path, state = tiny_weights
    x = (_known_image().astype(np.float32) / 255.0)[None]
    settings = fast_settings(arch="resnet_tiny", weights=str(path), input_size=SIZE, normalization="unit")
    got = extract_deep_features({"box": {"p": x}}, settings).table.loc["p"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(got, _reference_features(state, x, (0.5,) * 3, (0.5,) * 3)[0], rtol=1e-4, atol=1e-5)
