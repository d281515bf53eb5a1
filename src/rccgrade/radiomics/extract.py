"""PyRadiomics extraction per phase: canonical orientation, per-case cache, parallel execution.

One work item is one (patient, phase) (:mod:`rccgrade.radiomics.job`): the phase image (registered onto the
mask grid by the preprocessing stage) and the mask are read, reoriented to LPS (PyRadiomics lays out its
resampling grid in index space, so a flipped axis would otherwise change features), and passed to
``radiomics.featureextractor.RadiomicsFeatureExtractor`` with the validated parameter mapping. The same item
describes the peritumoural rings (``radiomics.rings_mm``, :mod:`rccgrade.radiomics.regions`), the tumour's
intensity statistics for the kinetic features (:mod:`rccgrade.radiomics.kinetic`) and, with stability on,
seeded perturbed copies.

Every finished item is written at once to ``<out_dir>/cache/<patient>/<phase>-<key>.json`` (``<patient>``:
:func:`rccgrade.safepath.safe_filename` of the id), where
``key`` hashes the parameters, label, rings, kinetic and stability settings, the payload's version, the
PyRadiomics version and the checksums of the two input files. A re-run (or a run killed midway and
restarted) extracts only items whose cache file is missing, i.e. new or changed cases or settings.

The FeatureTable holds ``rad:<phase>:<f>`` (tumour), ``rad:<phase>@ring<N>mm:<f>`` (rings; NaN where a ring
could not be described, reason in ``regions_missing.csv``) and, with kinetic features on, ``kin:<f>``.
"""

from __future__ import annotations

