"""Assemble the study's HTML report from what the stages produced (see :mod:`rccgrade.report.html`).

The report is written to read like a paper's results section: a summary, Table 1 by grade, data quality,
the performance table with CIs, ROC curves, the DeLong comparison matrix, calibration, decision curves,
the nomogram, selected features, stability, Grad-CAM, the reporting checklist and provenance.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from rccgrade import __version__
from rccgrade.report.html import Figure, ReportContext, default_checklist, render_report
from rccgrade.report.tables import table_one
from rccgrade.study_models import arm_colors, arm_folder, arm_label

if TYPE_CHECKING:
    from rccgrade.study import StudyContext

log = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "ppv", "npv")

FIGURE_CAPTIONS: dict[str, str] = {
    "roc": "Receiver operating characteristic curves of every model in the training (out-of-fold predictions) and "
    "test cohorts, with pointwise 95% bootstrap confidence bands; AUC (95% CI) in the legends. The diagonal is chance.",
    "calibration": "Calibration of every model in the test (left) and training (right, out-of-fold) cohorts: observed "
    "proportion of high-grade tumours against the predicted probability (LOWESS curves and quantile bins; "
    "calibration intercept and slope in the legends). The diagonal is perfect calibration.",
    "dca": "Decision curves in the test (left) and training (right) cohorts: net benefit of treating patients as "
    "high grade when their predicted probability exceeds the threshold, against treating all and treating none.",
    "nomogram": "Nomogram of the fused model: each predictor gives points; the total points map to the "
    "probability of a high-grade (ISUP 3–4) tumour.",
    "qc_sheet": "Preprocessing QC sheet: the selected slice of every case with its ROI outline (cases with a "
    "registration fallback or failure are marked).",
}


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# --------------------------------------------------------------------------- pieces


def metrics_rows(
    metrics: Mapping[str, Any], arms: Sequence[str], cohorts: Sequence[str] = ("train", "test")
) -> list[dict[str, Any]]:
    """Rows of the performance table from ``metrics.json``'s ``arms`` mapping."""
    colors = arm_colors(list(arms))
    rows: list[dict[str, Any]] = []
    best_auc = -1.0
    best_arm = None
    for a in arms:
        v = _f(metrics[a].get("test.auc"))
        if v is not None and v > best_auc:
            best_auc, best_arm = v, a
    names = {"train": "Training (OOF)", "test": "Test", "external": "External"}
    for a in arms:
        m = metrics[a]
        first = True
        for c in cohorts:
            if f"{c}.auc" not in m:
                continue
            lo, hi = m.get(f"{c}.auc.ci", [None, None])
            row: dict[str, Any] = {
                "arm": a,
                "label": arm_label(a),
                "color": colors[a],
                "cohort": names.get(c, c),
                "n": int(m.get(f"{c}.n") or 0),
                "auc": _f(m.get(f"{c}.auc")),
                "auc_lo": _f(lo),
                "auc_hi": _f(hi),
                "brier": _f(m.get(f"{c}.brier")),
                "cal_slope": _f(m.get(f"{c}.calibration_slope")),
                "cal_intercept": _f(m.get(f"{c}.calibration_intercept")),
                "hl_p": _f(m.get(f"{c}.hosmer_lemeshow_p")),
                "first": first,
                "best": a == best_arm,
            }
            for k in METRIC_KEYS:
                row[k] = _f(m.get(f"{c}.{k}"))
                ci = m.get(f"{c}.{k}.ci")
                row[f"{k}_lo"] = _f(ci[0]) if ci else None
                row[f"{k}_hi"] = _f(ci[1]) if ci else None
            rows.append(row)
            first = False
    return rows


