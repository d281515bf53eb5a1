"""The ResNet backbone, built with MONAI in torchvision's exact layout.

MONAI's ``ResNet`` with ``conv1_t_stride=2`` (torchvision's stem) and ``bias_downsample=False`` has the
same 320 state-dict entries, in the same order and with the same shapes, as torchvision's
``models.resnet50()``; so the ImageNet weights published for torchvision load with ``strict=True`` and
give the same outputs. We never import torchvision (its wheel does not match our CPU torch build).
MONAI's defaults (stride-1 stem, biased shortcuts) would be a different, 8× slower network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rccgrade.deep.settings import Arch

if TYPE_CHECKING:
    import torch
    from torch import nn

_ARCHS: dict[str, dict[str, list[int]]] = {
    "resnet50": {"layers": [3, 4, 6, 3], "block_inplanes": [64, 128, 256, 512]},
    # Test-only: the same bottleneck design with one block per stage and narrow widths.
    "resnet_tiny": {"layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128]},
}
_EXPANSION = 4  # bottleneck blocks expand their width 4×


def feature_dim(arch: Arch) -> int:
    """Length of the global-pooled feature vector of ``arch`` (2048 for ResNet50)."""
    return _ARCHS[arch]["block_inplanes"][-1] * _EXPANSION


def build_resnet(arch: Arch = "resnet50", num_classes: int = 1000) -> nn.Module:
    """A randomly initialised 2-D ResNet with torchvision's layout and a ``num_classes`` head.

    Initialisation draws from torch's global generator; wrap the call in ``torch.random.fork_rng`` with a
    seed (as :func:`rccgrade.deep.weights.load_backbone` does) for a reproducible network.

    Args:
        arch: ``resnet50`` or the test-only ``resnet_tiny``.
        num_classes: Outputs of the final linear layer ``fc`` (1000 = ImageNet's classes).

    Returns:
        A MONAI ``ResNet`` whose state-dict keys equal torchvision's ``resnet50()`` for ``resnet50``.
    """
    from monai.networks.nets import ResNet

    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; use one of {sorted(_ARCHS)}")
    spec = _ARCHS[arch]
    return ResNet(
        block="bottleneck",
        layers=spec["layers"],
        block_inplanes=spec["block_inplanes"],
        spatial_dims=2,
        n_input_channels=3,
        conv1_t_size=7,
        conv1_t_stride=2,
        no_max_pool=False,
        shortcut_type="B",
        widen_factor=1.0,
        num_classes=num_classes,
        feed_forward=True,
        bias_downsample=False,
    )


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled output of the last stage (the input of ``fc``), shape ``(N, feature_dim)``.

    Runs MONAI ResNet's own forward up to ``avgpool``, so features and logits come from the same graph.
    """
    x = model.conv1(x)
    x = model.bn1(x)
    x = model.act(x)
    if not model.no_max_pool:
        x = model.maxpool(x)
    x = model.layer1(x)
    x = model.layer2(x)
    x = model.layer3(x)
    x = model.layer4(x)
    x = model.avgpool(x)
    return x.flatten(1)


def replace_head(model: nn.Module, num_outputs: int = 1) -> nn.Module:
    """Swap the ImageNet ``fc`` layer for a fresh ``Linear(feature_dim, num_outputs)`` (in place)."""
    from torch import nn

    in_features = model.fc.in_features
    model.fc = nn.Linear(in_features, num_outputs)
    return model
