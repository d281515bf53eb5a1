"""Where preprocessing puts a case's files (read by the radiomics stage and the QC tools).

Every per-case name goes through :func:`rccgrade.safepath.child_path`, so a patient id is never used as a path.
"""

from __future__ import annotations

from pathlib import Path

from rccgrade.cohort.types import PHASES
from rccgrade.errors import PreprocessError
from rccgrade.safepath import child_path

REGISTERED_DIR = "registered"
QC_DIR = "qc"
CACHE_DIR = "cache"

__all__ = [
    "CACHE_DIR",
    "QC_DIR",
    "REGISTERED_DIR",
    "case_cache_path",
    "qc_montage_path",
    "qc_thumb_path",
    "registered_dir",
    "registered_paths",
]


def registered_dir(out_dir: str | Path, patient_id: str) -> Path:
    """``<out_dir>/registered/<safe name of patient_id>``: the folder of a case's registered images."""
    return child_path(Path(out_dir) / REGISTERED_DIR, patient_id)


def case_cache_path(out_dir: str | Path, patient_id: str) -> Path:
    """``<out_dir>/cache/<safe name>.json``: a case's cache key and results."""
    return child_path(Path(out_dir) / CACHE_DIR, patient_id, ".json")


def qc_montage_path(out_dir: str | Path, patient_id: str) -> Path:
    """``<out_dir>/qc/<safe name>.png``: a case's QC montage."""
    return child_path(Path(out_dir) / QC_DIR, patient_id, ".png")


def qc_thumb_path(out_dir: str | Path, patient_id: str) -> Path:
    """``<out_dir>/qc/thumbs/<safe name>.npz``: a case's thumbnail for the cohort sheet."""
    return child_path(Path(out_dir) / QC_DIR / "thumbs", patient_id, ".npz")


def registered_paths(out_dir: str | Path, patient_id: str) -> dict[str, Path]:
    """Registered NIfTI files of a case: phase → path, plus ``"mask"`` → the mask (existing files only).

    Every image lies on the mask phase's grid in LPS orientation, so the radiomics stage can use any
    phase with the one mask.

    Raises:
        PreprocessError: the case has no registered folder (preprocessing failed or has not run).
    """
    folder = registered_dir(out_dir, patient_id)
    if not folder.is_dir():
        raise PreprocessError(
            "no registered images for this case; run preprocessing first, or check status.csv for its error",
            patient_id=patient_id,
            path=folder,
        )
    out = {p: folder / f"{p}.nii.gz" for p in PHASES if (folder / f"{p}.nii.gz").is_file()}
    for extra in sorted(folder.glob("*.nii.gz")):
        name = extra.name[: -len(".nii.gz")]
        if name not in out and name != "mask":
            out[name] = extra
    if (folder / "mask.nii.gz").is_file():
        out["mask"] = folder / "mask.nii.gz"
    return out
