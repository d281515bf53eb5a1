"""Multi-channel slice images: the output of preprocessing and the input of the deep stage.

On-disk contract (fixed between stages)::

    <preprocess_dir>/slices/<roi>/<patient_id>.npy   float32 (K, 3, H, W), values in [0, 1]
    <preprocess_dir>/slices/index.csv                patient_id, roi, path, n_slices, slice_indices, …

The file name is :func:`rccgrade.safepath.safe_filename` of the patient id (plain ids unchanged); the
index maps each file back to its original id, so readers go through the index, never the file name.

``K`` selected axial slices (1 by default: the largest tumour cross-section); the 3 channels are the
arterial, nephrographic and excretory phases (registered to the mask's phase); values are HU clipped to
the window (level 40 / width 400 by default) and mapped linearly to [0, 1]. Pixels outside the ROI and
the padding added by the aspect-preserving resize are 0 — the value of air/fat below the window, so a
network sees "nothing" there. ``slice_indices`` are indices along the slice axis of the mask phase
after reorientation to LPS (0 = most inferior), ``;``-separated.

Read them with :func:`load_slices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from rccgrade.cohort.types import PHASES
from rccgrade.errors import PreprocessError
from rccgrade.preprocess.roi import roi_crop, roi_volume
from rccgrade.preprocess.settings import PreprocessSettings, RoiSpec
from rccgrade.safepath import child_path, is_inside

SLICES_DIR = "slices"
INDEX_NAME = "index.csv"
INDEX_COLUMNS = ["patient_id", "roi", "path", "n_slices", "slice_indices", "selection", "channels"]


def slice_path(preprocess_dir: str | Path, roi: str, patient_id: str) -> Path:
    """``<preprocess_dir>/slices/<roi>/<safe name of patient_id>.npy`` (see :mod:`rccgrade.safepath`).

    Raises:
        UnsafePathError: the ROI name is not a plain folder name.
    """
    return child_path(child_path(Path(preprocess_dir) / SLICES_DIR, roi), patient_id, ".npy")


def index_path(preprocess_dir: str | Path) -> Path:
    """``<preprocess_dir>/slices/index.csv``."""
    return Path(preprocess_dir) / SLICES_DIR / INDEX_NAME


def read_index(preprocess_dir: str | Path) -> pd.DataFrame:
    """The slice index table (columns :data:`INDEX_COLUMNS`; ``patient_id`` kept as text).

    Raises:
        PreprocessError: no index (preprocessing has not run in this folder).
    """
    path = index_path(preprocess_dir)
    if not path.is_file():
        raise PreprocessError(
            "no slice index found; run 'rccgrade preprocess MANIFEST --out DIR' first and pass that DIR",
            path=path,
        )
    # ids as written: "NA", "null" or "001" are ids, not missing values or numbers
    return pd.read_csv(
        path,
        dtype={"patient_id": str, "roi": str, "path": str, "slice_indices": str},
        keep_default_na=False,
        na_values=[""],
    )


def load_slices(preprocess_dir: str | Path, roi: str) -> dict[str, np.ndarray]:
    """Slice images of one ROI setting for every successfully preprocessed patient.

    Args:
        preprocess_dir: The preprocessing stage's output folder.
        roi: ROI setting name (``box``, ``tumour``, ``dilated5mm`` …).

    Returns:
        ``patient_id`` → float32 array ``(K, 3, H, W)`` in [0, 1], in index order.

    Raises:
        PreprocessError: no index, the ROI was not produced (the message lists those that were), or a
            listed file is missing.
    """
    index = read_index(preprocess_dir)
    rows = index[index["roi"] == roi]
    if rows.empty:
        available = sorted(index["roi"].unique())
        raise PreprocessError(
            f"ROI setting {roi!r} was not produced; available: {available}. "
            "Add it to preprocess.rois and re-run preprocessing.",
            path=index_path(preprocess_dir),
        )
    out: dict[str, np.ndarray] = {}
    for row in rows.itertuples(index=False):
        path = Path(preprocess_dir) / str(row.path)
        if not is_inside(path, preprocess_dir):
            raise PreprocessError(
                f"the slice index lists {str(row.path)!r}, which is not inside the preprocessing folder; "
                "the index was edited or corrupted — re-run preprocessing",
                patient_id=str(row.patient_id),
                path=index_path(preprocess_dir),
            )
        if not path.is_file():
            raise PreprocessError(
                f"slice file listed in the index is missing (ROI {roi}); re-run preprocessing",
                patient_id=str(row.patient_id),
                path=path,
            )
        out[str(row.patient_id)] = np.load(path)
    return out


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU clipped to ``[level − width/2, level + width/2]`` and mapped linearly to [0, 1] (float32)."""
    lo = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float64) - lo) / width, 0.0, 1.0).astype(np.float32)


