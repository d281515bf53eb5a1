"""Preprocessing of one case: read → crop to the tumour's working region → register → resample → slices → QC.

Per case, in this order, so each costly step touches only the working region
(:mod:`rccgrade.preprocess.crop`): the mask phase and its mask are read, reoriented and cropped to the
tumour's bounding box plus the largest margin any later step needs; each other phase is read, reoriented and
cropped to that box plus the largest plausible registration displacement; the registration
(:mod:`rccgrade.preprocess.registration`, multi-resolution, metric in the region around the tumour) runs on
these crops; each phase is resampled once, onto the cropped mask-phase grid, and written; the ROI window is
resampled in-plane once for the slice images and QC. ``slice_indices`` stay indices of the mask phase's
whole image.

The outputs are described in :mod:`rccgrade.preprocess.pipeline`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from rccgrade.atomic import save_npy_atomic, write_atomic, write_image_atomic, write_text_atomic
from rccgrade.cache import file_checksum, stable_hash
from rccgrade.cohort.types import Case
from rccgrade.errors import ImageError, PreprocessError
from rccgrade.preprocess.case_io import hu_int16, read_case_mask, read_phase
from rccgrade.preprocess.crop import covers, crop, crop_moving, inplane_grid, roi_window, work_box
from rccgrade.preprocess.paths import case_cache_path, qc_montage_path, qc_thumb_path, registered_dir
from rccgrade.preprocess.registration import RegistrationResult, metric_region, register_phase, resample_to
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import SLICES_DIR, build_slice_images, slice_path
from rccgrade.safepath import remove_tree_inside

log = logging.getLogger(__name__)

CACHE_VERSION = "preprocess-3"
"""Bump when the outputs change meaning (2: registered images cropped to the working region; 3: block-average
registration pyramid, QC metric on crops — transforms differ slightly for the same settings)."""


@dataclass
class CaseJob:
    """One case to preprocess (picklable, for :func:`rccgrade.parallel.run_cases`)."""

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


def process_case(job: CaseJob) -> dict[str, Any]:
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


def _process_case_inner(job: CaseJob) -> dict[str, Any]:
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
    fixed_whole = read_phase(case, case.mask_phase, orientation)
    mask_whole = read_case_mask(case, fixed_whole, orientation)
    box = work_box(mask_whole, settings)
    fixed_f = sitk.Cast(crop(fixed_whole, box), sitk.sitkFloat32)
    mask = crop(mask_whole, box)
    z_offset = box[0][2] if box is not None else 0
    del fixed_whole, mask_whole
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
        moving_whole = read_phase(case, phase, orientation)
        moving = crop_moving(moving_whole, fixed_f)
        if region is not None:
            res = register_phase(fixed_f, moving.image, region, settings.registration, phase=phase)
        else:
            res = RegistrationResult(phase=phase, status="skipped", message="registration disabled")
        if res.flagged:
            log.warning("patient %s: registration of %s %s, identity kept (%s)", pid, phase, res.status, res.message)
        tx = res.kept_transform() if res.status != "skipped" else sitk.Euler3DTransform()
        source = moving.image if covers(moving, fixed_f, tx) else moving_whole
        aligned[phase] = resample_to(source, fixed_f, tx, settings.pad_value_hu)
        del moving_whole, moving, source
        write_atomic(reg_dir / f"{phase}.tfm", lambda tmp, tx=tx: sitk.WriteTransform(tx, str(tmp)))
        reg_results.append(res)
    for phase, img in aligned.items():
        write_image_atomic(hu_int16(img), reg_dir / f"{phase}.nii.gz")
    write_image_atomic(mask, reg_dir / "mask.nii.gz")

    # crop around the tumour (every ROI and the QC context fit), then resample in-plane
    start, stop = roi_window(mask, settings)
    window_box = [slice(a, b) for a, b in zip(start, stop, strict=True)]
    mask_c = mask[window_box[0], window_box[1], window_box[2]]
    ref = inplane_grid(mask_c, settings.inplane_spacing_mm)
    ident = sitk.Transform()
    # Resample from the working region (the window's edge voxels are then interior) and extrapolate by
    # nearest neighbour at the image's own edge, so float rounding of the origin cannot drop edge samples.
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
    z0 = start[2] + z_offset
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
