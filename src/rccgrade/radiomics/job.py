"""One radiomics work item (a patient's phase): PyRadiomics on the tumour, its perturbed copies and its rings.

Runs in worker processes (or Dask workers): everything here is picklable and reads its inputs from disk.
The payload it returns (and writes to its cache file) holds

* ``features`` / ``diagnostics``: PyRadiomics on the tumour;
* ``perturbed``: the tumour's features on each perturbed copy (stability), else ``[]``;
* ``intensity``: mean and percentiles of the tumour's registered voxels (:mod:`rccgrade.radiomics.kinetic`);
* ``rings``: ring name (``"5"``) → ``{"n_voxels", "features"}`` or ``{"n_voxels", "error"}`` — a ring that
  cannot be described is an error of that ring only, never of the item.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from rccgrade.errors import FeatureError
from rccgrade.radiomics.inputs import check_same_grid, read_canonical
from rccgrade.radiomics.kinetic import tumour_intensity
from rccgrade.radiomics.params import PYKWALIFY_LOCK
from rccgrade.radiomics.regions import ring_masks
from rccgrade.radiomics.settings import StabilitySettings
from rccgrade.radiomics.stability import perturb, perturbation_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    """One (patient, phase) work item; picklable, sent to workers."""

    patient_id: str
    phase: str
    image: Path
    mask: Path
    label: int
    params: dict[str, Any]
    stability: StabilitySettings | None
    cache_file: Path
    rings_mm: tuple[float, ...] = ()
    ring_hu_range: tuple[float, float] = (-100.0, 300.0)
    ring_min_voxels: int = 10
    percentiles: tuple[float, ...] = (10.0, 50.0, 90.0)


def make_extractor(params: dict[str, Any]) -> Any:
    """A ``RadiomicsFeatureExtractor`` configured from a validated parameter mapping."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    # PyRadiomics validates the mapping with pykwalify, whose YAML schema loading is not thread-safe:
    # Dask workers running several threads would otherwise fail with ruamel ParserErrors.
    with PYKWALIFY_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pykwalify loads schemaFuncs with load_module()
        return RadiomicsFeatureExtractor(json.loads(json.dumps(params)))


def _to_float(value: Any) -> float:
    return float(np.asarray(value, dtype=np.float64))


def _jsonable_diag(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def run_pyradiomics(
    extractor: Any, image: sitk.Image, mask: sitk.Image, label: int, patient_id: str, source: Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """Features and diagnostics of one image/mask pair.

    Raises:
        FeatureError: PyRadiomics rejected the ROI (empty label, too small …).
    """
    try:
        result = extractor.execute(image, mask, label=label)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise FeatureError(
            f"PyRadiomics failed: {exc}. Check the mask holds label {label} with enough voxels "
            "(use --label for a multi-label mask)",
            patient_id=patient_id,
            path=source,
        ) from None
    features: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for name, value in result.items():
        if name.startswith("diagnostics_"):
            diagnostics[name] = _jsonable_diag(value)
        else:
            features[name] = _to_float(value)
    return features, diagnostics


def ring_key(ring_mm: float) -> str:
    """Key of a ring in payloads and cache files: ``5.0`` → ``"5"``, ``2.5`` → ``"2.5"``."""
    return f"{float(ring_mm):g}"


def is_shape_feature(name: str) -> bool:
    """PyRadiomics shape features (``original_shape_*``; left out for rings: they describe the ring's geometry)."""
    parts = name.split("_")
    return len(parts) >= 3 and parts[1] in ("shape", "shape2D")


def ring_features(extractor: Any, image: sitk.Image, tumour: np.ndarray, job: _Job) -> dict[str, dict[str, Any]]:
    """Features of each ring of a job's tumour (shape features left out), or the ring's problem."""
    out: dict[str, dict[str, Any]] = {}
    if not job.rings_mm:
        return out
    array = sitk.GetArrayViewFromImage(image)
    for ring in ring_masks(tumour, array, image.GetSpacing(), job.rings_mm, job.ring_hu_range, job.ring_min_voxels):
        key = ring_key(ring.ring_mm)
        if ring.problem is not None:
            out[key] = {"n_voxels": ring.n_voxels, "error": ring.problem}
            continue
        ring_image = sitk.GetImageFromArray(ring.mask)
        ring_image.CopyInformation(image)
        try:
            feats, _ = run_pyradiomics(extractor, image, ring_image, 1, job.patient_id, job.image)
        except FeatureError as exc:
            out[key] = {"n_voxels": ring.n_voxels, "error": str(exc)}
            continue
        out[key] = {"n_voxels": ring.n_voxels, "features": {k: v for k, v in feats.items() if not is_shape_feature(k)}}
    return out


def _run_job(job: _Job) -> dict[str, Any]:
    """Extract one (patient, phase) item, write its cache file, return the payload (worker side)."""
    image = read_canonical(job.image, job.patient_id, f"{job.phase} image")
    mask = read_canonical(job.mask, job.patient_id, "mask")
    check_same_grid(image, mask, job.patient_id, job.image, job.mask)
    extractor = make_extractor(job.params)
    features, diagnostics = run_pyradiomics(extractor, image, mask, job.label, job.patient_id, job.image)
    tumour = sitk.GetArrayViewFromImage(mask) == job.label
    intensity = tumour_intensity(sitk.GetArrayViewFromImage(image), tumour, job.percentiles)
    perturbed: list[dict[str, float]] = []
    if job.stability is not None:
        binary = sitk.Cast(mask == job.label, sitk.sitkUInt8)
        for copy in range(job.stability.n_perturbations):
            rng = perturbation_rng(job.stability.seed, job.patient_id, copy)
            p_image, p_mask = perturb(image, binary, rng, job.stability)
            p_feats, _ = run_pyradiomics(extractor, p_image, p_mask, 1, job.patient_id, job.image)
            perturbed.append(p_feats)
    payload = {
        "patient_id": job.patient_id,
        "phase": job.phase,
        "features": features,
        "diagnostics": diagnostics,
        "perturbed": perturbed,
        "intensity": intensity,
        "rings": ring_features(extractor, image, tumour, job),
    }
    _write_json(job.cache_file, payload)
    return payload


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, allow_nan=True))
    tmp.replace(path)