def select_slices(areas: np.ndarray, method: str = "largest", top_k: int = 3, area_fraction: float = 0.5) -> list[int]:
    """Indices (ascending) of the slices to use, from the tumour area per slice.

    Args:
        areas: Tumour area (pixels or mm²) per slice.
        method: ``largest`` (argmax; ties → the lowest index), ``topk`` (the ``top_k`` largest, ties →
            lower index first) or ``area_fraction`` (every slice with area ≥ ``area_fraction`` × max).

    Raises:
        ValueError: no tumour on any slice, or an unknown method.
    """
    areas = np.asarray(areas, dtype=np.float64)
    if areas.size == 0 or areas.max() <= 0:
        raise ValueError("the tumour mask is empty on every slice")
    if method == "largest":
        return [int(np.argmax(areas))]
    if method == "topk":
        order = np.lexsort((np.arange(areas.size), -areas))  # area descending, then index ascending
        chosen = [int(i) for i in order[:top_k] if areas[i] > 0]
        return sorted(chosen)
    if method == "area_fraction":
        return [int(i) for i in np.flatnonzero(areas >= area_fraction * areas.max()) if areas[i] > 0]
    raise ValueError(f"unknown slice selection {method!r}")


def resize_pad(image: np.ndarray, keep: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Aspect-preserving bilinear resize of a crop so its longer side is ``size``, then centred zero padding.

    Pixels of the crop are assumed square (the stage resamples in-plane to isotropic pixels first).

    Args:
        image: ``(C, h, w)`` float array.
        keep: ``(h, w)`` boolean mask of the kept pixels; resized bilinearly and thresholded at 0.5.
        size: Output height = width.

    Returns:
        ``(C, size, size)`` float32 image with pixels outside ``keep`` and padding set to 0, and the
        resized ``keep`` mask ``(size, size)``.
    """
    c, h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    # pixel-centre mapping: output pixel i covers source coordinate (i + 0.5) / scale − 0.5
    ys = (np.arange(nh) + 0.5) * (h / nh) - 0.5
    xs = (np.arange(nw) + 0.5) * (w / nw) - 0.5
    grid = np.meshgrid(ys, xs, indexing="ij")
    resized = np.stack(
        [ndimage.map_coordinates(image[i].astype(np.float64), grid, order=1, mode="nearest") for i in range(c)]
    )
    kept = ndimage.map_coordinates(keep.astype(np.float64), grid, order=1, mode="nearest") >= 0.5
    resized = np.where(kept[None], resized, 0.0)
    out = np.zeros((c, size, size), dtype=np.float32)
    keep_out = np.zeros((size, size), dtype=bool)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[:, y0 : y0 + nh, x0 : x0 + nw] = resized
    keep_out[y0 : y0 + nh, x0 : x0 + nw] = kept
    return out, keep_out


def channel_plan(available: Sequence[str], strategy: str) -> list[tuple[str, int]]:
    """Which phase and slice offset feed each of the 3 channels.

    Args:
        available: Phases present for the case.
        strategy: ``repeat`` — a missing phase's channel takes the nearest available phase in
            arterial → nephrographic → excretory order (ties → the earlier phase); ``adjacent`` — with a
            single phase, channels are its slices at offsets −1, 0, +1 (clamped at the volume's ends);
            with two phases it behaves as ``repeat``.

    Returns:
        Three ``(phase, slice_offset)`` pairs.

    Raises:
        ValueError: no phase available.
    """
    present = [p for p in PHASES if p in available]
    if not present:
        raise ValueError(f"none of the phases {PHASES} is available")
    if len(present) == len(PHASES):
        return [(p, 0) for p in PHASES]
    if strategy == "adjacent" and len(present) == 1:
        return [(present[0], -1), (present[0], 0), (present[0], 1)]
    plan = []
    for i, phase in enumerate(PHASES):
        if phase in present:
            plan.append((phase, 0))
        else:
            nearest = min(present, key=lambda p: (abs(PHASES.index(p) - i), PHASES.index(p)))
            plan.append((nearest, 0))
    return plan


@dataclass
class SliceImages:
    """Slice images of one case.

    Attributes:
        arrays: ROI name → float32 ``(K, 3, H, W)``.
        slice_indices: The K selected slice indices (ascending).
        channels: Description of the channels, e.g. ``arterial,nephrographic,excretory`` or
            ``arterial[-1],arterial[0],arterial[+1]``.
        keep_masks: ROI name → boolean ``(K, H, W)`` of kept pixels (for QC overlays; not saved).
        tumour_masks: ROI name → boolean ``(K, H, W)`` tumour outline in the output frame (QC).
        areas_mm2: Tumour area per slice (mm²), along the whole slice axis.
    """

    arrays: dict[str, np.ndarray]
    slice_indices: list[int]
    channels: str
    keep_masks: dict[str, np.ndarray] = field(default_factory=dict)
    tumour_masks: dict[str, np.ndarray] = field(default_factory=dict)
    areas_mm2: np.ndarray | None = None


def build_slice_images(
    volumes_hu: Mapping[str, np.ndarray],
    tumour: np.ndarray,
    spacing: Sequence[float],
    settings: PreprocessSettings,
) -> SliceImages:
    """Cut the multi-channel ROI images of one case from aligned volumes.

    Args:
        volumes_hu: Phase → HU volume ``(z, y, x)``, all on the grid of ``tumour``.
        tumour: Boolean tumour mask ``(z, y, x)``.
        spacing: Voxel size ``(z, y, x)`` in mm; ``y`` and ``x`` should be equal (square pixels).
        settings: ROI settings, slice selection, window, output size, missing-phase strategy.

    Returns:
        The :class:`SliceImages`.

    Raises:
        ValueError: empty mask or no phase.
    """
    tumour = np.asarray(tumour).astype(bool)
    spacing = [float(s) for s in spacing]
    areas = tumour.sum(axis=(1, 2)) * spacing[1] * spacing[2]
    chosen = select_slices(areas, settings.slice_selection, settings.top_k, settings.area_fraction)
    plan = channel_plan(list(volumes_hu), settings.missing_phases)
    windowed = {p: window(volumes_hu[p], settings.window_level, settings.window_width) for p in {p for p, _ in plan}}
    nz = tumour.shape[0]
    if all(off == 0 for _, off in plan):
        channels = ",".join(p for p, _ in plan)
    else:
        channels = ",".join(f"{p}[{off:+d}]" for p, off in plan)
    specs: list[RoiSpec] = settings.roi_specs
    arrays: dict[str, np.ndarray] = {}
    keeps: dict[str, np.ndarray] = {}
    outlines: dict[str, np.ndarray] = {}
    for spec in specs:
        roi3d = roi_volume(tumour, spacing, spec)
        imgs, kms, tms = [], [], []
        for z in chosen:
            crop, keep = roi_crop(tumour[z], roi3d[z], spacing[1:], spec, settings.crop_margin_mm)
            stack = np.stack([windowed[p][int(np.clip(z + off, 0, nz - 1))][crop] for p, off in plan])
            img, keep_out = resize_pad(stack, keep, settings.image_size)
            outline, _ = resize_pad(tumour[z][crop][None].astype(np.float32), np.ones_like(keep), settings.image_size)
            imgs.append(img)
            kms.append(keep_out)
            tms.append(outline[0] >= 0.5)
        arrays[spec.name] = np.stack(imgs).astype(np.float32)
        keeps[spec.name] = np.stack(kms)
        outlines[spec.name] = np.stack(tms)
    return SliceImages(
        arrays=arrays,
        slice_indices=chosen,
        channels=channels,
        keep_masks=keeps,
        tumour_masks=outlines,
        areas_mm2=areas,
    )
