"""Several lesions in one tumour mask: count them, keep the largest, or split them into rows.

RCC can be multifocal or bilateral. A mask holding two tumours gives meaningless shape features
(the "maximum diameter" becomes the distance between them), so:

* :func:`find_lesions` labels the connected components of a binary mask (26-connectivity by
  default) and measures each in mm³ (voxel count × voxel volume); components below
  ``min_volume_mm3`` are specks (a stray click), not lesions. Lesions are numbered by decreasing
  volume (ties: the one whose first voxel comes first in z, y, x order).
* ``rccgrade validate`` reports ``multiple_lesions`` with the count and volumes (a warning, or an
  error with ``cohort.lesions: error``).
* ``rccgrade lesions MANIFEST --out DIR --policy largest|each`` (:func:`apply_lesion_policy`) writes
  new masks and a new manifest: ``largest`` keeps the index lesion of every mask; ``each`` writes
  one row per lesion named ``<patient>_L1``, ``<patient>_L2`` … with ``source_patient_id``, and
  requires a ``split`` column so that every lesion of a patient stays on one side of the split.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.errors import CohortError, ImageError

log = logging.getLogger(__name__)

POLICIES: tuple[str, ...] = ("largest", "each", "error")


@dataclass(frozen=True, eq=False)
class Lesions:
    """Connected components of a mask.

    Attributes:
        volumes_mm3: Volume of each lesion (≥ the minimum), decreasing; lesion ``i + 1`` is
            ``labels == i + 1``.
        speck_volumes_mm3: Volumes of the components below the minimum (dropped), decreasing.
        labels: Array (z, y, x) int32: 0 background and specks, 1..count the lesions.
        voxel_volume_mm3: Volume of one voxel.
    """

    volumes_mm3: tuple[float, ...]
    speck_volumes_mm3: tuple[float, ...]
    labels: np.ndarray = field(repr=False)
    voxel_volume_mm3: float

    @property
    def count(self) -> int:
        """Number of lesions (components of at least the minimum volume)."""
        return len(self.volumes_mm3)

    def describe(self) -> str:
        """``"2 lesions: 4180 mm³, 905 mm³ (1 speck < min dropped)"``."""
        text = f"{self.count} lesion{'s' if self.count != 1 else ''}: " + ", ".join(
            f"{v:.0f} mm³" for v in self.volumes_mm3
        )
        if self.speck_volumes_mm3:
            text += f" ({len(self.speck_volumes_mm3)} smaller speck(s) ignored)"
        return text


def find_lesions(mask: sitk.Image, *, min_volume_mm3: float = 10.0, connectivity: int = 26) -> Lesions:
    """Connected components of a binary mask (non-zero = tumour), measured in mm³.

    Args:
        mask: 3D mask; every non-zero voxel is tumour.
        min_volume_mm3: Components smaller than this are specks.
        connectivity: 26 (faces, edges, corners) or 6 (faces only).
    """
    from scipy import ndimage

    if connectivity not in (6, 26):
        raise ValueError("connectivity must be 6 or 26")
    full = sitk.GetArrayViewFromImage(mask)
    voxel = float(np.prod(mask.GetSpacing()))
    box = _nonzero_box(full)
    if box is None:
        return Lesions((), (), np.zeros(full.shape, dtype=np.int32), voxel)
    # label inside the mask's bounding box only: a tumour fills a few thousandth of a 512² × 300 grid,
    # and whole-grid int32/int64 work arrays took ~1 GB and seconds per case
    arr = full[box] != 0
    structure = ndimage.generate_binary_structure(3, 3 if connectivity == 26 else 1)
    labels, n = ndimage.label(arr, structure=structure)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # first voxel of each component in z, y, x order (the box keeps that order)
    first = ndimage.minimum(np.arange(labels.size).reshape(labels.shape), labels, index=np.arange(1, n + 1))
    order = sorted(range(n), key=lambda i: (-int(counts[i]), float(first[i])))
    remap = np.zeros(n + 1, dtype=np.int32)
    kept: list[float] = []
    specks: list[float] = []
    for i in order:
        volume = float(counts[i]) * voxel
        if volume >= min_volume_mm3:
            kept.append(volume)
            remap[i + 1] = len(kept)
        else:
            specks.append(volume)
    out = np.zeros(full.shape, dtype=np.int32)
    out[box] = remap[labels]
    return Lesions(tuple(kept), tuple(sorted(specks, reverse=True)), out, voxel)


def _nonzero_box(arr: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the bounding box of the non-zero voxels of ``arr``, or None when there are none."""
    box = []
    for axis in range(arr.ndim):
        hit = np.flatnonzero(np.any(arr, axis=tuple(a for a in range(arr.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def lesion_mask(mask: sitk.Image, lesions: Lesions, number: int) -> sitk.Image:
    """Binary uint8 mask of lesion ``number`` (1 = the largest), on ``mask``'s grid."""
    if not 1 <= number <= lesions.count:
        raise ValueError(f"lesion {number} does not exist ({lesions.count} lesions)")
    out = sitk.GetImageFromArray((lesions.labels == number).astype(np.uint8))
    out.CopyInformation(mask)
    return out


@dataclass(frozen=True)
class LesionResult:
    """What :func:`apply_lesion_policy` did.

    Attributes:
        manifest: The new manifest.
        report: ``lesions.csv``: one row per (patient, lesion) with volume and fate.
        rows: Rows written to the new manifest.
        failures: Patient → error message for cases whose mask could not be read (their rows are
            copied unchanged and listed in the report).
    """

    manifest: Path
    report: Path
    rows: int
    failures: dict[str, str]


def apply_lesion_policy(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    policy: str = "largest",
    min_volume_mm3: float = 10.0,
    settings: object | None = None,
) -> LesionResult:
    """Rewrite a manifest so that every mask holds one lesion (see the module docstring).

    Masks are read with :func:`rccgrade.cohort.io.read_mask` (segment / label of each row, on the
    mask phase's grid) and written as ``<out_dir>/masks/<patient>[_L<k>].nii.gz``. Image paths are
    rewritten relative to the new manifest; every input row appears in the output (or, for
    ``each``, as its lesions) and in ``lesions.csv``.

    Raises:
        CohortError: unknown policy, ``each`` without a complete ``split`` column, ``error`` with a
            multi-lesion mask, or the output would overwrite the input manifest.
    """
    import pandas as pd

    from rccgrade.cohort.io import read_image, read_mask
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.settings import CohortSettings
    from rccgrade.safepath import child_path

    if policy not in POLICIES:
        raise CohortError(f"unknown lesion policy '{policy}'; use one of {', '.join(POLICIES)}")
    settings = settings if isinstance(settings, CohortSettings) else CohortSettings(require_labels=False)
    manifest = Path(manifest).expanduser().resolve()
    out_dir = Path(out_dir).expanduser().resolve()
    new_manifest = out_dir / "manifest.csv"
    if new_manifest == manifest:
        raise CohortError("--out must be another folder than the manifest's", path=out_dir)
    cohort = load_cohort(manifest, settings=settings)
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    lower = {c.lower(): c for c in frame.columns}
    if policy == "each":
        split_col = lower.get("split")
        if split_col is None or (frame[split_col].str.strip() == "").any():
            raise CohortError(
                "policy 'each' needs a 'split' column (train/test) filled for every patient, so that all lesions "
                "of a patient stay on one side of the split; add it or use --policy largest",
                path=manifest,
            )
    mask_dir = out_dir / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    path_cols = [lower[c] for c in ("mask", *settings.phases) if c in lower]
    rows: list[dict[str, str]] = []
    report: list[dict[str, object]] = []
    failures: dict[str, str] = {}

    def rebase(row: dict[str, str]) -> dict[str, str]:
        out = dict(row)
        for col in path_cols:
            text = out[col].strip()
            if text:
                full = Path(os.path.normpath(manifest.parent / os.path.expanduser(text)))
                out[col] = Path(os.path.relpath(full, out_dir)).as_posix()
        return out

    for case, raw in zip(cohort.cases, frame.to_dict(orient="records"), strict=True):
        pid = case.patient_id
        base = rebase({k: str(v) for k, v in raw.items()})
        try:
            reference = (
                read_image(case.images[case.mask_phase], patient_id=pid) if case.mask_phase in case.images else None
            )
            mask = read_mask(
                case.mask,
                patient_id=pid,
                series_uid=case.series_uids.get("mask"),
                label=case.label,
                segment=case.mask_segment,
                reference=reference,
            )
            found = find_lesions(mask, min_volume_mm3=min_volume_mm3)
            if found.count == 0:
                raise ImageError(
                    f"no lesion of at least {min_volume_mm3:g} mm³ in the mask ({found.describe()})",
                    patient_id=pid,
                    path=case.mask,
                )
        except ImageError as exc:
            failures[pid] = str(exc)
            rows.append(base)
            report.append({"patient_id": pid, "lesion": "", "volume_mm3": "", "fate": f"copied unchanged: {exc}"})
            continue
        if policy == "error" and found.count > 1:
            raise CohortError(f"mask holds {found.describe()}; policy 'error'", path=case.mask)
        keep = range(1, 2) if policy in ("largest", "error") else range(1, found.count + 1)
        for k in range(1, found.count + 1):
            name = pid if policy != "each" or found.count == 1 else f"{pid}_L{k}"
            fate = "kept" if k in keep else "dropped (not the largest)"
            report.append(
                {"patient_id": pid, "lesion": k, "volume_mm3": round(found.volumes_mm3[k - 1], 3), "fate": fate}
            )
            if k not in keep:
                continue
            target = child_path(mask_dir, name, ".nii.gz")
            sitk.WriteImage(lesion_mask(mask, found, k), str(target), True)
            row = dict(base)
            row[lower["mask"]] = Path(os.path.relpath(target, out_dir)).as_posix()
            for col in ("label", "mask_segment", "mask_series_uid"):
                if col in lower:
                    row[lower[col]] = ""
            if policy == "each":
                row[lower["patient_id"]] = name
                row["source_patient_id"] = pid
            rows.append(row)
        for volume in found.speck_volumes_mm3:
            report.append(
                {"patient_id": pid, "lesion": "speck", "volume_mm3": round(volume, 3), "fate": "dropped (speck)"}
            )
    columns = list(frame.columns) + (["source_patient_id"] if policy == "each" else [])
    pd.DataFrame(rows, columns=columns).fillna("").to_csv(new_manifest, index=False, quoting=csv.QUOTE_MINIMAL)
    report_path = out_dir / "lesions.csv"
    pd.DataFrame(report, columns=["patient_id", "lesion", "volume_mm3", "fate"]).to_csv(report_path, index=False)
    return LesionResult(new_manifest, report_path, len(rows), failures)
