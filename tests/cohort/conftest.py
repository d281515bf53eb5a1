"""Tiny synthetic cases built in code: a CT-like volume in HU, a box mask, a manifest writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

SIZE = (16, 16, 8)  # x, y, z voxels
SPACING = (0.8, 0.8, 2.0)  # mm


def make_ct(
    size: tuple[int, int, int] = SIZE,
    spacing: tuple[float, float, float] = SPACING,
    origin: tuple[float, float, float] = (-6.0, -6.0, 10.0),
    seed: int = 0,
) -> sitk.Image:
    """An int16 HU volume: air (−1000) around a soft-tissue block (≈40 HU) with a brighter 'tumour'."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    arr = np.full((nz, ny, nx), -1000, dtype=np.int16)
    arr[:, 2:-2, 2:-2] = 40 + rng.integers(-20, 20, size=(nz, ny - 4, nx - 4))
    arr[2:-2, 5:11, 5:11] = 120
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def make_mask(ct: sitk.Image, value: int = 1) -> sitk.Image:
    """A uint8 mask of the tumour block of :func:`make_ct`, in the CT's geometry."""
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, dtype=np.uint8)
    arr[2:-2, 5:11, 5:11] = value
    mask = sitk.GetImageFromArray(arr)
    mask.CopyInformation(ct)
    return mask


class CaseWriter:
    """Writes good cases (and broken variants) under ``root`` and a manifest listing them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[dict[str, Any]] = []

    def write(self, pid: str, *, ext: str = ".nrrd", grade: Any = 2, **images: sitk.Image | None) -> dict[str, Any]:
        """Write a good case; ``images`` overrides a phase or the mask (None: leave the file out)."""
        folder = self.root / pid
        folder.mkdir(parents=True, exist_ok=True)
        ct = make_ct(seed=len(self.rows))
        default = {
            "arterial": ct,
            "nephrographic": make_ct(seed=len(self.rows) + 100),
            "excretory": make_ct(seed=len(self.rows) + 200),
            "mask": make_mask(ct),
        }
        default.update(images)
        row: dict[str, Any] = {"patient_id": pid}
        for name, img in default.items():
            rel = f"{pid}/{name}{ext}"
            if img is not None:
                sitk.WriteImage(img, str(self.root / rel))
            row[name] = rel
        row["grade"] = grade
        self.rows.append(row)
        return row

    def manifest(self, name: str = "manifest.csv", **extra_columns: list[Any]) -> Path:
        frame = pd.DataFrame(self.rows)
        for col, values in extra_columns.items():
            frame[col] = values
        path = self.root / name
        frame.to_csv(path, index=False)
        return path


@pytest.fixture
def case_writer(tmp_path: Path) -> CaseWriter:
    return CaseWriter(tmp_path)


@pytest.fixture
def ct_factory() -> Callable[..., sitk.Image]:
    return make_ct


@pytest.fixture
def mask_factory() -> Callable[..., sitk.Image]:
    return make_mask
