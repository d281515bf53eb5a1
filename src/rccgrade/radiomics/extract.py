"""PyRadiomics extraction per phase: canonical orientation, per-case cache, parallel execution.

One work item is one (patient, phase): the phase image (registered onto the mask grid by the
preprocessing stage) and the mask are read, reoriented to LPS (PyRadiomics lays out its resampling
grid in index space, so a flipped axis would otherwise change features), and passed to
``radiomics.featureextractor.RadiomicsFeatureExtractor`` with the validated parameter mapping.
With stability on, the same item also extracts features from seeded perturbed copies.

Every finished item is written at once to ``<out_dir>/cache/<patient>/<phase>-<key>.json`` (``<patient>``:
:func:`rccgrade.safepath.safe_filename` of the id), where
``key`` hashes the parameters, label, stability settings, PyRadiomics version and the checksums of
the two input files. A re-run (or a run killed midway and restarted) extracts only items whose
cache file is missing, i.e. new or changed cases.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.cache import file_checksum, stable_hash
from rccgrade.cohort.types import Cohort
from rccgrade.errors import FeatureError, ImageError
from rccgrade.features.naming import radiomics_column
from rccgrade.parallel import Outcome, ParallelSettings, ProgressCallback, run_cases
from rccgrade.preprocess.orientation import CANONICAL, to_canonical
from rccgrade.radiomics.params import PYKWALIFY_LOCK, load_params
from rccgrade.radiomics.settings import RadiomicsSettings, StabilitySettings
from rccgrade.radiomics.stability import perturb, perturbation_rng, stability_table
from rccgrade.safepath import child_path, identifier_from_filename, safe_filename

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when the cached payload or the extraction procedure changes meaning."""

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


@dataclass
class RadiomicsResult:
    """Output of :func:`extract_radiomics`.

    Attributes:
        features: FeatureTable (index ``patient_id``, columns ``rad:<phase>:<feature>``), only patients
            whose every requested phase succeeded.
        diagnostics: PyRadiomics ``diagnostics_*`` values, index ``patient_id``, columns
            ``<phase>:<name>`` (kept apart from the features; never model inputs).
        failures: One row per failed (patient, phase): ``patient_id``, ``phase``, ``error``.
        stability: ICC per feature (index ``feature`` = the FeatureTable column), or None when disabled.
        files: Name → path of every file written.
        n_extracted: Items (patient × phase) computed in this run.
        n_cached: Items read from the cache.
    """

    features: pd.DataFrame
    diagnostics: pd.DataFrame
    failures: pd.DataFrame
    stability: pd.DataFrame | None
    files: dict[str, Path] = field(default_factory=dict)
    n_extracted: int = 0
    n_cached: int = 0


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


# --------------------------------------------------------------------------- one item


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


def _run_job(job: _Job) -> dict[str, Any]:
    """Extract one (patient, phase) item, write its cache file, return the payload (worker side)."""
    image = read_canonical(job.image, job.patient_id, f"{job.phase} image")
    mask = read_canonical(job.mask, job.patient_id, "mask")
    check_same_grid(image, mask, job.patient_id, job.image, job.mask)
    extractor = make_extractor(job.params)
    features, diagnostics = run_pyradiomics(extractor, image, mask, job.label, job.patient_id, job.image)
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
    }
    _write_json(job.cache_file, payload)
    return payload


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, allow_nan=True))
    tmp.replace(path)


# --------------------------------------------------------------------------- batch


def settings_fingerprint(settings: RadiomicsSettings, params: dict[str, Any]) -> dict[str, Any]:
    """What determines the features besides the input files (stored with the FeatureTable)."""
    import radiomics

    return {
        "stage": "radiomics",
        "cache_version": CACHE_VERSION,
        "pyradiomics": radiomics.__version__,
        "params_spec": settings.params,
        "params": params,
        "phases": list(settings.phases),
        "label": settings.label,
        "orientation": CANONICAL,
        "stability": settings.stability.model_dump(mode="json") if settings.stability.enabled else None,
    }


