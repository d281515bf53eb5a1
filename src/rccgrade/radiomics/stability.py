"""Feature stability: perturbed copies of image and mask, and ICC per feature over patients.

Following Zwanenburg et al. (Sci Rep 2019, "Assessing robustness of radiomic features by image
perturbation"), each perturbed copy combines a small rigid transform of image and mask, a mask
volume change (erosion/dilation by about 1 mm, in physical units), a random smooth contour
displacement and Gaussian image noise. Features are extracted from every copy; the ICC across
patients (subjects) and copies (raters) measures how well a feature ranks patients despite these
nuisances. The functional core works on SimpleITK images and numpy arrays.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.cache import stable_hash
from rccgrade.radiomics.icc import icc
from rccgrade.radiomics.settings import StabilitySettings

log = logging.getLogger(__name__)

_MIN_VOXELS = 8
"""A perturbed mask smaller than this falls back to the rigidly moved mask (erosion must not erase a ROI)."""


def perturbation_rng(seed: int, patient_id: str, copy: int) -> np.random.Generator:
    """Generator of one perturbed copy: depends on the seed, the patient and the copy only.

    The phase is deliberately not part of it, so the co-registered phases of a case get the same
    geometric perturbation of their shared mask.
    """
    pid = int.from_bytes(hashlib.sha256(patient_id.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), int(copy), pid])


def _centroid(mask: sitk.Image) -> tuple[float, float, float]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return stats.GetCentroid(1)


def perturb(
    image: sitk.Image, mask: sitk.Image, rng: np.random.Generator, settings: StabilitySettings
) -> tuple[sitk.Image, sitk.Image]:
    """One perturbed copy of an image and its binary mask (same grid as the input).

    Args:
        image: CT image (HU), any pixel type; returned as float32.
        mask: Binary mask (1 = ROI) on the image's grid.
        rng: Generator of this copy (see :func:`perturbation_rng`).
        settings: Perturbation magnitudes (mm, degrees, HU).

    Returns:
        ``(image, mask)``: perturbed float32 image and uint8 binary mask on the input grid.
    """
    image = sitk.Cast(image, sitk.sitkFloat32)
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    # Draw everything first, in a fixed order, so a copy's draws do not depend on which steps are active.
    angles = np.deg2rad(rng.uniform(-settings.max_rotation_deg, settings.max_rotation_deg, 3))
    shift = rng.uniform(-settings.max_shift_mm, settings.max_shift_mm, 3)
    volume_sign = int(rng.integers(-1, 2))
    field = rng.standard_normal(sitk.GetArrayViewFromImage(mask).shape)
    noise = rng.standard_normal(field.shape)

    # 1. Rigid transform about the ROI centroid; the mask is moved by linear interpolation + 0.5 threshold.
    transform = sitk.Euler3DTransform()
    transform.SetCenter(_centroid(mask))
    transform.SetRotation(*(float(a) for a in angles))
    transform.SetTranslation(tuple(float(s) for s in shift))
    arr = sitk.GetArrayViewFromImage(image)
    fill = float(arr.min()) if arr.size else 0.0
    moved = sitk.Resample(image, image, transform, sitk.sitkLinear, fill, sitk.sitkFloat32)
    moved_mask = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), image, transform, sitk.sitkLinear, 0.0)
    moved_mask = sitk.Cast(moved_mask >= 0.5, sitk.sitkUInt8)
    if int(sitk.GetArrayViewFromImage(moved_mask).sum()) < _MIN_VOXELS:
        moved_mask = mask

    # 2+3. Volume change and contour randomisation on the signed distance map (mm, negative inside).
    out_mask = moved_mask
    if settings.volume_mm > 0 or settings.contour_mm > 0:
        from scipy.ndimage import gaussian_filter

        spacing_zyx = np.asarray(image.GetSpacing()[::-1], dtype=float)
        dist = signed_distance_mm(sitk.GetArrayViewFromImage(moved_mask) > 0, image.GetSpacing())
        offset = np.zeros_like(dist)
        if settings.contour_mm > 0:
            smooth = gaussian_filter(field, sigma=settings.contour_smoothing_mm / spacing_zyx, mode="nearest")
            std = float(smooth.std())
            if std > 0:
                offset = smooth / std * settings.contour_mm
        new = threshold_distance(dist + offset, volume_sign * settings.volume_mm)
        if int(new.sum()) >= _MIN_VOXELS:
            out_mask = sitk.GetImageFromArray(new)
            out_mask.CopyInformation(moved_mask)
        else:
            log.debug("perturbed mask too small; keeping the rigidly moved mask")

    # 4. Gaussian noise (HU).
    if settings.noise_hu > 0:
        noisy = sitk.GetArrayFromImage(moved) + (noise * settings.noise_hu).astype(np.float32)
        out = sitk.GetImageFromArray(noisy.astype(np.float32))
        out.CopyInformation(moved)
        moved = out
    return moved, out_mask


def signed_distance_mm(mask: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
    """Signed Euclidean distance in mm between voxel centres (array in z, y, x order).

    Outside the ROI: distance to the nearest ROI voxel (positive). Inside: minus the distance to the
    nearest background voxel. Anisotropic spacing is honoured, so thresholds are physical.
    """
    from scipy.ndimage import distance_transform_edt

    inside = np.asarray(mask, dtype=bool)
    sampling = tuple(float(s) for s in spacing_xyz[::-1])
    if not inside.any():
        return np.full(inside.shape, np.inf)
    if inside.all():
        return np.full(inside.shape, -np.inf)
    outside = distance_transform_edt(~inside, sampling=sampling)
    within = distance_transform_edt(inside, sampling=sampling)
    return np.where(inside, -within, outside)


def threshold_distance(signed: np.ndarray, distance_mm: float) -> np.ndarray:
    """Mask grown (``distance_mm`` > 0) or shrunk (< 0) by a physical distance, from a signed distance map.

    Dilation by ``r`` adds background voxels within ``r`` mm of the ROI; erosion by ``r`` removes ROI
    voxels within ``r`` mm of the background; 0 returns the ROI itself.
    """
    if distance_mm > 0:
        return (signed <= distance_mm).astype(np.uint8)
    return (signed < distance_mm).astype(np.uint8)


def adjust_volume(mask: sitk.Image, distance_mm: float) -> sitk.Image:
    """Dilate (``distance_mm`` > 0) or erode (< 0) a binary mask by a distance in mm."""
    arr = sitk.GetArrayViewFromImage(mask) > 0
    out = sitk.GetImageFromArray(threshold_distance(signed_distance_mm(arr, mask.GetSpacing()), distance_mm))
    out.CopyInformation(mask)
    return out


def stability_table(
    perturbed: Mapping[str, Sequence[Mapping[str, float]]],
    threshold: float = 0.75,
    model: str = "icc2_1",
) -> pd.DataFrame:
    """ICC per feature from the features of each patient's perturbed copies.

    Args:
        perturbed: Patient → list (one per copy, same length for all patients) of feature name → value.
            Only patients with every copy are used.
        threshold: A feature is ``stable`` when its ICC (``model``) is at least this.
        model: ``icc2_1`` or ``icc3_1``.

    Returns:
        DataFrame indexed by ``feature`` with columns ``icc3_1``, ``icc2_1``, ``n_subjects``,
        ``n_raters``, ``stable`` (bool; False where the ICC is NaN, e.g. a constant feature).
    """
    patients = sorted(perturbed)
    if len(patients) < 2:
        return pd.DataFrame(
            columns=["icc3_1", "icc2_1", "n_subjects", "n_raters", "stable"], index=pd.Index([], name="feature")
        )
    k = min(len(perturbed[p]) for p in patients)
    features = list(dict.fromkeys(name for p in patients for copy in perturbed[p] for name in copy))
    cube = np.full((len(patients), k, len(features)), np.nan)
    col = {name: j for j, name in enumerate(features)}
    for i, p in enumerate(patients):
        for r, copy in enumerate(perturbed[p][:k]):
            for name, value in copy.items():
                cube[i, r, col[name]] = value
    values = icc(cube)
    table = pd.DataFrame(
        {
            "icc3_1": values["icc3_1"],
            "icc2_1": values["icc2_1"],
            "n_subjects": len(patients),
            "n_raters": k,
        },
        index=pd.Index(features, name="feature"),
    )
    table["stable"] = (table[model] >= threshold).fillna(False).astype(bool)
    return table


def stability_patients(eligible: Iterable[str], max_patients: int | None, seed: int) -> frozenset[str]:
    """The patients whose perturbed copies feed the ICC: at most ``max_patients`` of ``eligible``.

    The choice ranks patients by a hash of ``(seed, patient_id)``, so it depends neither on the cohort's order nor
    on the worker count. With ``max_patients`` None, or no more eligible patients than that, all are chosen.
    """
    pool = sorted(set(eligible))
    if max_patients is None or len(pool) <= max_patients:
        return frozenset(pool)
    rank = sorted(pool, key=lambda pid: (stable_hash("stability-patients", seed, pid), pid))
    return frozenset(rank[:max_patients])
