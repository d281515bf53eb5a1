"""The preprocessing stage: per case, reorient → register → resample → ROI slice images → QC.

Outputs under the stage folder ``out_dir``::

    registered/<patient_id>/<phase>.nii.gz     every phase on the mask phase's grid (LPS, HU rounded to int16)
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
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.atomic import save_npy_atomic, write_atomic, write_image_atomic, write_text_atomic
from rccgrade.cache import file_checksum, stable_hash
from rccgrade.cohort.types import Case, Cohort
from rccgrade.errors import ImageError, PreprocessError
from rccgrade.parallel import Outcome, ParallelSettings, failures_table, run_cases
from rccgrade.preprocess.orientation import to_canonical
from rccgrade.preprocess.paths import (
    QC_DIR,
    case_cache_path,
    qc_montage_path,
    qc_thumb_path,
    registered_dir,
    registered_paths,
)
from rccgrade.preprocess.registration import (
    RegistrationResult,
    build_transform,
    metric_region,
    register_phase,
    resample_to,
)
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import INDEX_COLUMNS, SLICES_DIR, build_slice_images, index_path, slice_path
from rccgrade.safepath import remove_tree_inside

log = logging.getLogger(__name__)

CACHE_VERSION = "preprocess-1"


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


@dataclass
class _Job:
    case: Case
    out_dir: Path
    settings: PreprocessSettings


def _settings_key(settings: PreprocessSettings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data.pop("qc", None)
    return data


def case_cache_key(case: Case, settings: PreprocessSettings) -> str:
    """Hash of the settings (QC switch excluded) and the checksums (SHA-256 of the content) of the case's inputs.

    Raises:
        ImageError: an input file is missing or unreadable (the message names the patient and the file).
    """

    def checksum(path: Path) -> str:
        try:
            return file_checksum(path)
        except OSError as exc:
            raise ImageError(
                f"cannot read the file ({exc.strerror or exc}); check the path in the manifest",
                patient_id=case.patient_id,
                path=path,
            ) from None

    inputs = {phase: checksum(path) for phase, path in sorted(case.images.items())}
    inputs["mask"] = checksum(case.mask)
    return stable_hash(
        CACHE_VERSION,
        case.patient_id,
        _settings_key(settings),
        inputs,
        {"mask_phase": case.mask_phase, "label": case.label, "series": dict(sorted(case.series_uids.items()))}
        | ({"segment": case.mask_segment} if case.mask_segment else {}),
        length=24,
    )


def snap_geometry(image: sitk.Image) -> sitk.Image:
    """Round origin (to 0.1 µm) and spacing (to 1e-6 mm) in place, returning the image.

    NIfTI stores geometry in float32 and DICOM in decimal strings, so the same scan read from both
    differs by ~1e-6 mm — enough to flip resampled samples that sit exactly between two voxels. Rounding
    far below any physical meaning makes both give identical arrays.
    """
    image.SetOrigin(tuple(round(float(v), 4) for v in image.GetOrigin()))
    image.SetSpacing(tuple(round(float(v), 6) for v in image.GetSpacing()))
    return image


def _read(case: Case, phase: str, orientation: str) -> sitk.Image:
    from rccgrade.cohort.io import read_image

    img = read_image(case.images[phase], patient_id=case.patient_id, series_uid=case.series_uids.get(phase))
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageError(
            f"the {phase} phase is not a 3-D scalar image; give a single-channel CT volume",
            patient_id=case.patient_id,
            path=case.images[phase],
        )
    return snap_geometry(to_canonical(img, orientation))


def _hu_int16(image: sitk.Image) -> sitk.Image:
    """HU rounded to int16 for storage (interpolation error ≤ 0.5 HU, far below CT noise; files 2–4× smaller).

    Images whose values do not fit int16 are kept as float32.
    """
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() < -32768 or stats.GetMaximum() > 32767:
        return sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(image), sitk.sitkInt16)


def _same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol * max(a.GetSpacing()) * 10)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def _read_mask(case: Case, fixed: sitk.Image, orientation: str) -> sitk.Image:
    from rccgrade.cohort.io import read_mask

    mask = read_mask(
        case.mask,
        patient_id=case.patient_id,
        series_uid=case.series_uids.get("mask"),
        label=case.label,
        segment=case.mask_segment,
        reference=fixed,
    )
    mask = snap_geometry(to_canonical(mask, orientation))
    if _same_grid(mask, fixed):
        mask.CopyInformation(fixed)
    else:
        log.warning(
            "patient %s: mask grid differs from the %s phase; resampled onto it (nearest neighbour)",
            case.patient_id,
            case.mask_phase,
        )
        mask = sitk.Resample(mask, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise PreprocessError(
            f"the tumour mask does not overlap the {case.mask_phase} phase image; check that the mask belongs "
            "to this phase (manifest column mask / mask_phase)",
            patient_id=case.patient_id,
            path=case.mask,
        )
    return mask


def _inplane_grid(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Reference grid with in-plane spacing ``spacing_mm`` (slice axis unchanged), same origin/direction."""
    sp = image.GetSpacing()
    size = image.GetSize()
    new_size = [max(1, math.floor((size[i] - 1) * sp[i] / spacing_mm + 1e-4) + 1) for i in range(2)] + [size[2]]
    ref = sitk.Image(new_size, sitk.sitkUInt8)
    ref.SetSpacing((spacing_mm, spacing_mm, sp[2]))
    ref.SetOrigin(image.GetOrigin())
    ref.SetDirection(image.GetDirection())
    return ref


