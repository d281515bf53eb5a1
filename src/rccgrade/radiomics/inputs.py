"""Radiomics inputs: which image and mask files a patient contributes, read in canonical (LPS) orientation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.cohort.types import Cohort
from rccgrade.errors import FeatureError, ImageError
from rccgrade.preprocess.orientation import CANONICAL, to_canonical
from rccgrade.safepath import child_path, identifier_from_filename, safe_filename

log = logging.getLogger(__name__)

_GEOMETRY_TOL = 1e-4


@dataclass(frozen=True)
class RadiomicsInput:
    """What one patient contributes: a phase → image path mapping and the mask on the same grid.

    Attributes:
        patient_id: Patient identifier.
        images: Phase name → image file (or DICOM folder), on the mask's grid.
        mask: Tumour mask file.
        label: Tumour label in a multi-label mask (None: the settings' label, else 1).
    """

    patient_id: str
    images: dict[str, Path]
    mask: Path
    label: int | None = None


# --------------------------------------------------------------------------- inputs


def inputs_from_cohort(
    cohort: Cohort, phases: Sequence[str], registered_dir: Path | None = None
) -> list[RadiomicsInput]:
    """Radiomics inputs for every case of a cohort.

    Args:
        cohort: The cohort.
        phases: Phases wanted.
        registered_dir: When given, images are ``<registered_dir>/<patient_id>/<phase>.nii.gz`` and the
            mask ``<registered_dir>/<patient_id>/mask.nii.gz`` (the preprocessing stage's output);
            otherwise the manifest's own files are used (only valid when they share the mask's grid).
    """
    out = []
    for case in cohort:
        if registered_dir is not None:
            folder = child_path(registered_dir, case.patient_id)
            images = {p: folder / f"{p}.nii.gz" for p in phases}
            mask = folder / "mask.nii.gz"
        else:
            images = {p: Path(case.images[p]) for p in phases if p in case.images}
            mask = Path(case.mask)
        out.append(RadiomicsInput(case.patient_id, images, mask, case.label))
    return out


def inputs_from_preprocess_dir(preprocess_dir: Path, phases: Sequence[str]) -> list[RadiomicsInput]:
    """Radiomics inputs from a preprocessing output folder (``<dir>/registered/<patient_id>/…``).

    Raises:
        FeatureError: the folder has no ``registered`` sub-folder or no patients in it.
    """
    root = Path(preprocess_dir) / "registered"
    ids_by_name: dict[str, str] = {}
    status = Path(preprocess_dir) / "status.csv"
    if status.is_file():
        ids = pd.read_csv(status, usecols=["patient_id"], dtype=str, keep_default_na=False)["patient_id"]
        ids_by_name = {safe_filename(p): p for p in ids if p}
    if not root.is_dir():
        raise FeatureError(
            "no 'registered' folder here; run 'rccgrade preprocess' first or pass a manifest", path=preprocess_dir
        )
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        # folder names are safepath names of the ids; the preprocessing status table holds the originals
        pid = ids_by_name.get(folder.name) or identifier_from_filename(folder.name)
        if pid is None:
            log.warning("skipping %s: not a patient folder written by preprocessing", folder)
            continue
        images = {p: folder / f"{p}.nii.gz" for p in phases}
        out.append(RadiomicsInput(pid, images, folder / "mask.nii.gz"))
    if not out:
        raise FeatureError("no patient folders under registered/", path=root)
    return out


def read_canonical(path: Path, patient_id: str, what: str) -> sitk.Image:
    """Read an image or mask and reorient it to LPS (no interpolation).

    Raises:
        ImageError: missing or unreadable file, or not 3D.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(
            f"{what} file not found; check the manifest or re-run preprocessing", patient_id=patient_id, path=path
        )
    from rccgrade.cohort.io import read_image

    try:
        image = read_image(path, patient_id=patient_id)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a DICOM folder SimpleITK cannot parse
        raise ImageError(
            f"cannot read {what}: {str(exc).strip().splitlines()[-1]}", patient_id=patient_id, path=path
        ) from None
    if image.GetDimension() != 3:
        raise ImageError(f"{what} is {image.GetDimension()}D; a 3D volume is needed", patient_id=patient_id, path=path)
    return to_canonical(image, CANONICAL)


def check_same_grid(image: sitk.Image, mask: sitk.Image, patient_id: str, image_path: Path, mask_path: Path) -> None:
    """Raise :class:`ImageError` unless image and mask share size, spacing, origin and direction."""
    problems = []
    if image.GetSize() != mask.GetSize():
        problems.append(f"size {image.GetSize()} vs {mask.GetSize()}")
    if not np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=_GEOMETRY_TOL, atol=_GEOMETRY_TOL):
        problems.append(f"spacing {image.GetSpacing()} vs {mask.GetSpacing()}")
    if not np.allclose(image.GetOrigin(), mask.GetOrigin(), rtol=_GEOMETRY_TOL, atol=1e-3):
        problems.append(f"origin {image.GetOrigin()} vs {mask.GetOrigin()}")
    if not np.allclose(image.GetDirection(), mask.GetDirection(), atol=_GEOMETRY_TOL):
        problems.append("direction")
    if problems:
        raise ImageError(
            f"image and mask ({mask_path}) are on different grids ({'; '.join(problems)}); extract from the "
            "registered phases written by 'rccgrade preprocess' (<preprocess_dir>/registered/)",
            patient_id=patient_id,
            path=image_path,
        )
