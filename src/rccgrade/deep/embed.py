"""Pooled features (and head logits) of slice images through a network: shared by frozen extraction and fine-tuning."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rccgrade.deep.backbone import pooled_features
from rccgrade.deep.data import precision, prepare_batch
from rccgrade.deep.settings import DeepSettings

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

__all__ = ["embed_slices"]


def embed_slices(
    model: nn.Module,
    slices: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    settings: DeepSettings,
    device: torch.device,
    batch_size: int,
    with_logits: bool = False,
    fixed_shape: bool | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features (and optionally head logits) of slice images ``(N, 3, H, W)`` in [0, 1].

    Runs in ``torch.inference_mode`` with the model in eval mode (batch-norm running statistics), so each
    slice's output does not depend on the other slices in its batch. Under automatic mixed precision
    (``settings.amp``; on CUDA by default, never on the CPU unless asked) the forward runs in bfloat16/float16 and
    the features are returned as float32. On a GPU that runs out of memory the batch is halved and retried. On CUDA
    with ``settings.deterministic`` the last batch is padded with blank images to ``batch_size``, so every forward
    has the same shape (cuDNN's algorithm, hence the rounding, depends on the shape); ``fixed_shape`` overrides
    that choice (None: on CUDA when deterministic).

    Returns:
        ``(N, feature_dim)`` float32 features and, when ``with_logits``, ``(N, outputs)`` float32 logits.
    """
    import torch

    model.eval().to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    feats: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    start = 0
    # On CUDA, deterministic runs pad the last batch so every forward has one shape (CUDA_DETERMINISTIC_BATCH).
    pad = (device.type == "cuda" and settings.deterministic) if fixed_shape is None else fixed_shape
    with torch.inference_mode():
        while start < len(slices):
            try:
                chunk = slices[start : start + batch_size]
                n_real = len(chunk)
                if pad and n_real < batch_size:
                    chunk = np.concatenate([chunk, np.zeros((batch_size - n_real, *chunk.shape[1:]), chunk.dtype)])
                x = prepare_batch(chunk, mean, std, settings.input_size, device, settings.channels_last)
                with precision(settings, device):
                    f = pooled_features(model, x)[:n_real]
                    out = model.fc(f).float().cpu().numpy() if with_logits else None
            except torch.cuda.OutOfMemoryError:
                if batch_size == 1:
                    raise
                batch_size = max(1, batch_size // 2)
                log.warning("GPU out of memory: batch size reduced to %d", batch_size)
                torch.cuda.empty_cache()
                continue
            feats.append(f.float().cpu().numpy())
            if out is not None:
                logits.append(out)
            start += n_real
    dim = int(model.fc.in_features)
    out_f = np.concatenate(feats, axis=0) if feats else np.zeros((0, dim), np.float32)
    out_l = None
    if with_logits:
        out_l = np.concatenate(logits, axis=0) if logits else np.zeros((0, int(model.fc.out_features)), np.float32)
    return out_f, out_l