def delong_blocks(comparisons: Mapping[str, list[dict[str, Any]]], arms: Sequence[str]) -> list[dict[str, Any]]:
    """DeLong matrices (difference row − column and Holm-adjusted p) per cohort, test first."""
    out = []
    for cohort in ("test", "train", "external"):
        rows = comparisons.get(cohort)
        if not rows:
            continue
        n = len(arms)
        diff: list[list[float | None]] = [[None] * n for _ in range(n)]
        p: list[list[float | None]] = [[None] * n for _ in range(n)]
        idx = {a: i for i, a in enumerate(arms)}
        for r in rows:
            i, j = idx.get(r["model_1"]), idx.get(r["model_2"])
            if i is None or j is None:
                continue
            d = _f(r.get("difference"))
            pv = _f(r.get("p_adjusted", r.get("p_value")))
            diff[i][j], diff[j][i] = d, (None if d is None else -d)
            p[i][j] = p[j][i] = pv
        out.append(
            {
                "cohort": {"train": "Training cohort (OOF)", "test": "Test cohort"}.get(cohort, cohort),
                "arms": [arm_label(a) for a in arms],
                "diff": diff,
                "p": p,
                "adjusted": any("p_adjusted" in r for r in rows),
            }
        )
    return out


def table1_blocks(ctx: StudyContext) -> list[dict[str, Any]]:
    """Table 1: one block per cohort (training, test), rows aligned so the template prints them side by side."""
    from rccgrade.report.tables import numeric_methods

    cohort = ctx.cohort
    frame = cohort.clinical_frame()
    centers = cohort.centers()
    if centers.notna().any():
        frame = frame.copy()
        frame["centre"] = centers.astype("object")
    if frame.shape[1] == 0:
        return []
    kinds = dict(cohort.clinical_types)
    kinds["centre"] = "categorical"
    labels = cohort.labels()
    split = ctx.outputs.get("split")
    methods = numeric_methods(frame, labels, kinds, ctx.config.report)
    groups = [("Training cohort", "train"), ("Test cohort", "test")] if split is not None else [("Cohort", None)]
    blocks = []
    for title, which in groups:
        ids = labels.index if which is None else pd.Index(split.loc[split["split"] == which, "patient_id"])
        if len(ids) == 0:
            continue
        y = labels.reindex(ids).dropna().astype(int)
        t = table_one(frame.reindex(y.index), y, kinds, ctx.config.report, methods=methods)
        blocks.append(
            {
                "cohort": title,
                "n_low": int((y == 0).sum()),
                "n_high": int((y == 1).sum()),
                "rows": t.to_dict(orient="records"),
            }
        )
    return [merge_table1(blocks)] if blocks else []


