"""Fixtures of the deep-stage tests (helpers that build data live in synthetic.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def resnet50_state_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A full ResNet50 state dict (random, seeded, non-trivial BN statistics) saved with torch.save (~100 MB)."""
    import torch

    from rccgrade.deep.backbone import build_resnet

    torch.manual_seed(123)
    model = build_resnet("resnet50")
    state = model.state_dict()
    gen = torch.Generator().manual_seed(7)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(0.1 * torch.randn(value.shape, generator=gen))
        elif key.endswith("running_var"):
            value.copy_(0.5 + torch.rand(value.shape, generator=gen))
    path = tmp_path_factory.mktemp("weights") / "resnet50_random.pth"
    torch.save(state, path)
    return path, {k: v.clone() for k, v in state.items()}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """One torch thread: the test machine's 2 cores are shared, and spinning thread pools are much slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
