"""Slice images for the network: validation, checksums, resizing, normalisation, augmentation, devices.

Input of the stage (the preprocessing contract): per patient a float32 array ``(K, 3, H, W)`` — K slices,
channels arterial/nephrographic/excretory — with values in [0, 1] after the HU window.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import ConfigError, FeatureError

if TYPE_CHECKING:
    import torch

_RANGE_TOL = 1e-3  # values a hair outside [0, 1] (float rounding) are clipped, not rejected


def validate_slices(array: np.ndarray, patient_id: str, roi: str) -> np.ndarray:
    """Check one patient's slice stack against the contract and return it as float32 ``(K, 3, H, W)``.

    A single ``(3, H, W)`` image is accepted as ``K = 1``.

    Raises:
        FeatureError: wrong shape, not 3 channels, no slices, non-finite values or values outside [0, 1];
            the message names the patient and ROI and says how to fix the preprocessing output.
    """
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = arr[None]
    where = f"ROI {roi!r}: "
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise FeatureError(
            f"{where}slice images must have shape (K, 3, H, W) (3 phases as channels); got {arr.shape}. "
            "Re-run preprocessing.",
            patient_id=patient_id,
        )
    if arr.shape[0] == 0 or arr.shape[2] < 8 or arr.shape[3] < 8:
        raise FeatureError(
            f"{where}empty or tiny slice stack {arr.shape}; re-run preprocessing.", patient_id=patient_id
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise FeatureError(
            f"{where}slice images must be floating point in [0, 1]; got {arr.dtype}.", patient_id=patient_id
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise FeatureError(
            f"{where}slice images contain NaN or infinite values; re-run preprocessing.", patient_id=patient_id
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise FeatureError(
            f"{where}slice values must lie in [0, 1] (HU window applied); found [{lo:.3g}, {hi:.3g}]. "
            "Apply the window in preprocessing.",
            patient_id=patient_id,
        )
    if lo < 0 or hi > 1:
        arr = np.clip(arr, 0.0, 1.0)
    return np.ascontiguousarray(arr)


def array_checksum(array: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (a cache key for one patient's slices)."""
    arr = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(arr.shape).encode())
    h.update(str(arr.dtype).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def resolve_device(settings: DeepSettings) -> torch.device:
    """``cuda`` when asked for or (``auto``) available, else ``cpu``.

    Raises:
        ConfigError: ``device=cuda`` but no CUDA device is available.
    """
    import torch

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("deep.device is 'cuda' but torch sees no CUDA device; use device=auto or cpu")
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


CUDA_DETERMINISTIC_BATCH = 128
"""Batch of every CUDA forward when ``deterministic`` (the last batch is padded to it, see ``embed_slices``).

cuDNN chooses its convolution algorithm by tensor shape, and algorithms differ in rounding: measured on an H200
(bench/results/deep_gpu.json), the same image's float16 features changed by up to 7e-4 of the largest feature
between batches of 7 and 512. A fixed forward shape keeps features independent of free GPU memory and of how many
images a run has; 128 images of ResNet50 at 224² already run the GPU at full speed.
"""


def resolve_batch_size(settings: DeepSettings, device: torch.device, *, training: bool = False) -> int:
    """The configured batch size; when ``batch_size`` is 0: 16 on CPU, on CUDA from the free GPU memory.

    Fine-tuning (``training``) keeps a fixed default (16 on CPU, 128 on CUDA): there the batch size shapes the
    optimisation, so it must not follow whatever memory happens to be free.

    On CUDA the batch is :func:`batch_size_from_memory` of ``torch.cuda.mem_get_info`` and
    :func:`per_image_bytes` at the forward's precision (:func:`autocast_dtype`). An estimate that is still too
    large is caught by the forward, which halves the batch on an out-of-memory error.
    """
    if settings.batch_size > 0:
        return settings.batch_size
    if device.type != "cuda":
        return 16
    if training:
        return 128
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    dtype = autocast_dtype(settings, device)
    element = 4 if dtype is None else 2
    maximum = CUDA_DETERMINISTIC_BATCH if settings.deterministic else 512
    return batch_size_from_memory(free, per_image_bytes(settings.arch, settings.input_size, element), maximum=maximum)


def per_image_bytes(arch: str, input_size: int, element_bytes: int = 4) -> int:
    """Upper bound of one image's activation memory in a forward pass of the bottleneck ResNet ``arch``, in bytes.

    Counts the main-path activations as if all were alive at once — stem (conv, BN, ReLU outputs at
    ``input_size / 2``) and, per bottleneck block, the conv/BN/ReLU outputs of its three convolutions (``w, w, 4w``
    channels) at the stage's resolution ``input_size / 2**(stage + 2)`` — and doubles them for what that count
    leaves out (shortcut projections, first blocks working at the previous resolution, allocator slack); times
    ``element_bytes`` (4 float32, 2 bf16/fp16). The summed output of every layer of a real forward is 1.2–1.5×
    the main-path count (tests/deep/test_amp.py), and inference frees activations as it goes, so the real peak
    is far lower: the bound keeps the batch safe without measuring the GPU.
    """
    from rccgrade.deep.backbone import _ARCHS

    spec = _ARCHS[arch]
    side = input_size / 2
    elements = 3 * spec["block_inplanes"][0] * side * side
    for stage, (blocks, width) in enumerate(zip(spec["layers"], spec["block_inplanes"], strict=True)):
        s = input_size / 2 ** (stage + 2)
        elements += blocks * 3 * (width + width + 4 * width) * s * s
    return math.ceil(2 * elements * element_bytes)


def batch_size_from_memory(
    free_bytes: int, image_bytes: int, *, reserve: float = 0.2, maximum: int = 512, minimum: int = 1
) -> int:
    """Largest batch whose images fit in ``free_bytes`` less a ``reserve`` share, within ``[minimum, maximum]``.

    Args:
        free_bytes: Free device memory (``torch.cuda.mem_get_info()[0]``), bytes.
        image_bytes: Memory one image needs (:func:`per_image_bytes`), bytes; must be positive.
        reserve: Share of the free memory left for the weights, the allocator and other processes.
        maximum: Cap (larger batches stop paying off and delay progress updates).
        minimum: Floor (one image is always tried; the forward halves no further than 1).

    Returns:
        ``clip(floor(free_bytes · (1 − reserve) / image_bytes), minimum, maximum)``.
    """
    if image_bytes <= 0:
        raise ValueError(f"image_bytes must be positive, got {image_bytes}")
    if not 0 <= reserve < 1:
        raise ValueError(f"reserve must be in [0, 1), got {reserve}")
    fits = int(max(free_bytes, 0) * (1.0 - reserve) // image_bytes)
    return max(minimum, min(maximum, fits))


def autocast_dtype(settings: DeepSettings, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the forward passes, or None for plain float32 (see ``DeepSettings.amp``)."""
    import torch

    if settings.amp == "off" or (settings.amp == "auto" and device.type != "cuda"):
        return None
    if settings.amp == "auto":
        return torch.float16  # the precision that keeps features within ~1e-3 of float32 (DeepSettings.amp)
    return torch.bfloat16 if settings.amp == "bf16" else torch.float16


def precision(settings: DeepSettings, device: torch.device) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` at :func:`autocast_dtype`, or a no-op context for float32."""
    dtype = autocast_dtype(settings, device)
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def torch_runtime(settings: DeepSettings, *, training: bool = False) -> Iterator[None]:
    """Apply ``threads`` and ``deterministic`` for the duration of the block, then restore torch's state.

    ``deterministic`` switches on ``torch.use_deterministic_algorithms`` for training (fine-tuning) and on
    CUDA, where kernels may otherwise differ between runs. CPU inference is deterministic for a fixed thread
    count without it, and the flag measurably slows CPU convolutions (≈ 20% here), so frozen extraction on
    the CPU leaves it off.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_cudnn = torch.backends.cudnn.benchmark
    old_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        # TF32 (on by default for cuDNN convolutions) rounds float32 inputs to 10 mantissa bits: measured on an
        # H200, "float32" CUDA features then differ from the CPU's by 8e-4 of the largest feature, 2e-6 without.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        if settings.deterministic:
            torch.backends.cudnn.benchmark = False
            if training or resolve_device(settings).type == "cuda":
                torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_cudnn
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_tf32


def prepare_batch(
    batch: np.ndarray | torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: int,
    device: torch.device,
    channels_last: bool = True,
) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [0, 1] → resized (bilinear, to ``size``²), normalised tensor on ``device``."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(batch, dtype=torch.float32).to(device, non_blocking=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = (x - m) / s
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment_batch(x: torch.Tensor, settings: DeepSettings, generator: torch.Generator) -> torch.Tensor:
    """Random flips, small affine transforms and intensity jitter of images ``(N, 3, H, W)`` in [0, 1].

    All three phases of an image get the same geometric transform (they are registered). Random numbers come
    only from ``generator`` (on the CPU), so an augmentation repeats exactly for a seed.
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    angle = uniform(-settings.rotate_deg, settings.rotate_deg) * math.pi / 180.0
    zoom = uniform(1 - settings.scale, 1 + settings.scale)
    tx = uniform(-settings.translate, settings.translate) * 2.0  # grid coordinates span [-1, 1]
    ty = uniform(-settings.translate, settings.translate) * 2.0
    gain = uniform(1 - settings.intensity, 1 + settings.intensity)
    offset = uniform(-settings.intensity, settings.intensity)
    sx = torch.where(flip_h, -1.0, 1.0) / zoom
    sy = torch.where(flip_v, -1.0, 1.0) / zoom
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, tx], dim=1), torch.stack([sin * sx, cos * sy, ty], dim=1)], dim=1
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out * gain.to(x.device).view(n, 1, 1, 1) + offset.to(x.device).view(n, 1, 1, 1)
    return out.clamp(0.0, 1.0)


def stack_slices(images: Mapping[str, np.ndarray], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the slices of ``ids`` into ``(sum K, 3, H, W)`` plus the owner index of every slice.

    All patients must share one slice size (resize happens later, on the batch).
    """
    arrays = [images[pid] for pid in ids]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise FeatureError(
            f"slice images of one ROI differ in size {sorted(shapes)}; preprocessing must write one size per ROI"
        )
    owner = np.concatenate([np.full(a.shape[0], i, dtype=np.int64) for i, a in enumerate(arrays)])
    return np.concatenate(arrays, axis=0), owner


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Average rows of ``values`` that belong to the same owner (multi-slice aggregation), ``(n, …)``."""
    sums = np.zeros((n, *values.shape[1:]), dtype=np.float64)
    np.add.at(sums, owner, values.astype(np.float64))
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    return (sums / counts.reshape(-1, *([1] * (values.ndim - 1)))).astype(np.float32)