def merge_table1(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Side-by-side Table 1: rows keyed by (variable, level) across cohort blocks (union of levels)."""
    order: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for b, block in enumerate(blocks):
        current = ""
        for r in block["rows"]:
            if r["variable"] == "Patients":
                continue
            if r["variable"]:
                current = r["variable"]
            key = (current, r["level"])
            if key not in cells:
                order.append(key)
                cells[key] = {
                    "variable": r["variable"] if not r["level"] else "",
                    "level": r["level"],
                    "test": r["test"],
                    "missing": 0,
                    "cells": [None] * len(blocks),
                }
            entry = cells[key]
            entry["cells"][b] = {"low": r["low"], "high": r["high"], "p": r["p_value"]}
            if not r["level"]:
                entry["missing"] += int(r["missing"] or 0)
                entry["test"] = entry["test"] or r["test"]
    rows = []
    for key in order:
        entry = cells[key]
        entry["cells"] = [
            c or {"low": "0 (0.0)" if entry["level"] else "—", "high": "0 (0.0)" if entry["level"] else "—", "p": None}
            for c in entry["cells"]
        ]
        rows.append(entry)
    return {
        "cohorts": [{"title": b["cohort"], "n_low": b["n_low"], "n_high": b["n_high"]} for b in blocks],
        "rows": rows,
    }


def qc_block(ctx: StudyContext) -> dict[str, Any]:
    """Data-quality text and the table of problems found by validation and preprocessing."""
    issues: list[dict[str, Any]] = []
    text = []
    report = ctx.validation
    if report is not None:
        text.append(f"Validation of the manifest: {report.summary()}.")
        probs = report.problems
        if len(probs):
            for (code, sev), grp in probs.groupby(["code", "severity"], sort=False):
                issues.append(
                    {
                        "stage": "validation",
                        "check": code,
                        "severity": sev,
                        "n": int(grp["patient_id"].nunique()),
                        "example": f"{grp.iloc[0]['patient_id']}: {str(grp.iloc[0]['message'])[:160]}",
                    }
                )
    pre = ctx.outputs.get("preprocess")
    if pre is not None:
        n_ok = len(pre.get("ok_ids", []))
        flagged = pre.get("flagged_ids", [])
        text.append(
            f"Preprocessing succeeded for {n_ok} cases; registration of a phase fell back to identity "
            f"(metric not improved or failed) in {len(flagged)} case{'s' if len(flagged) != 1 else ''}."
        )
        if flagged:
            issues.append(
                {
                    "stage": "preprocess",
                    "check": "registration fallback",
                    "severity": "warning",
                    "n": len(flagged),
                    "example": ", ".join(flagged[:5]),
                }
            )
    by_stage: dict[tuple[str, str], list[dict[str, str]]] = {}
    for f in ctx.failures:
        if f["stage"] == "validate":
            continue
        by_stage.setdefault((f["stage"], f["error"].split(":")[0][:60]), []).append(f)
    for (stage, what), rows in by_stage.items():
        issues.append(
            {
                "stage": stage,
                "check": "failed case",
                "severity": "error",
                "n": len({r["patient_id"] for r in rows}),
                "example": f"{rows[0]['patient_id']}: {rows[0]['error'][:160]}",
            }
        )
        del what
    if not issues:
        text.append("No problem was found.")
    return {"text": " ".join(text), "issues": issues}


def features_blocks(ctx: StudyContext, arms: Sequence[str]) -> list[dict[str, Any]]:
    """Selected features with their coefficients (or importances) per arm."""
    folder = Path(ctx.outputs["models_dir"])
    info = json.loads((folder / "models.json").read_text())
    out = []
    limit = ctx.config.report.max_features
    for a in arms:
        path = folder / "selected" / f"{arm_folder(a)}.csv"
        if not path.is_file():
            continue
        sel = pd.read_csv(path)
        body = sel[sel["feature"] != "(intercept)"].copy()
        use_coef = "coefficient" in body and body["coefficient"].notna().any()
        col = "coefficient" if use_coef else "importance"
        if col not in body:
            continue
        body["_abs"] = body[col].abs()
        body = body.sort_values("_abs", ascending=False)
        rows = [{"feature": str(r.feature), "value": _f(getattr(r, col))} for r in body.head(limit).itertuples()]
        out.append(
            {
                "arm": a,
                "label": arm_label(a),
                "n_selected": len(body),
                "n_candidates": info.get("n_candidates", {}).get(a),
                "classifier": info.get("classifiers", {}).get(a),
                "value_name": ("Coefficient (per logit unit)" if a == "stacked" else "Coefficient (per SD)")
                if use_coef
                else "Importance",
                "rows": rows,
                "truncated": len(body) > limit,
            }
        )
    return out


def stability_block(ctx: StudyContext) -> dict[str, Any]:
    """Summary of the radiomics ICC table by feature class."""
    stab = ctx.outputs.get("stability")
    if stab is None or len(stab) == 0:
        return {}
    st = ctx.config.radiomics.stability
    model = st.icc_model
    icc = stab[model] if model in stab else stab.iloc[:, 0]
    stable = stab["stable"].astype(bool) if "stable" in stab else icc >= st.threshold

    def klass(feature: str) -> str:
        name = feature.split(":")[-1]
        parts = name.split("_")
        return f"{parts[0]} {parts[1]}" if len(parts) >= 3 else name

    frame = pd.DataFrame(
        {"cls": [klass(f) for f in stab.index], "icc": icc.to_numpy(float), "stable": stable.to_numpy()}
    )
    by = []
    for cls, grp in frame.groupby("cls", sort=True):
        by.append(
            {
                "cls": cls,
                "n": len(grp),
                "stable": int(grp["stable"].sum()),
                "pct": 100.0 * grp["stable"].mean(),
                "median": float(np.nanmedian(grp["icc"])) if grp["icc"].notna().any() else None,
            }
        )
    n_sub = int(stab["n_subjects"].max()) if "n_subjects" in stab else None
    text = (
        f"{int(stable.sum())} of {len(stab)} radiomics features ({100 * stable.mean():.0f}%) were stable "
        f"({model.replace('_', '(').replace('icc', 'ICC') + ')'} ≥ {st.threshold}) over {st.n_perturbations} perturbed "
        f"copies per case (mask erosion/dilation {st.volume_mm} mm, contour noise {st.contour_mm} mm, shifts ≤ "
        f"{st.max_shift_mm} mm, rotations ≤ {st.max_rotation_deg}°, noise {st.noise_hu} HU)"
        + (f" of {n_sub} patients" if n_sub else "")
        + "; unstable features were excluded before selection."
    )
    return {"text": text, "by_class": by, "icc_model": model.upper().replace("_", "(") + ")", "threshold": st.threshold}


def summary_paragraphs(ctx: StudyContext, cohort_info: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The report's opening paragraphs (abstract-like)."""
    paras = []
    pre = ctx.outputs.get("preprocess") or {}
    paras.append(
        f"{cohort_info.get('n_usable', 0)} patients with triple-phase CT and a tumour mask were analysed "
        f"({cohort_info.get('n_high', 0)} high grade, {cohort_info.get('prevalence', 0):.1f}%). "
        f"Models were developed on {cohort_info.get('n_train', '—')} training patients and evaluated on "
        f"{cohort_info.get('n_test', '—')} test patients; every fitted step (imputation, selection, scaling, tuning, "
        "threshold) used the training patients only."
        + (f" {len(pre.get('flagged_ids', []))} registrations fell back to identity." if pre.get("flagged_ids") else "")
    )
    test_rows = [
        r
        for r in rows
        if r["cohort"] == "Test"
        and all(r[k] is not None for k in ("auc", "auc_lo", "auc_hi", "sensitivity", "specificity"))
    ]
    if test_rows:
        best = max(test_rows, key=lambda r: r["auc"])
        worst = min(test_rows, key=lambda r: r["auc"])
        paras.append(
            f"In the test cohort the {best['label'].lower()} model discriminated best, AUC {best['auc']:.3f} "
            f"(95% CI {best['auc_lo']:.3f}–{best['auc_hi']:.3f}), with sensitivity {best['sensitivity']:.2f} and "
            f"specificity {best['specificity']:.2f} at the training-derived threshold; the "
            f"{worst['label'].lower()} model was weakest (AUC {worst['auc']:.3f}, "
            f"{worst['auc_lo']:.3f}–{worst['auc_hi']:.3f})."
        )
    return paras


def methods_paragraphs(ctx: StudyContext) -> list[str]:
    """A short, factual methods summary generated from the configuration actually used."""
    cfg = ctx.config
    pre = cfg.preprocess
    deep = ctx.outputs.get("deep_settings") or cfg.deep
    rad = cfg.radiomics
    mod = cfg.models
    ev = cfg.evaluation
    reg = (
        f"the nephrographic and excretory phases were registered rigidly to the {cfg.cohort.mask_phase} phase "
        f"(Mattes mutual information restricted to the tumour ± {pre.registration.metric_margin_mm:g} mm)"
        if getattr(pre.registration, "enabled", getattr(pre, "register", True))
        else "phases were assumed aligned (no registration)"
    )
    paras = [
        "Outcome: WHO/ISUP grade 3–4 (high grade) versus 1–2 (low grade). "
        f"Images were reoriented to {pre.orientation}; {reg}; slices were resampled to {pre.inplane_spacing_mm:g} mm "
        f"in-plane, windowed at level {pre.window_level:g} / width {pre.window_width:g} HU and the "
        f"{'largest tumour cross-section' if pre.slice_selection == 'largest' else pre.slice_selection + ' slices'} "
        f"was cropped for the ROI settings {', '.join(pre.rois)} ({pre.image_size}×{pre.image_size} px, the three "
        "phases as channels).",
        f"Radiomics: PyRadiomics 3.0.1 on the {', '.join(rad.phases)} phase(s) with the "
        f"'{Path(str(rad.params)).stem}' parameters; stability by ICC under perturbations "
        f"({'on' if rad.stability.enabled else 'off'}). Deep features: "
        f"{deep.arch} ({deep.mode}; weights {deep.weights}), 2048-d pooled features per ROI setting"
        + (" (out-of-fold for training patients)." if deep.mode == "finetune" else ".")
        + " Clinical variables as recorded, imputed inside each model.",
        f"Models: {mod.classifier} classifiers per arm ({', '.join(mod.arms)}), selection steps "
        f"{' → '.join(mod.selection.steps)} on the training patients, hyper-parameters tuned by {mod.cv_folds}-fold "
        f"stratified CV; class imbalance handled by the training-derived threshold"
        + (
            " (logistic models unweighted to keep probabilities calibrated)"
            if mod.classifier == "logistic"
            else " and class weights"
        )
        + ". Split: "
        f"{ctx.outputs.get('split_source', 'stratified random')} ({1 - mod.test_size:.0%} / {mod.test_size:.0%}). "
        f"Training-cohort statistics use out-of-fold probabilities. AUC CIs by {ev.ci_method}; paired DeLong tests "
        f"with {ev.multiple_testing} correction; Youden threshold from the training cohort; calibration "
        "slope/intercept, "
        f"Brier score, Hosmer–Lemeshow ({ev.hl_groups} groups); decision curves.",
    ]
    return paras


def provenance_block(ctx: StudyContext) -> dict[str, Any]:
    """Provenance for the report: versions, checksums, stages, the resolved configuration."""
    path = ctx.run_dir / "provenance.json"
    prov = json.loads(path.read_text()) if path.is_file() else {}
    sums = prov.get("input_checksums", {})
    shown = dict(list(sums.items())[:200])
    plat = prov.get("platform", {})
    stages = [
        {"name": r.name, "status": r.status, "key": r.key, "seconds": r.seconds, "n_failures": r.n_failures}
        for r in ctx.records
    ]
    return {
        "seed": ctx.seed,
        "source_revision": prov.get("source_revision"),
        "platform_text": f"Python {plat.get('python', '?')} on {plat.get('os', '?')}, "
        f"{plat.get('usable_cores', '?')} cores, {plat.get('memory_gib', '?')} GiB",
        "total_s": sum(r.seconds for r in ctx.records),
        "packages": prov.get("packages", {}),
        "checksums": shown,
        "n_checksums": len(sums),
        "checksums_truncated": len(sums) > len(shown),
        "config_yaml": yaml.safe_dump(ctx.config.model_dump(mode="json"), sort_keys=False),
        "stages": stages,
    }


def gradcam_gallery(
    ctx: StudyContext, arms: Sequence[str], metrics: Mapping[str, Any], out: Path
) -> list[dict[str, Any]]:
    """Grad-CAM figures of the best deep arm for the most confident test predictions.

    Fine-tuned networks are explained directly. For frozen features the explained network is the backbone
    with its head replaced by the deep arm's own logistic model (selected features, z-scoring and
    coefficients folded into one linear layer), so the map explains the arm's actual prediction.
    """
    n = ctx.config.report.gradcam_cases
    deep_arms = [a for a in arms if a.startswith("deep:")]
    if n <= 0 or not deep_arms:
        return []
    best = max(deep_arms, key=lambda a: _f(metrics[a].get("test.auc")) or _f(metrics[a].get("train.auc")) or 0.0)
    roi = best.split(":", 1)[1]
    try:
        model, mean, std = _explained_network(ctx, best, roi)
    except Exception as exc:  # noqa: BLE001 - the gallery is optional; say why it is absent
        ctx.warn(f"Grad-CAM gallery not drawn: {type(exc).__name__}: {exc}")
        return []
    if model is None:
        return []
    from rccgrade.deep.cam import gradcam_figure
    from rccgrade.preprocess.slices import load_slices

    pred = ctx.outputs["predictions"].set_index("patient_id")
    cohort = pred[pred["split"] == "test"] if (pred["split"] == "test").any() else pred
    high = cohort[cohort["y"] == 1].sort_values(best, ascending=False).index.tolist()
    low = cohort[cohort["y"] == 0].sort_values(best, ascending=True).index.tolist()
    chosen: list[str] = []
    for i in range(max(len(high), len(low))):
        for lst in (high, low):
            if i < len(lst) and len(chosen) < n:
                chosen.append(lst[i])
    slices = load_slices(ctx.outputs["preprocess_dir"], roi)
    deep = ctx.outputs.get("deep_settings") or ctx.config.deep
    gallery = []
    for pid in chosen:
        arr = slices.get(pid)
        if arr is None:
            continue
        k = arr.shape[0] // 2
        path = out / f"gradcam_{arm_folder(best)}_{pid}.png"
        grade = "high" if int(pred.loc[pid, "y"]) == 1 else "low"
        gradcam_figure(
            model,
            arr[k],
            path,
            mean=mean,
            std=std,
            input_size=deep.input_size,
            class_idx=0,
            title=f"{pid} ({grade} grade)",
            dpi=90,
        )
        gallery.append(
            {
                "key": f"gradcam_{len(gallery)}",
                "png": path,
                "arm": arm_label(best),
                "caption": f"{pid}: ISUP {grade} grade; predicted P(high) = {float(pred.loc[pid, best]):.2f}",
            }
        )
    return gallery


def _explained_network(ctx: StudyContext, arm: str, roi: str) -> tuple[Any, Any, Any]:
    import torch

    from rccgrade.deep.weights import load_backbone

    deep = ctx.outputs.get("deep_settings") or ctx.config.deep
    manifest = ctx.outputs.get("deep_manifest") or {}
    model_files = manifest.get("model_files") or {}
    _, info = load_backbone(deep, seed=ctx.seed)
    if deep.mode == "finetune" and roi in model_files:
        from rccgrade.deep.finetune import load_finetuned

        return load_finetuned(model_files[roi], deep), info.mean, info.std
    sel_path = Path(ctx.outputs["models_dir"]) / "selected" / f"{arm_folder(arm)}.csv"
    sel = pd.read_csv(sel_path)
    if "coefficient" not in sel or sel["coefficient"].isna().all():
        ctx.warn(f"Grad-CAM gallery not drawn: the {arm_label(arm)} arm is not a linear model")
        return None, None, None
    body = sel[sel["feature"] != "(intercept)"]
    prefix = f"deep:{roi}:f"
    if not all(str(f).startswith(prefix) for f in body["feature"]):
        ctx.warn(f"Grad-CAM gallery not drawn: the {arm_label(arm)} arm's inputs are not raw pooled features (PCA?)")
        return None, None, None
    idx = [int(str(f)[len(prefix) :]) for f in body["feature"]]
    coef = body["coefficient"].to_numpy(float)
    sd = np.where(body["sd"].to_numpy(float) > 0, body["sd"].to_numpy(float), 1.0)
    mu = body["mean"].to_numpy(float)
    intercept = float(sel.loc[sel["feature"] == "(intercept)", "coefficient"].iloc[0])
    model, info = load_backbone(deep, seed=ctx.seed)
    dim = model.fc.in_features
    weight = torch.zeros(1, dim)
    weight[0, idx] = torch.as_tensor(coef / sd, dtype=torch.float32)
    head = torch.nn.Linear(dim, 1)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.fill_(intercept - float(np.sum(coef * mu / sd)))
    model.fc = head
    return model.eval(), info.mean, info.std


# --------------------------------------------------------------------------- entry point


def write_study_report(ctx: StudyContext) -> Path:
    """Build the report context from the run's outputs and render ``report.html``."""
    cfg = ctx.config
    metrics = ctx.outputs.get("metrics", {})
    arms = list(metrics.get("arms", {}))
    split = ctx.outputs.get("split")
    labels = ctx.cohort.labels()
    n_high = int((labels == 1).sum())
    cohort_info: dict[str, Any] = {
        "n_total": len(ctx.validation.cases) if ctx.validation is not None else len(ctx.cohort),
        "n_usable": len(ctx.cohort),
        "n_excluded": (len(ctx.validation.cases) - len(ctx.cohort)) if ctx.validation is not None else 0,
        "n_high": n_high,
        "prevalence": 100.0 * n_high / max(len(ctx.cohort), 1),
    }
    if split is not None:
        s = split.set_index("patient_id")["split"]
        lab = labels.reindex(s.index)
        cohort_info.update(
            {
                "n_train": int((s == "train").sum()),
                "n_test": int((s == "test").sum()),
                "n_train_high": int(((s == "train") & (lab == 1)).sum()),
                "n_test_high": int(((s == "test") & (lab == 1)).sum()),
                "split_source": ctx.outputs.get("split_source", "stratified random"),
            }
        )
    rows = metrics_rows(metrics.get("arms", {}), arms) if arms else []
    figures: dict[str, Figure] = {}
    for name, paths in (ctx.outputs.get("figures") or {}).items():
        caption = FIGURE_CAPTIONS.get(name.split("_")[0], "")
        if name == "nomogram":
            arm = ctx.outputs.get("nomogram_arm", "stacked")
            caption = (
                "Nomogram of the stacked (late-fusion) model: each arm's score (logit of its out-of-fold "
                "probability) gives points; the total points map to the probability of a high-grade (ISUP 3–4) "
                "tumour."
                if arm == "stacked"
                else f"Nomogram of the {arm_label(arm).lower()} model: each predictor gives points; the total "
                "points map to the probability of a high-grade (ISUP 3–4) tumour."
            )
        figures[name] = Figure(
            caption=caption,
            png=Path(paths["png"]) if "png" in paths else None,
            svg=Path(paths["svg"]) if "svg" in paths else None,
            width={"roc": "90%", "nomogram": "75%"}.get(name, "100%"),
        )
    pre_dir = ctx.outputs.get("preprocess_dir")
    sheet = (ctx.outputs.get("preprocess") or {}).get("qc_sheet")
    if pre_dir is not None and sheet:
        figures["qc_sheet"] = Figure(caption=FIGURE_CAPTIONS["qc_sheet"], png=Path(pre_dir) / sheet, width="80%")
    gallery = []
    if arms:
        try:
            gallery = gradcam_gallery(ctx, arms, metrics["arms"], ctx.run_dir / "figures")
        except Exception as exc:  # noqa: BLE001 - never lose the report over the gallery
            log.warning("Grad-CAM gallery failed: %s", exc)
            ctx.warn(f"Grad-CAM gallery not drawn: {type(exc).__name__}: {exc}")
    for g in gallery:
        figures[g["key"]] = Figure(caption=g["caption"], png=g["png"])
    context = ReportContext(
        title=cfg.report.title,
        run_name=cfg.name,
        version=__version__,
        warnings=list(ctx.warnings),
        cohort=cohort_info,
        table1=table1_blocks(ctx),
        qc=qc_block(ctx),
        metrics=rows,
        delong=delong_blocks(metrics.get("comparisons", {}), arms),
        figures=figures,
        features=features_blocks(ctx, arms) if arms else [],
        stability=stability_block(ctx),
        gradcam=gallery,
        methods=methods_paragraphs(ctx),
        provenance=provenance_block(ctx),
    )
    context.summary = summary_paragraphs(ctx, cohort_info, rows)
    context.checklist = default_checklist(context)
    return render_report(context, ctx.run_dir / "report.html", cfg.report)
