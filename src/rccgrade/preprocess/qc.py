"""Quality-control figures of preprocessing (matplotlib, Agg backend, Figure objects — no pyplot state).

* Per case, ``qc/<patient_id>.png``: :func:`rccgrade.preprocess.qc_montage.case_montage` (drawn with Pillow,
  re-exported here): phases × (context + ROI settings), tumour outline, registration text.
* Per cohort, ``qc/cohort_sheet.png``: one RGB thumbnail a case with its contour, framed green (registered),
  orange (a phase fell back to identity) or red (failed), to be scanned in seconds.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from rccgrade.preprocess.qc_montage import (  # noqa: F401 - moved there; names kept importable here
    _context_stack,
    case_montage,
)
from rccgrade.preprocess.registration import RegistrationResult
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.safepath import child_path

_OK, _FLAG, _FAIL = "#2ca02c", "#ff7f0e", "#d62728"


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save_thumbnail(
    patient_id: str,
    vols: Mapping[str, np.ndarray],
    tumour: np.ndarray,
    z: int,
    registration: Sequence[RegistrationResult],
    path: Path,
    size: int = 96,
    settings: PreprocessSettings | None = None,
) -> Path:
    """Store a small RGB context thumbnail (and contour mask) of the case for the cohort sheet."""
    settings = settings or PreprocessSettings()
    stack, _ = _context_stack(vols, z, settings)
    zoom = size / max(stack.shape[1:])
    rgb = np.stack([ndimage.zoom(c, zoom, order=1) for c in stack], axis=-1)
    mask = ndimage.zoom(tumour[z].astype(float), zoom, order=1) >= 0.5
    flags = ",".join(f"{r.phase}:{r.status}" for r in registration if r.flagged)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rgb=np.clip(rgb, 0, 1).astype(np.float32), mask=mask, flags=np.array(flags))
    return path


def cohort_sheet(status: pd.DataFrame, qc_dir: Path, path: Path, max_cols: int = 8) -> Path:
    """Write the cohort QC sheet: one thumbnail per case, framed by registration outcome.

    Args:
        status: The stage's status table (``patient_id``, ``ok``, ``error``, ``reg_flagged``).
        qc_dir: Folder holding ``thumbs/<patient_id>.npz``.
        path: Output PNG.
    """
    n = len(status)
    ncols = max(1, min(max_cols, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig = _figure(max(1.6 * ncols, 5.0), 1.75 * nrows + 0.5)
    n_fail = int((~status["ok"]).sum())
    n_flag = int(status["reg_flagged"].sum())
    fig.suptitle(
        f"{n} cases — {n - n_fail} ok, {n_flag} registration fallback (orange), {n_fail} failed (red)", fontsize=9
    )
    for i, row in enumerate(status.itertuples(index=False)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        thumb = child_path(qc_dir / "thumbs", str(row.patient_id), ".npz")
        if bool(row.ok) and thumb.is_file():
            with np.load(thumb) as data:
                ax.imshow(data["rgb"], interpolation="nearest")
                if data["mask"].any():
                    ax.contour(data["mask"].astype(float), levels=[0.5], colors="red", linewidths=0.5)
                flags = str(data["flags"])
            colour = _FLAG if bool(row.reg_flagged) else _OK
            label = str(row.patient_id) + (f"\n{flags}" if flags else "")
        else:
            ax.imshow(np.zeros((8, 8)), cmap="gray", vmin=0, vmax=1)
            err = str(row.error) if not bool(row.ok) else "no thumbnail"
            err = err.split("] ", 1)[-1]  # the tile is titled with the patient already
            err = "\n".join(textwrap.wrap(err, 28)[:5])
            ax.text(
                0.5,
                0.5,
                "FAILED\n" + err,
                color="white",
                fontsize=5,
                ha="center",
                va="center",
                transform=ax.transAxes,
                wrap=True,
            )
            colour = _FAIL
            label = str(row.patient_id)
        ax.set_title(label, fontsize=6, color=colour)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def registration_residuals(
    preprocess_dir: str | Path,
    truth: pd.DataFrame,
    phases: Sequence[str] = ("nephrographic", "excretory"),
    max_points: int = 2000,
) -> pd.DataFrame:
    """Residual misalignment of a synthetic cohort after registration, against its ``truth.csv``.

    For every case and moving phase, the tumour's voxel centres ``p`` (registered mask, fixed space)
    are mapped by the applied transform ``T̂`` (``registered/<id>/<phase>.tfm``) and by the true
    misalignment ``T`` (:func:`rccgrade.synth.transform_from_truth`; both map fixed → moving points).

    Args:
        preprocess_dir: The preprocessing stage folder.
        truth: ``truth.csv`` of the synthetic cohort (``patient_id`` column).
        phases: Moving phases to evaluate.
        max_points: At most this many tumour points per case (evenly subsampled).

    Returns:
        One row per case and phase: ``before_mm`` = mean ‖p − T(p)‖, ``after_mm`` = mean ‖T̂(p) − T(p)‖,
        ``voxel_mm`` (smallest spacing) and ``voxel_max_mm`` (largest), ``status`` of the registration.
    """
    import SimpleITK as sitk

    from rccgrade.preprocess.paths import registered_paths
    from rccgrade.synth import transform_from_truth

    preprocess_dir = Path(preprocess_dir)
    reg = pd.read_csv(
        preprocess_dir / "registration.csv", dtype={"patient_id": str}, keep_default_na=False, na_values=[""]
    )
    status = {(r.patient_id, r.phase): r.status for r in reg.itertuples(index=False)}
    rows = []
    for rec in truth.to_dict(orient="records"):
        pid = str(rec["patient_id"])
        try:
            paths = registered_paths(preprocess_dir, pid)
        except Exception:  # noqa: BLE001 - a failed case has no residual; it is listed with NaN
            rows.extend({"patient_id": pid, "phase": ph, "status": "case failed"} for ph in phases)
            continue
        mask = sitk.ReadImage(str(paths["mask"]))
        idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1]
        if len(idx) > max_points:
            idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(int)]
        pts = [mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in i]) for i in idx]
        for phase in phases:
            tfm = paths["mask"].parent / f"{phase}.tfm"
            if not tfm.is_file():
                continue
            found = sitk.ReadTransform(str(tfm))
            true = transform_from_truth(rec, phase)
            p = np.asarray(pts)
            t_true = np.asarray([true.TransformPoint(q) for q in pts])
            t_found = np.asarray([found.TransformPoint(q) for q in pts])
            rows.append(
                {
                    "patient_id": pid,
                    "phase": phase,
                    "status": status.get((pid, phase), ""),
                    "before_mm": float(np.linalg.norm(p - t_true, axis=1).mean()),
                    "after_mm": float(np.linalg.norm(t_found - t_true, axis=1).mean()),
                    "voxel_mm": float(min(mask.GetSpacing())),
                    "voxel_max_mm": float(max(mask.GetSpacing())),
                }
            )
    return pd.DataFrame(rows)