def extract_radiomics(
    cases: Sequence[RadiomicsInput] | Cohort,
    out_dir: Path,
    settings: RadiomicsSettings | None = None,
    parallel: ParallelSettings | None = None,
    progress: ProgressCallback | None = None,
    *,
    registered_dir: Path | None = None,
) -> RadiomicsResult:
    """Extract PyRadiomics features for every case and phase, with caching and per-case failures.

    Args:
        cases: Radiomics inputs, or a Cohort (then ``registered_dir`` points at the preprocessing
            stage's ``registered`` folder; without it the manifest's files are used).
        out_dir: Stage folder: ``features.parquet``, ``diagnostics.csv``, ``failures.csv``,
            ``stability.csv`` and ``cache/`` are written here.
        settings: Extraction settings (default :class:`RadiomicsSettings`).
        parallel: Executor (local processes by default; Dask with ``scheduler``).
        progress: ``progress(done, total)`` over the items that need extraction.

    Returns:
        A :class:`RadiomicsResult`.

    Raises:
        ConfigError: invalid parameter file.
    """
    settings = settings or RadiomicsSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(cases, Cohort):
        inputs = inputs_from_cohort(cases, settings.phases, registered_dir)
    else:
        inputs = list(cases)
    counts = Counter(i.patient_id for i in inputs)
    dups = sorted(p for p, n in counts.items() if n > 1)
    if dups:
        raise FeatureError(f"patients listed twice: {dups[:5]}; each patient_id must appear once")
    params = load_params(settings.params)
    fingerprint = settings_fingerprint(settings, params)
    stab = settings.stability if settings.stability.enabled else None

    failures: list[dict[str, str]] = []
    payloads: dict[tuple[str, str], dict[str, Any]] = {}
    todo: list[_Job] = []
    for inp in inputs:
        label = settings.label or inp.label or 1
        for phase in settings.phases:
            image = inp.images.get(phase)
            if image is None:
                failures.append({"patient_id": inp.patient_id, "phase": phase, "error": f"no {phase} image given"})
                continue
            missing = [(what, p) for what, p in ((f"{phase} image", image), ("mask", inp.mask)) if not Path(p).exists()]
            if missing:
                what, path = missing[0]
                err = ImageError(
                    f"{what} file not found; check the manifest or re-run preprocessing",
                    patient_id=inp.patient_id,
                    path=path,
                )
                failures.append({"patient_id": inp.patient_id, "phase": phase, "error": str(err)})
                continue
            try:
                sums = [file_checksum(image), file_checksum(inp.mask)]
            except OSError as exc:
                err = ImageError(f"cannot read input: {exc}", patient_id=inp.patient_id, path=image)
                failures.append({"patient_id": inp.patient_id, "phase": phase, "error": str(err)})
                continue
            key = stable_hash(fingerprint, label, sums)
            cache_file = child_path(child_path(out_dir / "cache", inp.patient_id), f"{phase}-{key}.json")
            if cache_file.is_file():
                try:
                    payloads[(inp.patient_id, phase)] = json.loads(cache_file.read_text())
                    continue
                except (OSError, ValueError):
                    log.warning("unreadable cache file %s; extracting again", cache_file)
            todo.append(_Job(inp.patient_id, phase, Path(image), Path(inp.mask), label, params, stab, cache_file))

    n_cached = len(payloads)
    log.info("radiomics: %d item(s) cached, %d to extract", n_cached, len(todo))
    outcomes: list[Outcome[dict[str, Any]]] = run_cases(
        _run_job, todo, keys=[f"{j.patient_id}/{j.phase}" for j in todo], settings=parallel, progress=progress
    )
    for job, outcome in zip(todo, outcomes, strict=True):
        if outcome.ok and outcome.value is not None:
            payloads[(job.patient_id, job.phase)] = outcome.value
        else:
            failures.append({"patient_id": job.patient_id, "phase": job.phase, "error": outcome.error or "unknown"})

    result = _assemble(inputs, settings, payloads, failures)
    result.n_extracted = len(todo) - sum(not o.ok for o in outcomes)
    result.n_cached = n_cached
    result.files = _write_outputs(result, out_dir, fingerprint)
    return result