def _roi_window(mask: sitk.Image, settings: PreprocessSettings, context_mm: float) -> tuple[list[int], list[int]]:
    """Index box (x, y, z start/stop) around the tumour large enough for every ROI setting and QC context."""
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.nonzero(arr)
    lo = [int(idx[2].min()), int(idx[1].min()), int(idx[0].min())]
    hi = [int(idx[2].max()) + 1, int(idx[1].max()) + 1, int(idx[0].max()) + 1]
    margins = [s.margin_mm for s in settings.roi_specs] + [settings.crop_margin_mm]
    pad_mm = max(margins) + max(context_mm, settings.crop_margin_mm) + 2.0
    sp = mask.GetSpacing()
    size = mask.GetSize()
    start, stop = [], []
    for i in range(3):
        pad = math.ceil(pad_mm / sp[i]) + 1 if i < 2 else math.ceil(max(margins) / sp[i]) + 1
        start.append(max(0, lo[i] - pad))
        stop.append(min(size[i], hi[i] + pad))
    return start, stop


def _remove_outputs(out_dir: Path, patient_id: str) -> None:
    """Delete a case's outputs (after a failure, so no stale or partial files are mistaken for results).

    Every path is built by :func:`rccgrade.safepath.child_path` and deleted through
    :func:`rccgrade.safepath.remove_tree_inside`, which refuses anything outside ``out_dir``.
    """
    slices = out_dir / SLICES_DIR
    rois = sorted(p.name for p in slices.iterdir() if p.is_dir() and not p.is_symlink()) if slices.is_dir() else []
    for path in [
        registered_dir(out_dir, patient_id),
        *(slice_path(out_dir, roi, patient_id) for roi in rois),
        case_cache_path(out_dir, patient_id),
        qc_montage_path(out_dir, patient_id),
        qc_thumb_path(out_dir, patient_id),
    ]:
        remove_tree_inside(path, out_dir)


def _process_case(job: _Job) -> dict[str, Any]:
    """Preprocess one case (module-level, picklable, for run_cases); returns its status row.

    On any error the case's partial outputs are removed and the error propagates to run_cases.
    """
    try:
        return _process_case_inner(job)
    except BaseException:
        try:
            _remove_outputs(job.out_dir, job.case.patient_id)
        except Exception as cleanup:  # noqa: BLE001 - the case's own error is the one to report
            log.warning("patient %s: could not remove partial outputs: %s", job.case.patient_id, cleanup)
        raise


