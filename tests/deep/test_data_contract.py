"""Contract of deep.data, each function against a computation written here (kills ``make mutation`` survivors).

The stage's input contract (shapes, dtype, range, tolerance and its messages), the checksum, device and
batch-size choices, the torch runtime switches and their restoration, resizing and normalisation,
augmentation reproduced draw by draw from the same generator, slice stacking and per-patient means.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rccgrade.deep.data import (
    array_checksum,
    augment_batch,
    mean_by_owner,
    prepare_batch,
    resolve_batch_size,
    resolve_device,
    stack_slices,
    torch_runtime,
    validate_slices,
)
from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import ConfigError, FeatureError


def _msg(text: str):  # type: ignore[no-untyped-def]
    return pytest.raises(FeatureError, match=re.escape(text))


def test_validate_slices_contract_and_messages() -> None:
    one = np.full((3, 8, 9), 0.5, dtype=np.float64)
    out = validate_slices(one, "p1", "box")
    assert out.shape == (1, 3, 8, 9) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    for value in (-9e-4, 1 + 9e-4):  # rounding noise on either side alone: clipped, not rejected
        edge = np.full((1, 3, 8, 8), 0.5, dtype=np.float32)
        edge[0, 0, 0, 0] = value
        clipped = validate_slices(edge, "p1", "box")
        assert clipped[0, 0, 0, 0] == min(max(value, 0.0), 1.0) and clipped[0, 1].min() == 0.5
    where = "ROI 'box': "
    with _msg(
        where
        + "slice images must have shape (K, 3, H, W) (3 phases as channels); got (1, 2, 8, 8). Re-run preprocessing."
    ):
        validate_slices(np.zeros((1, 2, 8, 8), np.float32), "p1", "box")
    with _msg(where + "slice images must have shape (K, 3, H, W) (3 phases as channels); got (8, 8)."):
        validate_slices(np.zeros((8, 8), np.float32), "p1", "box")
    for shape in ((0, 3, 8, 8), (1, 3, 7, 8), (1, 3, 8, 7)):
        with _msg(where + f"empty or tiny slice stack {shape}; re-run preprocessing."):
            validate_slices(np.zeros(shape, np.float32), "p1", "box")
    with _msg(where + "slice images must be floating point in [0, 1]; got uint8."):
        validate_slices(np.zeros((1, 3, 8, 8), np.uint8), "p1", "box")
    bad = np.zeros((1, 3, 8, 8), np.float32)
    bad[0, 1, 2, 3] = np.inf
    with _msg(where + "slice images contain NaN or infinite values; re-run preprocessing."):
        validate_slices(bad, "p1", "box")
    for lo, hi in ((-2e-3, 0.5), (0.0, 1 + 2e-3)):
        arr = np.full((1, 3, 8, 8), 0.5, np.float32)
        arr[0, 0, 0, 0], arr[0, 0, 0, 1] = lo, hi
        text = f"slice values must lie in [0, 1] (HU window applied); found [{lo:.3g}, {hi:.3g}]. Apply the window"
        with _msg(where + text):
            validate_slices(arr, "p1", "box")
    bad_inputs = (
        np.zeros((1, 2, 8, 8), np.float32),
        np.zeros((1, 3, 4, 8), np.float32),
        np.zeros((1, 3, 8, 8), np.int16),
    )
    for bad_input in bad_inputs:  # every rejection names the patient
        with pytest.raises(FeatureError, match=r"\[patient p7\]"):
            validate_slices(bad_input, "p7", "box")


def test_array_checksum_is_sha256_of_shape_dtype_and_bytes() -> None:
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    h = hashlib.sha256()
    h.update(b"(2, 3, 4)")
    h.update(b"float32")
    h.update(a.tobytes())
    assert array_checksum(a) == h.hexdigest()
    assert array_checksum(a.reshape(4, 3, 2)) != array_checksum(a)
    assert array_checksum(a.astype(np.float64)) != array_checksum(a)
    t = a.transpose(2, 1, 0)  # non-contiguous: the checksum of its C-ordered copy
    assert array_checksum(t) == array_checksum(np.ascontiguousarray(t))


def test_device_and_batch_size() -> None:
    cpu = torch.device("cpu")
    assert resolve_device(DeepSettings(device="cpu")) == cpu
    if torch.cuda.is_available():  # a CUDA machine: both settings choose the GPU
        assert resolve_device(DeepSettings(device="cuda")) == torch.device("cuda")
        assert resolve_device(DeepSettings(device="auto")) == torch.device("cuda")
    else:  # the CPU test machine: auto falls back, an explicit cuda is a clear error
        assert resolve_device(DeepSettings(device="auto")) == cpu
        with pytest.raises(
            ConfigError, match="^" + re.escape("deep.device is 'cuda' but torch sees no CUDA device; use")
        ):
            resolve_device(DeepSettings(device="cuda"))
    assert resolve_batch_size(DeepSettings(batch_size=5), cpu) == 5
    assert resolve_batch_size(DeepSettings(batch_size=1), cpu) == 1
    assert resolve_batch_size(DeepSettings(batch_size=0), cpu) == 16
    # fine-tuning keeps a fixed CUDA default (the batch shapes the optimisation); inference sizes it from memory
    assert resolve_batch_size(DeepSettings(batch_size=0), torch.device("cuda"), training=True) == 128


def test_torch_runtime_applies_and_restores() -> None:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.backends.cudnn.benchmark = True
    with torch_runtime(DeepSettings(device="cpu", threads=2, deterministic=True), training=True):
        assert torch.get_num_threads() == 2
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark is False
    assert torch.backends.cudnn.benchmark is True
    assert torch.get_num_threads() == before[0] and torch.are_deterministic_algorithms_enabled() == before[1]
    with torch_runtime(DeepSettings(device="cpu", threads=0, deterministic=True)):
        assert torch.get_num_threads() == before[0]  # 0 = leave as is
        assert not torch.are_deterministic_algorithms_enabled()  # CPU inference: the flag only slows it
    with torch_runtime(DeepSettings(device="cpu", deterministic=False), training=True):
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark is True
    torch.backends.cudnn.benchmark = before[2]


def test_prepare_batch_resizes_and_normalises() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 12, 12), dtype=np.float32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    same = prepare_batch(x, mean, std, 12, torch.device("cpu"), channels_last=False)
    torch.testing.assert_close(same, (torch.from_numpy(x) - m) / s, rtol=0, atol=1e-6)
    assert same.is_contiguous()
    big = prepare_batch(x, mean, std, 20, torch.device("cpu"), channels_last=True)
    resized = F.interpolate(torch.from_numpy(x), size=(20, 20), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(big, (resized - m) / s, rtol=1e-6, atol=1e-6)
    assert big.shape == (2, 3, 20, 20) and big.is_contiguous(memory_format=torch.channels_last)
    assert big.dtype == torch.float32
    default = prepare_batch(x.astype(np.float64), mean, std, 12, torch.device("cpu"))
    assert default.dtype == torch.float32 and default.is_contiguous(memory_format=torch.channels_last)
    small = prepare_batch(x, mean, std, 5, torch.device("cpu"), channels_last=False)  # downsampling: antialiased
    shrunk = F.interpolate(torch.from_numpy(x), size=(5, 5), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(small, (shrunk - m) / s, rtol=1e-6, atol=1e-6)
    aliased = F.interpolate(torch.from_numpy(x), size=(5, 5), mode="bilinear", align_corners=False, antialias=False)
    assert not torch.allclose(small, (aliased - m) / s, atol=1e-3)


def test_augment_batch_reproduced_from_the_same_draws() -> None:
    """With only flips and intensity on, the output is the flipped image times gain plus offset, clamped."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((4, 3, 10, 10), dtype=np.float32))
    settings = DeepSettings(rotate_deg=0.0, scale=0.0, translate=0.0, intensity=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # align_corners is explicit (torch warns when it is left to the default)
        out = augment_batch(x, settings, torch.Generator().manual_seed(5))
        doubled = augment_batch(x.double(), settings, torch.Generator().manual_seed(5))
    assert doubled.dtype == torch.float64
    torch.testing.assert_close(doubled.float(), out, rtol=1e-5, atol=1e-5)
    g = torch.Generator().manual_seed(5)
    n = 4
    flip_h = torch.rand(n, generator=g) < 0.5
    flip_v = torch.rand(n, generator=g) < 0.5
    for _ in range(4):  # angle, zoom, tx, ty
        torch.rand(n, generator=g)
    gain = 0.7 + 0.6 * torch.rand(n, generator=g)
    offset = -0.3 + 0.6 * torch.rand(n, generator=g)
    assert flip_h.any() and (~flip_h).any() and flip_v.any()  # the check covers both outcomes
    for i in range(n):
        img = x[i]
        if flip_h[i]:
            img = torch.flip(img, dims=[2])
        if flip_v[i]:
            img = torch.flip(img, dims=[1])
        torch.testing.assert_close(out[i], (img * gain[i] + offset[i]).clamp(0, 1), rtol=1e-5, atol=1e-5)
    again = augment_batch(x, settings, torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    # a pure zoom: the default settings move pixels, and the result stays in [0, 1]
    moved = augment_batch(x, DeepSettings(), torch.Generator().manual_seed(5))
    assert moved.shape == x.shape and moved.min() >= 0 and moved.max() <= 1
    assert not torch.allclose(moved, out)


def test_augment_batch_geometry_matches_affine_grid() -> None:
    """Rotation, zoom and shift: the output equals grid_sample through the documented affine, draw by draw."""
    x = torch.from_numpy(np.random.default_rng(2).random((3, 3, 16, 16), dtype=np.float32))
    settings = DeepSettings(rotate_deg=20.0, scale=0.2, translate=0.1, intensity=0.0)
    out = augment_batch(x, settings, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    n = 3

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    flip_h = torch.rand(n, generator=g) < 0.5
    flip_v = torch.rand(n, generator=g) < 0.5
    angle = uniform(-20.0, 20.0) * np.pi / 180
    zoom = uniform(0.8, 1.2)
    tx, ty = uniform(-0.1, 0.1) * 2, uniform(-0.1, 0.1) * 2
    sx = torch.where(flip_h, -1.0, 1.0) / zoom
    sy = torch.where(flip_v, -1.0, 1.0) / zoom
    c, s = torch.cos(angle), torch.sin(angle)
    for i in range(n):
        theta = torch.tensor([[c[i] * sx[i], -s[i] * sy[i], tx[i]], [s[i] * sx[i], c[i] * sy[i], ty[i]]])[None]
        grid = F.affine_grid(theta, [1, 3, 16, 16], align_corners=False)
        want = F.grid_sample(x[i : i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        torch.testing.assert_close(out[i : i + 1], want.clamp(0, 1), rtol=1e-5, atol=1e-5)


def test_stack_slices_and_mean_by_owner() -> None:
    images = {
        "a": np.full((2, 3, 8, 8), 1.0, np.float32),
        "b": np.full((1, 3, 8, 8), 2.0, np.float32),
        "c": np.full((3, 3, 8, 8), 3.0, np.float32),
    }
    stacked, owner = stack_slices(images, ["c", "a", "b"])
    assert stacked.shape == (6, 3, 8, 8) and owner.tolist() == [0, 0, 0, 1, 1, 2]
    assert stacked[:, 0, 0, 0].tolist() == [3, 3, 3, 1, 1, 2]
    values = np.arange(12, dtype=np.float32).reshape(6, 2)
    means = mean_by_owner(values, owner, 3)
    np.testing.assert_allclose(means, [values[:3].mean(0), values[3:5].mean(0), values[5]])
    assert means.dtype == np.float32
    with pytest.raises(FeatureError, match=re.escape("slice images of one ROI differ in size [(3, 8, 8), (3, 9, 9)]")):
        stack_slices({"a": images["a"], "d": np.zeros((1, 3, 9, 9), np.float32)}, ["a", "d"])
