"""Where preprocessing puts a case's files (read by the radiomics stage and the QC tools)."""

from __future__ import annotations

from pathlib import Path

from rccgrade.cohort.types import PHASES
from rccgrade.errors import PreprocessError

REGISTERED_DIR = "registered"

__all__ = ["REGISTERED_DIR", "registered_paths"]


def registered_paths(out_dir: str | Path, patient_id: str) -> dict[str, Path]:
    """Registered NIfTI files of a case: phase → path, plus ``"mask"`` → the mask (existing files only).

    Every image lies on the mask phase's grid in LPS orientation, so the radiomics stage can use any
    phase with the one mask.

    Raises:
        PreprocessError: the case has no registered folder (preprocessing failed or has not run).
    """
    folder = Path(out_dir) / REGISTERED_DIR / patient_id
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
