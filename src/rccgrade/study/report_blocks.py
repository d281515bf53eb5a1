"""Pure builders of the study report's tables and blocks, from typed stage outputs (no I/O but reading
``provenance.json`` and ``models.json``-derived objects). Used by the study's report stage and by external
validation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rccgrade.features.naming import arm_label, radiomics_feature_class
from rccgrade.report.figures import arm_colors
from rccgrade.report.tables import table_one
from rccgrade.study.context import StageRecord
from rccgrade.study.outputs import ModelsOutput, PreprocessOutput


def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


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

EXPLAIN_CAPTIONS: dict[str, str] = {
    "beeswarm": "{arm}: per-patient feature contributions in the {cohort} (one dot per patient; the largest mean "
    "|contribution| first). Colour: the value the model saw (z-score; blue low, red high); right of the line "
    "raises the predicted probability of a high-grade tumour.",
    "source_shares": "Share of each model's mean |contribution| by source of its features (clinical, radiomics, "
    "kinetic, deep …), in the same cohort.",
}


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


def table1_blocks(cohort: Any, split: pd.DataFrame | None, settings: Any) -> list[dict[str, Any]]:
    """Table 1: one block per cohort (training, test), rows aligned so the template prints them side by side.

    Args:
        cohort: The usable :class:`~rccgrade.cohort.types.Cohort`.
        split: ``patient_id``/``split`` table, or None (one block for the whole cohort).
        settings: The report settings (tests and number formats).
    """
    from rccgrade.report.tables import numeric_methods

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
    methods = numeric_methods(frame, labels, kinds, settings)
    groups = [("Training cohort", "train"), ("Test cohort", "test")] if split is not None else [("Cohort", None)]
    blocks = []
    for title, which in groups:
        ids = labels.index if which is None else pd.Index(split.loc[split["split"] == which, "patient_id"])
        if len(ids) == 0:
            continue
        y = labels.reindex(ids).dropna().astype(int)
        t = table_one(frame.reindex(y.index), y, kinds, settings, methods=methods)
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


def qc_block(report: Any, preprocess: PreprocessOutput | None, failures: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """Data-quality text and the table of problems found by validation and preprocessing.

    Args:
        report: The cohort's validation report (or None).
        preprocess: The preprocessing output (or None when it did not run).
        failures: Per-case failures (``stage``, ``patient_id``, ``error``).
    """
    issues: list[dict[str, Any]] = []
    text = []
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
    if preprocess is not None:
        n_ok = len(preprocess.ok_ids)
        flagged = list(preprocess.flagged_ids)
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
    for f in failures:
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


def features_blocks(models: ModelsOutput, arms: Sequence[str], limit: int) -> list[dict[str, Any]]:
    """Selected features with their coefficients (or importances) per arm (at most ``limit`` rows each)."""
    out = []
    for a in arms:
        path = models.selected_path(a)
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
                "n_candidates": models.n_candidates.get(a),
                "classifier": models.classifiers.get(a),
                "value_name": ("Coefficient (per logit unit)" if a == "stacked" else "Coefficient (per SD)")
                if use_coef
                else "Importance",
                "rows": rows,
                "truncated": len(body) > limit,
            }
        )
    return out


def stability_block(stab: pd.DataFrame | None, st: Any) -> dict[str, Any]:
    """Summary of the radiomics ICC table (``stab``) by feature class; ``st``: the stability settings."""
    if stab is None or len(stab) == 0:
        return {}
    model = st.icc_model
    icc = stab[model] if model in stab else stab.iloc[:, 0]
    stable = stab["stable"].astype(bool) if "stable" in stab else icc >= st.threshold

    frame = pd.DataFrame(
        {
            "cls": [radiomics_feature_class(f) for f in stab.index],
            "icc": icc.to_numpy(float),
            "stable": stable.to_numpy(),
        }
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
        + (f" of {n_sub} training patients" if n_sub else "")
        + "; unstable features were excluded before selection."
    )
    return {"text": text, "by_class": by, "icc_model": model.upper().replace("_", "(") + ")", "threshold": st.threshold}


def provenance_block(run_dir: Path, config: Any, records: Sequence[StageRecord]) -> dict[str, Any]:
    """Provenance for the report: versions, checksums, stages, the resolved configuration."""
    path = run_dir / "provenance.json"
    prov = json.loads(path.read_text()) if path.is_file() else {}
    sums = prov.get("input_checksums", {})
    shown = dict(list(sums.items())[:200])
    plat = prov.get("platform", {})
    stages = [
        {"name": r.name, "status": r.status, "key": r.key, "seconds": r.seconds, "n_failures": r.n_failures}
        for r in records
    ]
    return {
        "seed": int(config.seed),
        "source_revision": prov.get("source_revision"),
        "platform_text": f"Python {plat.get('python', '?')} on {plat.get('os', '?')}, "
        f"{plat.get('usable_cores', '?')} cores, {plat.get('memory_gib', '?')} GiB",
        "total_s": sum(r.seconds for r in records),
        "packages": prov.get("packages", {}),
        "checksums": shown,
        "n_checksums": len(sums),
        "checksums_truncated": len(sums) > len(shown),
        "config_yaml": yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        "stages": stages,
    }


def explanation_blocks(
    fitted: Mapping[str, Any], table: pd.DataFrame, cohort: str, out_dir: Path, top_n: int = 15
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Per-arm contribution summaries on ``table``'s patients: beeswarm figures and the source-share table.

    Args:
        fitted: Arm → its fitted model (the saved bundle's ``model``), in report order.
        table: FeatureTable of the patients to explain (the test cohort; never used to fit anything).
        cohort: Name of that cohort in the text (``test cohort``).
        out_dir: Figure folder (``beeswarm_<arm>.svg/png``, ``source_shares.svg/png/csv``).
        top_n: Features per beeswarm.

    Returns:
        ``(block, figures)``: ``block`` holds ``cohort``, ``n``, ``arms`` (per arm: ``arm``, ``label``,
        ``available``, ``reason`` — e.g. "not available for SVM: …" —, ``method``, ``scale``, ``figure``) and
        ``shares`` (``sources``, ``rows`` of ``label`` and one share per source, rows summing to 1);
        ``figures`` maps a figure key to its ``svg``/``png`` paths. An arm whose classifier has no honest
        contribution method is listed as not available; no number is invented for it.
    """
    from rccgrade.errors import RccgradeError
    from rccgrade.models.explain import arm_contribution_summary, source_share_table
    from rccgrade.report.explain_figures import save_explanation_figures
    from rccgrade.safepath import safe_filename

    arms: list[dict[str, Any]] = []
    summaries: dict[str, Any] = {}
    for arm, model in fitted.items():
        entry: dict[str, Any] = {"arm": arm, "label": arm_label(arm), "available": False, "reason": ""}
        entry.update(method="", scale="", figure=None)
        try:
            summary = arm_contribution_summary(model, table, arm)
        except RccgradeError as exc:
            steps = getattr(model, "named_steps", None)
            kind = type(steps["clf"] if steps is not None and "clf" in steps else model).__name__
            what = "SVM" if "SVM" in kind else kind
            entry["reason"] = f"not available for {what}: {exc.message}"
            arms.append(entry)
            continue
        if summary.features.empty:
            entry["reason"] = "not available: the fitted model uses no feature"
            arms.append(entry)
            continue
        summaries[arm] = summary
        c = summary.contributions
        entry.update(available=True, method=c.method, scale=c.scale, figure=f"beeswarm_{safe_filename(arm)}")
        arms.append(entry)
    figures: dict[str, dict[str, Any]] = {}
    shares: dict[str, Any] = {}
    if summaries:
        saved = save_explanation_figures(summaries, str(out_dir), top_n=top_n)
        for arm in summaries:
            figures[f"beeswarm_{safe_filename(arm)}"] = saved[arm]
        figures["source_shares"] = saved["source_shares"]
        share = source_share_table(summaries)
        shares = {
            "sources": [arm_label(s) for s in share.columns],
            "rows": [
                {"label": arm_label(str(a)), "cells": [float(v) for v in share.loc[a].to_numpy()]} for a in share.index
            ],
        }
    return {"cohort": cohort, "n": len(table), "arms": arms, "shares": shares, "top_n": top_n}, figures
