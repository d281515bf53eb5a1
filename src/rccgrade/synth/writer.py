"""Write a synthetic cohort to disk in the manifest format, plus its ground truth.

Layout of ``out_dir``::

    manifest.csv      patient_id, arterial, nephrographic, excretory, mask, grade, center, clinical …
    truth.csv         p_high and every latent factor, applied misalignment, image parameters
    synth.json        how the cohort was generated (n, seed, size, format, package version)
    images/<patient_id>/arterial.nii.gz | nephrographic.nii.gz | excretory.nii.gz   (nifti)
    images/<patient_id>/arterial/ | nephrographic/ | excretory/  (dicom: one series folder each)
    images/<patient_id>/mask.nii.gz    (both formats; on the arterial grid)

Images are stored as 16-bit integers (HU rounded to the nearest integer, clipped to [-1024, 3071]),
like scanner output. The pipeline must never read ``truth.csv`` as input: it is for evaluating
what the pipeline learned.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.errors import RccgradeError
from rccgrade.parallel import ParallelSettings, run_cases
from rccgrade.safepath import child_path
from rccgrade.synth.generator import SIZES, SynthCase, generate_case
from rccgrade.synth.kinetics import PHASES
from rccgrade.synth.latent import CENTERS, CLINICAL_COLUMNS, center_probabilities, patient_id

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("nifti", "dicom")
HU_MIN: int = -1024
HU_MAX: int = 3071


def to_int16_image(image: sitk.Image) -> sitk.Image:
    """The image with HU rounded to integers, clipped to [-1024, 3071] and stored as int16."""
    arr = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(np.clip(np.rint(arr), HU_MIN, HU_MAX).astype(np.int16))
    out.CopyInformation(image)
    return out


@dataclass(frozen=True)
class _Job:
    index: int
    seed: int
    size: str
    fmt: str
    out_dir: str
    center_weights: dict[str, float] | None = None


def write_case(case: SynthCase, out_dir: Path, fmt: str = "nifti") -> dict[str, Any]:
    """Write one generated case under ``out_dir/images/<patient_id>/`` (the id's safepath file name).

    Args:
        case: The generated case.
        out_dir: Cohort folder (the manifest's folder).
        fmt: ``nifti`` (one ``.nii.gz`` per phase) or ``dicom`` (one series folder per phase).

    Returns:
        The case's manifest row (paths relative to ``out_dir``).
    """
    if fmt not in FORMATS:
        raise RccgradeError(f"unknown synthetic image format {fmt!r}; use one of {FORMATS}")
    folder = child_path(Path(out_dir) / "images", case.patient_id)
    folder.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"patient_id": case.patient_id}
    for k, phase in enumerate(PHASES):
        img = to_int16_image(case.images[phase])
        if fmt == "nifti":
            path = folder / f"{phase}.nii.gz"
            sitk.WriteImage(img, str(path), useCompression=True)
        else:
            from rccgrade.cohort.dicom import write_dicom_series

            path = folder / phase
            write_dicom_series(
                img,
                path,
                patient_id=case.patient_id,
                series_description=phase,
                series_number=k + 1,
                rescale_slope=1.0,
                rescale_intercept=float(HU_MIN),
            )
        row[phase] = path.relative_to(out_dir).as_posix()
    mask_path = folder / "mask.nii.gz"
    sitk.WriteImage(case.mask, str(mask_path), useCompression=True)
    row["mask"] = mask_path.relative_to(out_dir).as_posix()
    row["grade"] = case.grade
    row["center"] = case.center
    for name in CLINICAL_COLUMNS:
        row[name] = case.clinical.get(name)
    return row


def _generate_and_write(job: _Job) -> dict[str, Any]:
    case = generate_case(job.index, job.seed, job.size, job.center_weights)
    row = write_case(case, Path(job.out_dir), job.fmt)
    return {"manifest": row, "truth": case.truth}


def _prepare_folder(out: Path) -> None:
    """Create ``out``; clear an earlier synthetic cohort there; never touch a folder holding real data."""
    if (out / "manifest.csv").exists() and not (out / "synth.json").exists():
        raise RccgradeError(
            "the folder already holds a manifest.csv that rccgrade synth did not write; "
            "choose an empty or new output folder",
            path=out,
        )
    if (out / "synth.json").exists() and (out / "images").is_dir():
        shutil.rmtree(out / "images")
    out.mkdir(parents=True, exist_ok=True)


def write_cohort(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: str = "small",
    fmt: str = "nifti",
    parallel: ParallelSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    center_weights: dict[str, float] | None = None,
) -> Path:
    """Generate ``n`` patients and write them as a cohort (manifest, images, masks, truth).

    Patient ``i`` is ``generate_case(i, seed, size)``: the same whether written alone or in a cohort
    of any size, and whatever the number of workers.

    Args:
        out_dir: Output folder (created). An earlier synthetic cohort there (recognised by its
            ``synth.json``) is replaced; a folder with any other ``manifest.csv`` is refused.
        n: Number of patients (≥ 1).
        seed: Cohort seed.
        size: ``small`` or ``realistic``.
        fmt: ``nifti`` or ``dicom`` (masks are NIfTI in both).
        parallel: Executor settings (default: local processes on all cores).
        progress: Optional callback ``progress(done, total)``.
        center_weights: Acquisition mix, centre → weight (None: the default mix A/B/C 45/35/20%). Changes
            only which scanner profile images each patient (``truth.csv`` ``p_high`` is unchanged).

    Returns:
        Path of ``manifest.csv``.

    Raises:
        RccgradeError: invalid arguments, or cases that failed (listed by patient).
    """
    if n < 1:
        raise RccgradeError(f"the number of patients must be at least 1, got {n}; pass --n 100 for example")
    if seed < 0:
        raise RccgradeError(f"the seed must be non-negative, got {seed}")
    if size not in SIZES:
        raise RccgradeError(f"unknown size {size!r}; use one of {SIZES}")
    if fmt not in FORMATS:
        raise RccgradeError(f"unknown format {fmt!r}; use one of {FORMATS}")
    try:
        probabilities = center_probabilities(center_weights)
    except ValueError as exc:
        raise RccgradeError(str(exc)) from None
    out = Path(out_dir).resolve()
    _prepare_folder(out)
    jobs = [_Job(i, seed, size, fmt, str(out), center_weights) for i in range(n)]
    keys = [patient_id(i) for i in range(n)]
    outcomes = run_cases(_generate_and_write, jobs, keys, parallel, progress)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        lines = "; ".join(f"{o.key}: {o.error}" for o in failed[:5])
        raise RccgradeError(
            f"{len(failed)} of {n} synthetic cases failed ({lines}). This is a bug in the generator: "
            "please report it with the seed and size.",
            path=out,
        )
    manifest = pd.DataFrame([o.value["manifest"] for o in outcomes if o.value is not None])
    for col in ("age", "symptoms", "platelets"):
        manifest[col] = pd.to_numeric(manifest[col]).astype("Int64")
    truth = pd.DataFrame([o.value["truth"] for o in outcomes if o.value is not None])
    manifest_path = out / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    truth.to_csv(out / "truth.csv", index=False)
    from rccgrade import __version__

    meta = {
        "generator": "rccgrade.synth",
        "version": __version__,
        "n": n,
        "seed": seed,
        "size": size,
        "format": fmt,
        "center_mix": dict(zip(CENTERS, probabilities, strict=True)),
        "prevalence": float(truth["high_grade"].mean()),
        "note": "truth.csv holds the ground truth; the pipeline must never read it as input.",
    }
    (out / "synth.json").write_text(json.dumps(meta, indent=2))
    log.info("wrote %d synthetic patients to %s", n, out)
    return manifest_path
