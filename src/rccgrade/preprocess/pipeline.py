"""The preprocessing stage: per case (:mod:`rccgrade.preprocess.case`) reorient → crop → register → resample →
ROI slice images → QC, then the stage's tables.

Outputs under the stage folder ``out_dir``::

    registered/<patient_id>/<phase>.nii.gz     every phase on the mask phase's grid, cropped to the tumour's
                                               bounding box + ``output_margin_mm`` (LPS, HU rounded to int16)
    registered/<patient_id>/mask.nii.gz        the binary tumour mask (uint8, same grid)
    registered/<patient_id>/<phase>.tfm        the transform applied (fixed → moving, ITK convention)
    slices/<roi>/<patient_id>.npy              float32 (K, 3, H, W) in [0, 1] (see rccgrade.preprocess.slices)
    slices/index.csv                           one row per case and ROI setting
    status.csv                                 one row per case: ok/error, cached, slices, registration flags
    registration.csv                           one row per case and moving phase: metric before/after, transform
    failures.csv                               patient_id, error
    qc/<patient_id>.png                        montage: phases × ROI settings, mask contour, registration text
    qc/cohort_sheet.png                        one thumbnail per case with its registration flag
    cache/<patient_id>.json                    cache key and the case's results

``<patient_id>`` in these names is :func:`rccgrade.safepath.safe_filename` of the id (plain ids such as
``P0001`` unchanged; anything else percent-encoded), so an id never leaves its folder; failed cases'
outputs are removed only through :func:`rccgrade.safepath.remove_tree_inside` on paths inside ``out_dir``.

A case is recomputed only when its cache key — a hash of the settings (QC switch excluded) and the
checksums of its image and mask files — changed or an output is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rccgrade.cohort.types import Case, Cohort
from rccgrade.parallel import Outcome, ParallelSettings, failures_table, run_cases
from rccgrade.preprocess.case import CACHE_VERSION, CaseJob, case_cache_key, process_case
from rccgrade.preprocess.case_io import snap_geometry
from rccgrade.preprocess.paths import QC_DIR, registered_paths
from rccgrade.preprocess.registration import build_transform
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import INDEX_COLUMNS, index_path

log = logging.getLogger(__name__)


@dataclass
class PreprocessResult:
    """What the stage produced.

    Attributes:
        out_dir: The stage folder.
        status: One row per case (``patient_id``, ``ok``, ``error``, ``cached``, ``n_slices``,
            ``slice_indices``, ``channels``, ``reg_flagged``, ``reg_<phase>`` status and
            ``mi_before_<phase>``/``mi_after_<phase>`` per moving phase).
        registration: One row per case and moving phase (metric before/after, parameters, message).
        index: The slice index (``slices/index.csv``).
        failures: ``patient_id``, ``error`` of the failed cases.
        rois: The ROI setting names produced.
        qc_sheet: Path of the cohort QC sheet, or None when QC is off or no case succeeded.
    """

    out_dir: Path
    status: pd.DataFrame
    registration: pd.DataFrame
    index: pd.DataFrame
    failures: pd.DataFrame
    rois: list[str]
    qc_sheet: Path | None = None

    @property
    def ok_ids(self) -> list[str]:
        """Patients preprocessed successfully."""
        return [str(p) for p in self.status.loc[self.status["ok"], "patient_id"]]

    @property
    def failed_ids(self) -> list[str]:
        """Patients that failed."""
        return [str(p) for p in self.status.loc[~self.status["ok"], "patient_id"]]

    @property
    def flagged_ids(self) -> list[str]:
        """Patients with at least one phase whose registration fell back to identity."""
        return [str(p) for p in self.status.loc[self.status["reg_flagged"].fillna(False).astype(bool), "patient_id"]]


def run_preprocess(
    cohort: Cohort,
    out_dir: str | Path,
    settings: PreprocessSettings | None = None,
    parallel: ParallelSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """Preprocess every case of a cohort; failures are reported per case and never stop the others.

    Args:
        cohort: The cases (image and mask paths).
        out_dir: Stage folder (created); see the module docstring for its layout.
        settings: Preprocessing settings (default: the reference study's).
        parallel: Executor settings (serial, local processes or Dask).
        progress: Optional ``progress(done, total)`` callback.

    Returns:
        The :class:`PreprocessResult` (status, registration and slice index tables, failures).
    """
    settings = settings or PreprocessSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Outputs are named by patient id: a repeated id would overwrite the first, so repeats are failures.
    seen: set[str] = set()
    cases: list[Case] = []
    duplicates: list[Outcome[Any]] = []
    for c in cohort:
        if c.patient_id in seen:
            duplicates.append(
                Outcome(
                    key=c.patient_id,
                    ok=False,
                    error=f"[patient {c.patient_id}] duplicate patient_id in the manifest "
                    f"(row {getattr(c, 'row', None)}); only its first row was preprocessed — give every "
                    "patient a unique id",
                )
            )
        else:
            seen.add(c.patient_id)
            cases.append(c)
    jobs = [CaseJob(case=c, out_dir=out_dir, settings=settings) for c in cases]
    outcomes = run_cases(process_case, jobs, [c.patient_id for c in cases], parallel, progress)
    outcomes = outcomes + duplicates

    rows, index_rows, reg_rows = [], [], []
    for oc in outcomes:
        if oc.ok and oc.value is not None:
            rows.append(oc.value["row"])
            index_rows.extend(oc.value["index"])
            reg_rows.extend(oc.value["registration"])
        else:
            log.warning("patient %s failed: %s", oc.key, oc.error)
            rows.append({"patient_id": oc.key, "ok": False, "error": oc.error or "", "cached": False})
    status = pd.DataFrame(rows)
    for col, default in (("reg_flagged", False), ("n_slices", 0)):
        if col not in status:
            status[col] = default
    status["reg_flagged"] = status["reg_flagged"].astype("boolean").fillna(False).astype(bool)
    status["ok"] = status["ok"].astype(bool)
    index = pd.DataFrame(index_rows, columns=INDEX_COLUMNS)
    registration = pd.DataFrame(reg_rows)
    failures = pd.DataFrame(failures_table(outcomes), columns=["patient_id", "error"])

    index_path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(index_path(out_dir), index=False)
    status.to_csv(out_dir / "status.csv", index=False)
    registration.to_csv(out_dir / "registration.csv", index=False)
    failures.to_csv(out_dir / "failures.csv", index=False)
    (out_dir / "settings.json").write_text(json.dumps(settings.model_dump(mode="json"), indent=1))

    sheet = None
    if settings.qc and len(status):
        from rccgrade.preprocess.qc import cohort_sheet

        sheet = cohort_sheet(status, out_dir / QC_DIR, out_dir / QC_DIR / "cohort_sheet.png")
    n_ok = int(status["ok"].sum())
    log.info(
        "preprocessed %d/%d cases (%d from cache, %d with a registration fallback)",
        n_ok,
        len(status),
        int(status.get("cached", pd.Series(dtype=bool)).fillna(False).astype(bool).sum()),
        int(status["reg_flagged"].sum()),
    )
    return PreprocessResult(
        out_dir=out_dir,
        status=status,
        registration=registration,
        index=index,
        failures=failures,
        rois=list(settings.rois),
        qc_sheet=sheet,
    )


__all__ = [
    "CACHE_VERSION",
    "PreprocessResult",
    "build_transform",
    "case_cache_key",
    "registered_paths",
    "run_preprocess",
    "snap_geometry",
]
