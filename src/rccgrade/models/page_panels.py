"""The panels of ``predict --report``'s patient pages beyond the contributions, each from existing code:

* **nomogram points** (logistic one-source arms): :func:`rccgrade.models.readout.nomogram_points`, the study
  nomogram's construction and 0–100 scale;
* **interval notes**: why an arm's page has no interval (only logistic arms store the coefficient covariance a
  Wald interval needs; the bundle stores no bootstrap refits, so no interval is invented for the others);
* **QC strip**: preprocessing's own per-case QC montage (:mod:`rccgrade.preprocess.qc`: the tumour outline on
  each registered phase, the registration text) and each phase's registration status from ``status.csv``;
* **Grad-CAM** (frozen deep arms with a linear head): the arm folded into its backbone
  (:func:`rccgrade.models.readout.folded_network`) and :func:`rccgrade.deep.cam.gradcam_figure` on the patient's
  preprocessed slice.

Anything unavailable comes with the reason, which the page prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import RccgradeError
from rccgrade.features.naming import column_name
from rccgrade.report.patient import PagePanels

#: Why a classifier's page has no interval.
NO_INTERVAL = {
    "logistic": "the bundle stores no coefficient covariance for this logistic model (an L1 or elastic-net "
    "penalty has no Wald covariance); re-export it with an L2 penalty to get one",
    "stacked": "the stacked model's uncertainty includes its base arms' refits, which the bundle does not store",
}
NO_INTERVAL_DEFAULT = (
    "this classifier ({kind}) has no closed-form interval for one patient's probability and the bundle stores no "
    "bootstrap refits, so none is shown rather than an invented one"
)


def interval_note(bundle: Any) -> str:
    """Why an ``ok`` page of this bundle has no 95 % interval (empty when it has one)."""
    extra = bundle.meta.get("extra") or {}
    if extra.get("logit_covariance") is not None or extra.get("oof_calibration"):
        return ""  # a Wald interval, or the nearest-score interval (rccgrade.models.score_interval)
    from rccgrade.models.arms import StackedClassifier
    from rccgrade.models.explain import _classifier_kind

    steps = getattr(bundle.model, "named_steps", None)
    clf = steps["clf"] if steps is not None and "clf" in steps else bundle.model
    kind = "stacked" if isinstance(bundle.model, StackedClassifier) else _classifier_kind(clf)
    return NO_INTERVAL.get(kind, NO_INTERVAL_DEFAULT.format(kind=kind))


def nomogram_panel(bundle: Any, table: pd.DataFrame | None) -> dict[str, Any]:
    """PagePanels fields of the nomogram: points of every patient of ``table``, or the note why none."""
    from rccgrade.models.readout import NotLinearError, nomogram_inputs, nomogram_points

    if table is None or table.empty:
        return {"nomogram_note": "no feature values to place on a nomogram"}
    try:
        nomo, points = nomogram_points(bundle.model, table)
    except NotLinearError as exc:
        return {"nomogram_note": f"only a one-source logistic model has a nomogram ({exc.message})"}
    except RccgradeError as exc:
        return {"nomogram_note": f"the nomogram could not be built ({exc.message})"}
    keep = [n for n, c in zip(nomo.feature_names, nomo.coef, strict=True) if c != 0]
    return {
        "nomogram": points[[*keep, "total"]],
        "nomogram_inputs": nomogram_inputs(bundle.model, table),
        "nomogram_labels": {n: column_name(n) for n in keep},
        "nomogram_probability": pd.Series(nomo.probability_from_points(points["total"].to_numpy()), index=table.index),
    }


def qc_panel(preprocess_dir: Path | None, ids: list[str]) -> dict[str, Any]:
    """PagePanels fields of the QC strip from preprocessing's outputs under ``preprocess_dir``."""
    from rccgrade.preprocess.paths import qc_montage_path

    if preprocess_dir is None:
        return {"qc_note": "the features were given precomputed (--features), so no preprocessing ran here"}
    status_csv = Path(preprocess_dir) / "status.csv"
    if not status_csv.is_file():
        return {"qc_note": "this model reads no imaging feature, so no image was preprocessed"}
    status = pd.read_csv(status_csv, dtype={"patient_id": str}).drop_duplicates("patient_id", keep="last")
    status = status.set_index("patient_id")
    registration: dict[str, dict[str, str]] = {}
    images: dict[str, Path] = {}
    for pid in ids:
        if pid not in status.index:
            continue
        row = status.loc[pid]
        phases = str(row.get("phases") or "").split(",")
        reg = {}
        for ph in [p for p in phases if p]:
            value = row.get(f"reg_{ph}")
            reg[ph] = "reference (mask phase)" if value is None or pd.isna(value) else str(value)
        registration[pid] = reg
        montage = qc_montage_path(preprocess_dir, pid)
        if montage.is_file():
            images[pid] = montage
    note = "preprocessing failed or wrote no QC montage for this patient"
    return {"qc_images": images, "registration": registration, "qc_note": note}


def gradcam_panel(bundle: Any, preprocess_dir: Path | None, ids: list[str], out_dir: Path) -> dict[str, Any]:
    """PagePanels fields of Grad-CAM: one overlay figure per patient with slices, or the note why none."""
    from rccgrade.features.naming import deep_rois

    rois = deep_rois(bundle.feature_names)
    if bundle.arm == "stacked" or len(rois) != 1 or any(not c.startswith("deep:") for c in bundle.feature_names):
        return {"gradcam_note": "Grad-CAM explains a deep arm (one ROI's CNN features alone); this model is not one"}
    if preprocess_dir is None:
        return {"gradcam_note": "the features were given precomputed (--features): the preprocessed slices are absent"}
    from rccgrade.deep.cam import gradcam_figure
    from rccgrade.deep.settings import DeepSettings
    from rccgrade.models.readout import folded_network
    from rccgrade.preprocess.slices import load_slices
    from rccgrade.safepath import child_path

    roi = rois[0]
    settings = DeepSettings.model_validate(bundle.feature_settings["deep"])
    try:
        network, mean, std = folded_network(bundle.model, roi, settings, int(bundle.meta.get("seed") or 0))
    except RccgradeError as exc:
        return {"gradcam_note": f"the model's head cannot be folded into the network ({exc.message})"}
    slices = load_slices(Path(preprocess_dir), roi)
    images: dict[str, Path] = {}
    for pid in ids:
        arr = slices.get(pid)
        if arr is None:
            continue
        path = child_path(out_dir, pid, ".png")
        gradcam_figure(
            network,
            np.asarray(arr[arr.shape[0] // 2]),
            path,
            mean=mean,
            std=std,
            input_size=settings.input_size,
            class_idx=0,
            title=str(pid),
            dpi=80,
        )
        images[pid] = path
    return {"gradcam_images": images, "gradcam_note": "the patient's preprocessed slices are not available"}


def build_panels(
    bundle: Any, preds: pd.DataFrame, table: pd.DataFrame | None, preprocess_dir: Path | None, work: Path
) -> PagePanels:
    """Every panel of the pages of ``preds``'s patients (``work``: a scratch folder for Grad-CAM figures)."""
    ids = [str(p) for p in preds.index if preds.loc[p, "status"] != "failed"]
    have = [p for p in ids if table is not None and p in table.index]
    fields: dict[str, Any] = {"interval_note": interval_note(bundle)}
    fields.update(nomogram_panel(bundle, table.loc[have] if table is not None and have else None))
    fields.update(qc_panel(preprocess_dir, [str(p) for p in preds.index]))
    fields.update(gradcam_panel(bundle, preprocess_dir, have, work))
    return PagePanels(**fields)
