"""The MONAI-built backbone is torchvision's ResNet50: same state-dict layout and the same function."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rccgrade.deep.backbone import build_resnet, feature_dim, pooled_features, replace_head


def test_state_dict_equals_torchvision_layout_key_for_key(reference_file: Callable[..., Path]) -> None:
    ref = json.loads(reference_file("deep", "torchvision_resnet50_state_dict.json").read_text())
    expected = [(name, list(shape), dtype) for name, shape, dtype in ref["keys"]]
    got = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in build_resnet("resnet50").state_dict().items()
    ]
    assert len(expected) == ref["n_keys"] == 320
    assert got == expected  # names, shapes, dtypes, in order


def _torchvision_resnet50_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Naive functional re-implementation of torchvision's resnet50 (v1.5: stride on the 3×3 conv), eval mode."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-5
        )

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, (blocks, stride) in enumerate(zip([3, 4, 6, 3], [1, 2, 2, 2], strict=True), start=1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            s = stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=s, padding=1), f"{p}.bn2"))
            out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            identity = x
            if f"{p}.downsample.0.weight" in sd:
                identity = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1")
            x = F.relu(out + identity)
    return F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


def test_forward_matches_torchvision_definition(resnet50_state_file: tuple[Path, dict[str, torch.Tensor]]) -> None:
    _, state = resnet50_state_file
    model = build_resnet("resnet50")
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got = model(x)
        ref = _torchvision_resnet50_forward(state, x)
        pooled = pooled_features(model, x)
        head = model.fc(pooled)
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(head, got, rtol=1e-5, atol=1e-5)
    assert pooled.shape == (2, feature_dim("resnet50")) == (2, 2048)


def test_tiny_arch_and_head_replacement() -> None:
    model = replace_head(build_resnet("resnet_tiny"), 1).eval()
    with torch.inference_mode():
        out = model(torch.rand(3, 3, 32, 32))
        feats = pooled_features(model, torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 1)
    assert feats.shape == (3, feature_dim("resnet_tiny")) == (3, 512)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_resnet("resnet51")  # type: ignore[arg-type]
