"""Tiny synthetic multiphase CT phantoms built in code (no checked-in blobs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.types import Case

# HU per phase: (body, kidney cortex, tumour, spine, collecting system)
PHASE_HU = {
    "arterial": (40.0, 220.0, 140.0, 500.0, 30.0),
    "nephrographic": (45.0, 170.0, 100.0, 500.0, 60.0),
    "excretory": (45.0, 130.0, 70.0, 500.0, 320.0),
}


def phantom(
    phase: str,
    size: tuple[int, int, int] = (56, 56, 20),
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.5),
    seed: int = 0,
) -> tuple[sitk.Image, sitk.Image]:
    """A small abdomen-like phantom of one phase (float32 HU, LPS) and its tumour mask (uint8).

    Body ellipse, a kidney with cortex and collecting system, a spine, and a tumour blob on the kidney,
    plus smooth texture, so mutual information has structure to lock onto.
    """
    body, cortex, tumour_hu, spine, collecting = PHASE_HU[phase]
    nx, ny, nz = size
    z, y, x = np.meshgrid(
        (np.arange(nz) - nz / 2) * spacing[2],
        (np.arange(ny) - ny / 2) * spacing[1],
        (np.arange(nx) - nx / 2) * spacing[0],
        indexing="ij",
    )
    arr = np.full((nz, ny, nx), -1000.0)
    inside = (x / 38.0) ** 2 + (y / 30.0) ** 2 <= 1.0
    arr[inside] = body
    kidney = ((x - 12.0) / 11.0) ** 2 + ((y - 4.0) / 16.0) ** 2 + (z / 18.0) ** 2 <= 1.0
    arr[kidney] = cortex
    sinus = ((x - 14.0) / 4.0) ** 2 + ((y - 4.0) / 7.0) ** 2 + (z / 8.0) ** 2 <= 1.0
    arr[sinus] = collecting
    arr[(x / 6.0) ** 2 + ((y - 18.0) / 6.0) ** 2 <= 1.0] = spine
    tumour = ((x - 19.0) / 8.0) ** 2 + ((y + 6.0) / 7.0) ** 2 + (z / 9.0) ** 2 <= 1.0
    arr[tumour] = (tumour_hu + 25.0 * np.sin(x / 3.0) * np.cos(y / 4.0))[tumour]
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, arr.shape)
    from scipy import ndimage

    arr = arr + 12.0 * ndimage.gaussian_filter(noise, 1.0) * inside
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin((-nx / 2 * spacing[0], -ny / 2 * spacing[1], -nz / 2 * spacing[2]))
    mask = sitk.GetImageFromArray(tumour.astype(np.uint8))
    mask.CopyInformation(img)
    return img, mask


def rigid(angles_deg: tuple[float, float, float], translation_mm: tuple[float, float, float], centre) -> sitk.Transform:
    """Euler3D transform (fixed → moving) about ``centre``."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(float(c) for c in centre))
    tx.SetRotation(*[float(np.radians(a)) for a in angles_deg])
    tx.SetTranslation(tuple(float(t) for t in translation_mm))
    return tx


def misalign(image: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """The image as seen in a frame where ``transform`` maps fixed points to it: moving(T(x)) = image(x)."""
    return sitk.Resample(image, image, transform.GetInverse(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)


def tumour_centre(mask: sitk.Image) -> tuple[float, float, float]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return stats.GetCentroid(1)


def write_case(
    root: Path,
    pid: str,
    transforms: dict[str, sitk.Transform] | None = None,
    phases: tuple[str, ...] = ("arterial", "nephrographic", "excretory"),
    seed: int = 0,
) -> Case:
    """Write a phantom case as NIfTI files; ``transforms`` misaligns the given phases."""
    folder = root / pid
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    mask = None
    for i, phase in enumerate(phases):
        img, m = phantom(phase, seed=seed * 10 + i)
        if transforms and phase in transforms:
            img = misalign(img, transforms[phase])
        path = folder / f"{phase}.nii.gz"
        sitk.WriteImage(img, str(path))
        images[phase] = path
        if phase == "arterial" or mask is None:
            mask = m
    mask_path = folder / "mask.nii.gz"
    sitk.WriteImage(mask, str(mask_path))
    return Case(patient_id=pid, images=images, mask=mask_path, mask_phase=phases[0], grade=2, high_grade=0)
