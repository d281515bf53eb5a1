"""GPU readiness without a GPU: CPU features unchanged by AMP, the autocast path itself, batch size from memory.

* On the CPU (``amp: auto``) features are bitwise those of a plain float32 forward, and the frozen-feature cache
  key is the one rccgrade used before AMP existed (stored below), so existing caches stay valid.
* The autocast path runs on the CPU (``torch.autocast(device_type="cpu", ...)``). Measured tolerances, stated
  honestly: float16 features agree with float32 to 1e-3 (relative, and absolute relative to the largest feature);
  bfloat16 does **not** (≈ 5e-3 median relative, up to ≈ 1e-2 of the largest feature), so for bf16 the test
  checks what holds: ≤ 2e-2 of the largest feature and cosine similarity ≥ 0.9999 per image.
* The CUDA batch size is a pure function of free and per-image bytes; the per-image bound is checked against the
  activation sizes of a real forward pass (hooks), an independent count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rccgrade.deep.backbone import pooled_features
from rccgrade.deep.data import (
    autocast_dtype,
    batch_size_from_memory,
    per_image_bytes,
    prepare_batch,
    resolve_batch_size,
)
from rccgrade.deep.embed import embed_slices
from rccgrade.deep.features import extract_deep_features
from rccgrade.deep.settings import DeepSettings
from rccgrade.deep.weights import load_backbone

from .synthetic import fast_settings, random_slices

CPU = torch.device("cpu")
# Cache folder and features of fast_settings(rois=["box"], arch="resnet_tiny") on random_slices(2, size=32),
# recorded with rccgrade before the AMP code was added (commit 3929273).
REFERENCE_KEY = "frozen-2c6ba9d96f9e9e58"
REFERENCE_P000 = [
    float.fromhex(h)
    for h in (
        "0x1.0e3c940000000p-5",
        "0x1.208c9a0000000p-3",
        "0x1.3385f80000000p-7",
        "0x1.df511c0000000p-7",
        "0x1.74b3020000000p-3",
        "0x1.0e00d40000000p-4",
    )
]
REFERENCE_SUM = 71.63286052737385


def _features(settings: DeepSettings, size: int = 64, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(features through embed_slices with ``settings``, features of a naive float32 forward of the same model)."""
    model, info = load_backbone(settings, seed=0)
    x = np.stack([a[0] for a in random_slices(n, size=size).values()])
    got, _ = embed_slices(model, x, mean=info.mean, std=info.std, settings=settings, device=CPU, batch_size=8)
    with torch.no_grad():
        model.eval()
        t = prepare_batch(x, info.mean, info.std, settings.input_size, CPU, channels_last=settings.channels_last)
        naive = pooled_features(model, t).numpy()
    return got, naive


def test_cpu_features_are_plain_float32_and_the_cache_key_is_unchanged(tmp_path: Path) -> None:
    settings = fast_settings(rois=["box"], arch="resnet_tiny")
    assert settings.amp == "auto" and autocast_dtype(settings, CPU) is None
    got, naive = _features(settings)
    np.testing.assert_array_equal(got, naive)  # bitwise: no autocast on the CPU by default
    result = extract_deep_features({"box": random_slices(2, size=32)}, settings, seed=0, cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "deep" / "box").iterdir()] == [REFERENCE_KEY]
    table = result.table.to_numpy()
    np.testing.assert_allclose(table[0, :6], REFERENCE_P000, rtol=1e-5)  # kernels may differ across CPUs
    assert table.astype(np.float64).sum() == pytest.approx(REFERENCE_SUM, rel=1e-5)
    assert result.metadata["precision"] == "float32"


def test_float16_autocast_agrees_with_float32_to_1e_3() -> None:
    settings = fast_settings(arch="resnet_tiny", amp="fp16")
    assert autocast_dtype(settings, CPU) == torch.float16
    got, naive = _features(settings)
    assert got.dtype == np.float32
    assert not np.array_equal(got, naive)  # the reduced-precision path really ran
    scale = np.abs(naive).max()
    np.testing.assert_allclose(got, naive, rtol=1e-3, atol=1e-3 * scale)


def test_bfloat16_autocast_is_close_but_not_1e_3() -> None:
    settings = fast_settings(arch="resnet_tiny", amp="bf16")
    assert autocast_dtype(settings, CPU) == torch.bfloat16
    got, naive = _features(settings)
    diff = np.abs(got - naive)
    scale = np.abs(naive).max()
    assert diff.max() > 0  # autocast ran
    assert diff.max() <= 2e-2 * scale  # measured ≈ 6e-3 (resnet_tiny) to 1e-2 (ResNet50) of the largest feature
    cos = (got * naive).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(naive, axis=1)
    assert cos.min() >= 0.9999  # measured 1 − 1.2e-5


def test_cuda_defaults_to_float16_and_amp_off_keeps_float32() -> None:
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert autocast_dtype(DeepSettings(), cuda) == torch.float16
    assert autocast_dtype(DeepSettings(amp="off"), cuda) is None
    assert autocast_dtype(DeepSettings(amp="bf16"), cuda) == torch.bfloat16


def test_batch_size_from_free_memory() -> None:
    mb = 2**20
    assert batch_size_from_memory(1000 * mb, 10 * mb) == 80  # 20% reserve
    assert batch_size_from_memory(1000 * mb, 10 * mb, reserve=0.0) == 100
    assert batch_size_from_memory(1000 * mb - 1, 10 * mb, reserve=0.0) == 99  # floor, never rounds up
    assert batch_size_from_memory(5 * mb, 10 * mb) == 1  # at least one image (the forward halves on OOM)
    assert batch_size_from_memory(0, 10 * mb) == 1
    assert batch_size_from_memory(10**15, 10 * mb) == 512  # capped
    with pytest.raises(ValueError, match="positive"):
        batch_size_from_memory(1000, 0)
    with pytest.raises(ValueError, match="reserve"):
        batch_size_from_memory(1000, 10, reserve=1.0)


def test_per_image_bytes_bounds_the_real_activations() -> None:
    """The bound is ≥ the summed output sizes of every layer of a real forward, and within 2× of it."""
    for arch, size in (("resnet_tiny", 64), ("resnet50", 64)):
        settings = fast_settings(arch=arch, input_size=size)
        model, _ = load_backbone(settings, seed=0)
        model.eval()
        counted = [0]

        def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor, counted: list[int] = counted) -> None:
            counted[0] += out.numel()

        leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, torch.nn.Linear)]
        handles = [m.register_forward_hook(hook) for m in leaves]
        with torch.no_grad():
            pooled_features(model, torch.zeros(1, 3, size, size))
        for h in handles:
            h.remove()
        real = counted[0] * 4
        bound = per_image_bytes(arch, size, 4)
        assert real <= bound <= 2 * real, (arch, real, bound)
        assert per_image_bytes(arch, size, 2) * 2 == pytest.approx(bound, abs=2)


def test_cuda_batch_size_uses_mem_get_info(monkeypatch: pytest.MonkeyPatch) -> None:
    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 16 * 2**30))
    settings = DeepSettings(batch_size=0, input_size=224)
    expected = batch_size_from_memory(free, per_image_bytes("resnet50", 224, 2))
    assert resolve_batch_size(settings, torch.device("cuda")) == expected
    assert 1 < expected < 512
    assert resolve_batch_size(DeepSettings(batch_size=0, amp="off"), torch.device("cuda")) == batch_size_from_memory(
        free, per_image_bytes("resnet50", 224, 4)
    )
    assert resolve_batch_size(DeepSettings(batch_size=7), torch.device("cuda")) == 7  # an explicit size wins
