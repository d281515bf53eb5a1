"""CUDA determinism measures that are testable on the CPU (the measurements themselves: bench/deep_gpu.py).

* Fixed-shape forwards: with ``fixed_shape`` every forward gets ``batch_size`` images (the last batch padded with
  blank images) and the padding never reaches the output; the features equal unpadded ones.
* ``torch_runtime`` switches TF32 off for the stage and restores torch's flags afterwards.
* On CUDA with ``deterministic`` the automatic batch is capped at ``CUDA_DETERMINISTIC_BATCH`` whatever the free
  memory (free memory is faked: no GPU is needed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rccgrade.deep import data as deep_data
from rccgrade.deep.data import CUDA_DETERMINISTIC_BATCH, resolve_batch_size, torch_runtime
from rccgrade.deep.embed import embed_slices
from rccgrade.deep.settings import DeepSettings
from rccgrade.deep.weights import load_backbone

from .synthetic import fast_settings, random_slices

CPU = torch.device("cpu")


def test_fixed_shape_pads_every_forward_and_drops_the_padding() -> None:
    settings = fast_settings(rois=["box"], arch="resnet_tiny")
    model, info = load_backbone(settings, seed=0)
    x = np.stack([a[0] for a in random_slices(7, size=32).values()])
    shapes: list[int] = []
    hook = model.conv1.register_forward_pre_hook(lambda _m, inp: shapes.append(int(inp[0].shape[0])))
    got, _ = embed_slices(
        model, x, mean=info.mean, std=info.std, settings=settings, device=CPU, batch_size=4, fixed_shape=True
    )
    hook.remove()
    assert shapes == [4, 4]  # 7 images: a full batch and a padded one
    plain, _ = embed_slices(
        model, x, mean=info.mean, std=info.std, settings=settings, device=CPU, batch_size=4, fixed_shape=False
    )
    assert got.shape == (7, plain.shape[1])
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-6)


def test_cpu_forwards_are_not_padded_by_default() -> None:
    settings = fast_settings(rois=["box"], arch="resnet_tiny")
    model, info = load_backbone(settings, seed=0)
    x = np.stack([a[0] for a in random_slices(5, size=32).values()])
    shapes: list[int] = []
    hook = model.conv1.register_forward_pre_hook(lambda _m, inp: shapes.append(int(inp[0].shape[0])))
    embed_slices(model, x, mean=info.mean, std=info.std, settings=settings, device=CPU, batch_size=4)
    hook.remove()
    assert shapes == [4, 1]


def test_torch_runtime_switches_tf32_off_and_restores_it() -> None:
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    try:
        with torch_runtime(DeepSettings(weights="none")):
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize(("deterministic", "expected"), [(True, CUDA_DETERMINISTIC_BATCH), (False, 512)])
def test_cuda_batch_is_capped_when_deterministic(
    monkeypatch: pytest.MonkeyPatch, deterministic: bool, expected: int
) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device=None: (140 * 2**30, 141 * 2**30))
    settings = DeepSettings(weights="none", deterministic=deterministic)
    assert resolve_batch_size(settings, torch.device("cuda")) == expected
    # little free memory: the memory bound wins in both modes
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device=None: (2**30, 141 * 2**30))
    small = deep_data.batch_size_from_memory(2**30, deep_data.per_image_bytes(settings.arch, settings.input_size, 2))
    assert small < CUDA_DETERMINISTIC_BATCH
    assert resolve_batch_size(settings, torch.device("cuda")) == small
