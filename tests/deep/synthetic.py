"""Tiny synthetic slice images and fast settings for the deep-stage tests (built in code, no blobs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rccgrade.deep.settings import DeepSettings


def fast_settings(**overrides: Any) -> DeepSettings:
    """Small, single-threaded settings: random weights, 64 px input, one ROI."""
    base: dict[str, Any] = {
        "weights": "none",
        "input_size": 64,
        "rois": ["box"],
        "threads": 1,
        "batch_size": 8,
        "device": "cpu",
    }
    base.update(overrides)
    return DeepSettings(**base)


def random_slices(n: int, *, size: int = 64, k: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` patients of random (k, 3, size, size) float32 images in [0, 1]."""
    rng = np.random.default_rng(seed)
    return {f"p{i:03d}": rng.random((k, 3, size, size), dtype=np.float32) for i in range(n)}


def blob_cohort(n: int, *, size: int = 32, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Synthetic cohort with an honest, learnable signal: high grade = a bright blob, low = none.

    Every image has noisy background; positives (every other patient) carry a Gaussian blob (σ 3 px,
    amplitude 0.5) at a random position in all three phases.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images: dict[str, np.ndarray] = {}
    labels: dict[str, int] = {}
    for i in range(n):
        pid = f"p{i:03d}"
        label = i % 2
        img = 0.3 + 0.05 * rng.standard_normal((1, 3, size, size))
        if label:
            cy, cx = rng.uniform(8, size - 8, 2)
            img = img + 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        images[pid] = np.clip(img, 0.0, 1.0).astype(np.float32)
        labels[pid] = label
    return images, labels