def _assemble(
    inputs: Sequence[RadiomicsInput],
    settings: RadiomicsSettings,
    payloads: dict[tuple[str, str], dict[str, Any]],
    failures: list[dict[str, str]],
) -> RadiomicsResult:
    failed = {f["patient_id"] for f in failures}
    rows: dict[str, dict[str, float]] = {}
    diag_rows: dict[str, dict[str, Any]] = {}
    perturbed: dict[str, list[dict[str, float]]] = {}
    for inp in inputs:
        pid = inp.patient_id
        if pid in failed:
            continue
        row: dict[str, float] = {}
        diag: dict[str, Any] = {}
        copies: list[dict[str, float]] = []
        for phase in settings.phases:
            payload = payloads[(pid, phase)]
            row.update({radiomics_column(phase, k): v for k, v in payload["features"].items()})
            diag.update({f"{phase}:{k}": v for k, v in payload["diagnostics"].items()})
            for i, copy in enumerate(payload.get("perturbed", [])):
                if len(copies) <= i:
                    copies.append({})
                copies[i].update({radiomics_column(phase, k): v for k, v in copy.items()})
        rows[pid] = row
        diag_rows[pid] = diag
        perturbed[pid] = copies
    features = pd.DataFrame.from_dict(rows, orient="index", dtype=np.float64)
    if not rows:
        features = pd.DataFrame(dtype=np.float64)
    features.index.name = "patient_id"
    diagnostics = pd.DataFrame.from_dict(diag_rows, orient="index")
    diagnostics.index.name = "patient_id"
    fail_frame = pd.DataFrame(failures, columns=["patient_id", "phase", "error"])
    stab = None
    if settings.stability.enabled:
        stab = stability_table(
            {p: c for p, c in perturbed.items() if c},
            threshold=settings.stability.threshold,
            model=settings.stability.icc_model,
        )
        if not features.empty:
            stab = stab.reindex([c for c in features.columns if c in stab.index])
    return RadiomicsResult(features=features, diagnostics=diagnostics, failures=fail_frame, stability=stab)


def _write_outputs(result: RadiomicsResult, out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Path]:
    from rccgrade.features.table import save_table  # pyarrow: main process only, not in every worker

    files = {
        "features": save_table(result.features, out_dir / "features.parquet", settings=fingerprint),
        "diagnostics": out_dir / "diagnostics.csv",
        "failures": out_dir / "failures.csv",
    }
    result.diagnostics.to_csv(files["diagnostics"])
    result.failures.to_csv(files["failures"], index=False)
    if result.stability is not None:
        files["stability"] = out_dir / "stability.csv"
        result.stability.to_csv(files["stability"])
    return files


def stable_features(stability: pd.DataFrame) -> list[str]:
    """FeatureTable columns marked stable in a ``stability.csv`` table (ICC ≥ threshold)."""
    return [str(f) for f, ok in stability["stable"].items() if bool(ok)]


def load_stability(path: Path) -> pd.DataFrame:
    """Read a ``stability.csv`` written by :func:`extract_radiomics`.

    Raises:
        FeatureError: the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureError("stability table not found; run radiomics with stability enabled", path=path)
    return pd.read_csv(path, index_col="feature", float_precision="round_trip")


def direct_features(image: sitk.Image, mask: sitk.Image, params: dict[str, Any], label: int = 1) -> dict[str, float]:
    """Features of an in-memory image/mask pair, canonicalised to LPS first (for notebooks and tests)."""
    image = to_canonical(image, CANONICAL)
    mask = to_canonical(mask, CANONICAL)
    features, _ = run_pyradiomics(make_extractor(params), image, mask, label, "<memory>", Path("<memory>"))
    return features