import json
import logging
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
from rccgrade.errors import ConfigError, FeatureError, ImageError
from rccgrade.features.naming import radiomics_column
from rccgrade.parallel import Outcome, ParallelSettings, ProgressCallback, run_cases
from rccgrade.preprocess.orientation import CANONICAL, to_canonical
from rccgrade.radiomics.inputs import (  # noqa: F401 - re-exported: the inputs' historical home
    RadiomicsInput,
    check_same_grid,
    inputs_from_cohort,
    inputs_from_preprocess_dir,
    read_canonical,
)
from rccgrade.radiomics.job import (  # noqa: F401 - re-exported
    _Job,
    _run_job,
    make_extractor,
    ring_key,
    run_pyradiomics,
)
from rccgrade.radiomics.kinetic import kinetic_row
from rccgrade.radiomics.params import load_params
from rccgrade.radiomics.settings import RadiomicsSettings
from rccgrade.radiomics.stability import stability_patients, stability_table
from rccgrade.safepath import child_path

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bump when the cached payload or the extraction procedure changes meaning (2: rings and intensity stats)."""


REGION_COLUMNS: tuple[str, ...] = ("patient_id", "phase", "n_voxels", "error")


@dataclass
class RadiomicsResult:
    """Output of :func:`extract_radiomics`.

    Attributes:
        features: FeatureTable (index ``patient_id``, columns ``rad:<phase>:<feature>``), only patients
            whose every requested phase succeeded.
        diagnostics: PyRadiomics ``diagnostics_*`` values, index ``patient_id``, columns
            ``<phase>:<name>`` (kept apart from the features; never model inputs).
        failures: One row per failed (patient, phase): ``patient_id``, ``phase``, ``error``.
        regions_missing: One row per ring left missing (NaN features) for a patient and phase:
            ``patient_id``, ``phase`` (``<phase>@ring<N>mm``), ``n_voxels``, ``error``.
        stability: ICC per feature (index ``feature`` = the FeatureTable column), or None when disabled.
        files: Name → path of every file written.
        n_extracted: Items (patient × phase) computed in this run.
        n_cached: Items read from the cache.
    """

    features: pd.DataFrame
    diagnostics: pd.DataFrame
    failures: pd.DataFrame
    stability: pd.DataFrame | None
    regions_missing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(REGION_COLUMNS)))
    files: dict[str, Path] = field(default_factory=dict)
    n_extracted: int = 0
    n_cached: int = 0


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
        "rings_mm": list(settings.rings_mm),
        "ring_hu_range": list(settings.ring_hu_range),
        "ring_min_voxels": settings.ring_min_voxels,
        "kinetic": settings.kinetic.model_dump(mode="json") if settings.kinetic.enabled else None,
    }


def check_delta_features(settings: RadiomicsSettings, params: dict[str, Any]) -> None:
    """Refuse kinetic delta features whose image type or feature class the parameter file does not extract.

    Raises:
        ConfigError: naming the features and the parameter file.
    """
    image_types = {str(t).lower() for t in (params.get("imageType") or {"Original": {}})}
    classes = params.get("featureClass")
    bad = []
    for name in settings.kinetic.delta_features:
        parts = name.split("_")
        image_type = parts[0].split("-")[0] if parts else ""
        ok = len(parts) >= 3 and image_type in image_types and (classes is None or parts[1] in classes)
        if not ok:
            bad.append(name)
    if bad:
        raise ConfigError(
            f"radiomics.kinetic.delta_features: {bad} are not extracted by the parameter file {settings.params!r} "
            "(names look like 'original_glcm_Contrast': image type, feature class, feature); remove them or "
            "enable their image type and class"
        )


def extract_radiomics(
    cases: Sequence[RadiomicsInput] | Cohort,
    out_dir: Path,
    settings: RadiomicsSettings | None = None,
    parallel: ParallelSettings | None = None,
    progress: ProgressCallback | None = None,
    *,
    registered_dir: Path | None = None,
    stability_pool: Sequence[str] | None = None,
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
        stability_pool: Patients eligible for the stability analysis (a study passes its training patients, so
            the ICC that filters features never sees a test patient); None: every case. At most
            ``settings.stability.max_patients`` of them get perturbed copies.

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
    # the per-item cache depends on what the item computes: not on the kinetic formulas (applied when assembling)
    item_fingerprint = {**fingerprint, "kinetic": None, "percentiles": list(settings.kinetic.percentiles)}
    if settings.kinetic.enabled:
        check_delta_features(settings, params)
    stab = settings.stability if settings.stability.enabled else None
    perturbed_ids: frozenset[str] = frozenset()
    if stab is not None:
        pool = [i.patient_id for i in inputs] if stability_pool is None else list(stability_pool)
        perturbed_ids = stability_patients(pool, stab.max_patients, stab.seed)

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
            item_stab = stab if inp.patient_id in perturbed_ids else None
            key = stable_hash(
                {**item_fingerprint, "stability": item_stab.model_dump(mode="json") if item_stab else None}, label, sums
            )
            cache_file = child_path(child_path(out_dir / "cache", inp.patient_id), f"{phase}-{key}.json")
            if cache_file.is_file():
                try:
                    payloads[(inp.patient_id, phase)] = json.loads(cache_file.read_text())
                    continue
                except (OSError, ValueError):
                    log.warning("unreadable cache file %s; extracting again", cache_file)
            todo.append(
                _Job(
                    inp.patient_id,
                    phase,
                    Path(image),
                    Path(inp.mask),
                    label,
                    params,
                    item_stab,
                    cache_file,
                    rings_mm=tuple(settings.rings_mm),
                    ring_hu_range=(float(settings.ring_hu_range[0]), float(settings.ring_hu_range[1])),
                    ring_min_voxels=settings.ring_min_voxels,
                    percentiles=tuple(settings.kinetic.percentiles),
                )
            )

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


def _phase_row(phase: str, payload: dict[str, Any], pid: str, missing: list[dict[str, Any]]) -> dict[str, float]:
    """The tumour's and rings' columns of one phase; a ring that could not be described is listed in ``missing``."""
    row = {radiomics_column(phase, k): v for k, v in payload["features"].items()}
    for key, ring in payload.get("rings", {}).items():
        if "features" in ring:
            row.update({radiomics_column(phase, k, float(key)): v for k, v in ring["features"].items()})
        else:
            region = radiomics_column(phase, "", float(key))[len("rad:") : -1]
            n_voxels = ring.get("n_voxels")
            missing.append({"patient_id": pid, "phase": region, "n_voxels": n_voxels, "error": ring["error"]})
    return row


def _kinetic(
    pid: str, settings: RadiomicsSettings, payloads: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, float]:
    k = settings.kinetic
    stats = {ph: payloads[(pid, ph)]["intensity"] for ph in settings.phases}
    feats = {ph: payloads[(pid, ph)]["features"] for ph in settings.phases}
    try:
        return kinetic_row(stats, feats, k.percentiles, k.delta_features, k.washout_min_peak_hu)
    except KeyError as exc:
        raise ConfigError(
            f"radiomics.kinetic.delta_features names feature(s) the parameter file does not extract: {exc.args[0]}; "
            f"remove them or enable their image type and class in {settings.params!r}"
        ) from None


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
    missing: list[dict[str, Any]] = []
    for inp in inputs:
        pid = inp.patient_id
        if pid in failed:
            continue
        row: dict[str, float] = {}
        diag: dict[str, Any] = {}
        copies: list[dict[str, float]] = []
        for phase in settings.phases:
            payload = payloads[(pid, phase)]
            row.update(_phase_row(phase, payload, pid, missing))
            diag.update({f"{phase}:{k}": v for k, v in payload["diagnostics"].items()})
            for key, ring in payload.get("rings", {}).items():
                diag[f"{phase}@ring{key}mm:n_voxels"] = ring.get("n_voxels")
            for i, copy in enumerate(payload.get("perturbed", [])):
                if len(copies) <= i:
                    copies.append({})
                copies[i].update({radiomics_column(phase, k): v for k, v in copy.items()})
        if settings.kinetic.enabled:
            row.update(_kinetic(pid, settings, payloads))
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
    return RadiomicsResult(
        features=features,
        diagnostics=diagnostics,
        failures=fail_frame,
        stability=stab,
        regions_missing=pd.DataFrame(missing, columns=list(REGION_COLUMNS)),
    )


def _write_outputs(result: RadiomicsResult, out_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Path]:
    from rccgrade.features.table import save_table  # pyarrow: main process only, not in every worker

    files = {
        "features": save_table(result.features, out_dir / "features.parquet", settings=fingerprint),
        "diagnostics": out_dir / "diagnostics.csv",
        "failures": out_dir / "failures.csv",
        "regions_missing": out_dir / "regions_missing.csv",
    }
    result.regions_missing.to_csv(files["regions_missing"], index=False)
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