def _process_case_inner(job: _Job) -> dict[str, Any]:
    case, out_dir, settings = job.case, job.out_dir, job.settings
    pid = case.patient_id
    key = case_cache_key(case, settings)
    cache_file = case_cache_path(out_dir, pid)
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text())
        except (OSError, json.JSONDecodeError):
            cached = {}
        if cached.get("key") == key and all((out_dir / r["path"]).is_file() for r in cached.get("index", [])):
            qc_ok = not settings.qc or qc_montage_path(out_dir, pid).is_file()
            if qc_ok:
                cached["row"]["cached"] = True
                return cached
    orientation = settings.orientation
    if case.mask_phase not in case.images:
        raise PreprocessError(
            f"the mask is drawn on the {case.mask_phase} phase but that phase is missing; add it to the manifest",
            patient_id=pid,
        )
    fixed = _read(case, case.mask_phase, orientation)
    mask = _read_mask(case, fixed, orientation)
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    region = (
        metric_region(fixed_f, mask, settings.registration.metric_margin_mm) if settings.registration.enabled else None
    )

    reg_dir = registered_dir(out_dir, pid)
    reg_dir.mkdir(parents=True, exist_ok=True)
    aligned: dict[str, sitk.Image] = {case.mask_phase: fixed_f}
    reg_results: list[RegistrationResult] = []
    for phase in case.phases:
        if phase == case.mask_phase:
            continue
        moving = _read(case, phase, orientation)
        if region is not None:
            res = register_phase(fixed_f, moving, region, settings.registration, phase=phase)
        else:
            res = RegistrationResult(phase=phase, status="skipped", message="registration disabled")
        if res.flagged:
            log.warning("patient %s: registration of %s %s, identity kept (%s)", pid, phase, res.status, res.message)
        tx = res.kept_transform() if res.status != "skipped" else sitk.Euler3DTransform()
        aligned[phase] = resample_to(moving, fixed_f, tx, settings.pad_value_hu)
        write_atomic(reg_dir / f"{phase}.tfm", lambda tmp, tx=tx: sitk.WriteTransform(tx, str(tmp)))
        reg_results.append(res)
    for phase, img in aligned.items():
        write_image_atomic(_hu_int16(img), reg_dir / f"{phase}.nii.gz")
    write_image_atomic(mask, reg_dir / "mask.nii.gz")

    # crop around the tumour (every ROI and the QC context fit), then resample in-plane
    context_mm = 30.0
    start, stop = _roi_window(mask, settings, context_mm)
    crop = [slice(a, b) for a, b in zip(start, stop, strict=True)]
    mask_c = mask[crop[0], crop[1], crop[2]]
    ref = _inplane_grid(mask_c, settings.inplane_spacing_mm)
    ident = sitk.Transform()
    # Resample from the whole image (the crop's edge voxels are then interior) and extrapolate by nearest
    # neighbour at the image's own edge, so float rounding of the origin cannot drop edge samples.
    vols = {
        p: sitk.GetArrayFromImage(
            sitk.Resample(img, ref, ident, sitk.sitkLinear, settings.pad_value_hu, sitk.sitkFloat32, True)
        )
        for p, img in aligned.items()
    }
    mask_f = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), ref, ident, sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
    tumour = sitk.GetArrayFromImage(mask_f) >= 0.5
    if not tumour.any():
        raise PreprocessError(
            "the tumour vanished after in-plane resampling (smaller than one pixel?); lower "
            "preprocess.inplane_spacing_mm",
            patient_id=pid,
            path=case.mask,
        )
    spacing_zyx = ref.GetSpacing()[::-1]
    images = build_slice_images(vols, tumour, spacing_zyx, settings)
    z0 = start[2]
    slice_indices = [z + z0 for z in images.slice_indices]
    index_rows = []
    for roi, arr in images.arrays.items():
        path = slice_path(out_dir, roi, pid)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy_atomic(path, arr)
        index_rows.append(
            {
                "patient_id": pid,
                "roi": roi,
                "path": str(path.relative_to(out_dir)),
                "n_slices": int(arr.shape[0]),
                "slice_indices": ";".join(str(z) for z in slice_indices),
                "selection": _selection_label(settings),
                "channels": images.channels,
            }
        )
    if settings.qc:
        from rccgrade.preprocess.qc import case_montage, save_thumbnail

        montage = qc_montage_path(out_dir, pid)
        montage.parent.mkdir(parents=True, exist_ok=True)
        case_montage(pid, vols, tumour, images, slice_indices, reg_results, settings, montage)
        save_thumbnail(
            pid, vols, tumour, images.slice_indices[0], reg_results, qc_thumb_path(out_dir, pid), settings=settings
        )

    row: dict[str, Any] = {
        "patient_id": pid,
        "ok": True,
        "error": "",
        "cached": False,
        "phases": ",".join(case.phases),
        "n_slices": len(slice_indices),
        "slice_indices": ";".join(str(z) for z in slice_indices),
        "channels": images.channels,
        "reg_flagged": any(r.flagged for r in reg_results),
    }
    for r in reg_results:
        row[f"reg_{r.phase}"] = r.status
        row[f"mi_before_{r.phase}"] = r.metric_before
        row[f"mi_after_{r.phase}"] = r.metric_after
    result = {
        "key": key,
        "row": row,
        "index": index_rows,
        "registration": [_reg_row(pid, r) for r in reg_results],
    }
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache_file, json.dumps(result, indent=1, default=_json_default))
    return result


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(type(obj).__name__)


def _selection_label(settings: PreprocessSettings) -> str:
    if settings.slice_selection == "topk":
        return f"topk{settings.top_k}"
    if settings.slice_selection == "area_fraction":
        return f"area>={settings.area_fraction:g}max"
    return "largest"


def _reg_row(pid: str, r: RegistrationResult) -> dict[str, Any]:
    d = asdict(r)
    d.pop("kept_parameters")
    d["parameters"] = ";".join(f"{v:.6g}" for v in r.parameters)
    d["fixed_parameters"] = ";".join(f"{v:.6g}" for v in r.fixed_parameters)
    d["flagged"] = r.flagged
    if r.transform_type == "Euler3DTransform" and len(r.parameters) == 6:
        for name, v in zip(("rx_deg", "ry_deg", "rz_deg"), np.degrees(r.parameters[:3]), strict=True):
            d[name] = float(v)
        for name, v in zip(("tx_mm", "ty_mm", "tz_mm"), r.parameters[3:], strict=True):
            d[name] = float(v)
    return {"patient_id": pid, **d}


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
    jobs = [_Job(case=c, out_dir=out_dir, settings=settings) for c in cases]
    outcomes = run_cases(_process_case, jobs, [c.patient_id for c in cases], parallel, progress)
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
    "PreprocessResult",
    "build_transform",
    "case_cache_key",
    "registered_paths",
    "run_preprocess",
]
