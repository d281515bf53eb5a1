"""Tiny synthetic CT cases (built in code) and a fast original-features-only parameter set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.radiomics.extract import RadiomicsInput

SHAPE_ZYX = (24, 32, 32)
SPACING = (0.9, 0.8, 2.0)  # x, y, z in mm (anisotropic on purpose)


def make_case(seed: int, shape_zyx: tuple[int, int, int] = SHAPE_ZYX) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """Arterial + nephrographic images (HU) and a binary tumour mask, stored in LPS."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx, dtype=float)
    cz, cy, cx = (s / 2 + rng.uniform(-1.5, 1.5) for s in shape_zyx)
    r = (((z - cz) * SPACING[2]) ** 2 + ((y - cy) * SPACING[1]) ** 2 + ((x - cx) * SPACING[0]) ** 2) ** 0.5
    radius = 7.0 + rng.uniform(0, 3)
    mask = (r <= radius).astype(np.uint8)
    # asymmetric tumour (an off-centre bump) so that axis flips would matter without canonicalisation
    mask[(z > cz) & (x > cx) & (r <= radius + 2.5)] = 1
    images = []
    for base in (150.0, 110.0):
        arr = 40.0 + rng.normal(0, 15, shape_zyx)
        arr += mask * (base + 40.0 * np.sin(x / 2.0) * np.cos(y / 3.0) + rng.normal(0, 20, shape_zyx))
        arr += 30.0 * (x / shape_zyx[2])  # gradient: breaks mirror symmetry of the intensities
        img = sitk.GetImageFromArray(arr.astype(np.int16))
        img.SetSpacing(SPACING)
        img.SetOrigin((-12.0, 30.0, -100.0))
        images.append(img)
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(images[0])
    return images[0], images[1], m


def write_cases(root: Path, n: int, seed0: int = 0) -> list[RadiomicsInput]:
    """Write ``n`` cases as NIfTI under ``root`` and return their radiomics inputs."""
    out = []
    for i in range(n):
        art, neph, mask = make_case(seed0 + i)
        folder = root / f"P{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(art, str(folder / "arterial.nii.gz"))
        sitk.WriteImage(neph, str(folder / "nephrographic.nii.gz"))
        sitk.WriteImage(mask, str(folder / "mask.nii.gz"))
        out.append(
            RadiomicsInput(
                f"P{i:03d}",
                {"arterial": folder / "arterial.nii.gz", "nephrographic": folder / "nephrographic.nii.gz"},
                folder / "mask.nii.gz",
            )
        )
    return out


FAST_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {c: None for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")},
    "setting": {
        "resampledPixelSpacing": [1.5, 1.5, 1.5],
        "interpolator": "sitkBSpline",
        "preCrop": True,
        "binWidth": 25,
        "label": 1,
    },
}
