"""Stage ``report``: the self-contained HTML report, read like a paper's results section.

A summary, Table 1 by grade, data quality, the performance table with CIs, ROC curves, the DeLong
comparison matrix, calibration, decision curves, the nomogram, selected features, stability, Grad-CAM,
the reporting checklist and provenance (see :mod:`rccgrade.report.html`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rccgrade import __version__
from rccgrade.errors import RccgradeError
from rccgrade.features.naming import arm_folder, arm_label, arm_roi, is_deep
from rccgrade.safepath import child_path
from rccgrade.study.context import StageRecord, StudyContext, log, need
from rccgrade.study.methods_text import fusion_records, methods_paragraphs, summary_paragraphs
from rccgrade.study.outputs import DeepOutput, ModelsOutput, PreprocessOutput, ReportOutput
from rccgrade.study.report_blocks import (
    EXPLAIN_CAPTIONS,
    FIGURE_CAPTIONS,
    _f,
    delong_blocks,
    explanation_blocks,
    features_blocks,
    metrics_rows,
    provenance_block,
    qc_block,
    stability_block,
    table1_blocks,
)


def nomogram_caption(arm: str) -> str:
    """Caption of the nomogram of ``arm``."""
    if arm == "stacked":
        return (
            "Nomogram of the stacked (late-fusion) model: each arm's score (logit of its out-of-fold "
            "probability) gives points; the total points map to the probability of a high-grade (ISUP 3–4) tumour."
        )
    return (
        f"Nomogram of the {arm_label(arm).lower()} model: each predictor gives points; the total "
        "points map to the probability of a high-grade (ISUP 3–4) tumour."
    )


def gradcam_gallery(
    ctx: StudyContext,
    models: ModelsOutput,
    deep: DeepOutput | None,
    preprocess: PreprocessOutput,
    metrics: Mapping[str, Any],
    out: Path,
) -> list[dict[str, Any]]:
    """Grad-CAM figures of the best deep arm for the most confident test predictions.

    The explained network's single logit is the arm's own prediction (:func:`rccgrade.study.fitted.explained_network`).
    An arm that is not a linear model on raw pooled features gets a warning instead of a gallery.
    """
    from rccgrade.study.fitted import explained_network

    n = ctx.config.report.gradcam_cases
    deep_arms = [a for a in models.arms if is_deep(a)]
    if n <= 0 or not deep_arms or deep is None:
        return []
    best = max(deep_arms, key=lambda a: _f(metrics[a].get("test.auc")) or _f(metrics[a].get("train.auc")) or 0.0)
    roi = arm_roi(best)
    assert roi is not None
    try:
        model, mean, std = explained_network(models, best, roi, deep, ctx.seed)
    except RccgradeError as exc:
        ctx.warn(f"Grad-CAM gallery not drawn: {exc}")
        return []
    from rccgrade.deep.cam import gradcam_figure
    from rccgrade.preprocess.slices import load_slices

    pred = models.predictions.set_index("patient_id")
    cohort = pred[pred["split"] == "test"] if (pred["split"] == "test").any() else pred
    high = cohort[cohort["y"] == 1].sort_values(best, ascending=False).index.tolist()
    low = cohort[cohort["y"] == 0].sort_values(best, ascending=True).index.tolist()
    chosen: list[str] = []
    for i in range(max(len(high), len(low))):
        for lst in (high, low):
            if i < len(lst) and len(chosen) < n:
                chosen.append(lst[i])
    slices = load_slices(preprocess.folder, roi)
    gallery = []
    for pid in chosen:
        arr = slices.get(pid)
        if arr is None:
            continue
        k = arr.shape[0] // 2
        path = child_path(out, f"gradcam_{arm_folder(best)}_{pid}", ".png")
        grade = "high" if int(pred.loc[pid, "y"]) == 1 else "low"
        gradcam_figure(
            model,
            arr[k],
            path,
            mean=mean,
            std=std,
            input_size=deep.settings.input_size,
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


def explanations(ctx: StudyContext, models: ModelsOutput, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Contributions of every arm's saved model on the test cohort (the training cohort when there is none).

    Each arm's model is read back from its bundle (the model the report describes, not a refit); the features
    are the study's FeatureTables joined as for fitting. Returns :func:`explanation_blocks`'s block and figures.
    """
    from rccgrade.features.table import join_tables
    from rccgrade.models.bundle import load_bundle
    from rccgrade.study.stages.models import feature_tables

    tables = feature_tables(ctx)
    split = ctx.results.split
    if not tables or split is None or not models.arms:
        return {}, {}
    table = join_tables(*tables.values())
    cohort = "test cohort"
    ids = [p for p in split.ids("test") if p in table.index]
    if not ids:
        cohort, ids = "training cohort (no test patients)", [p for p in split.ids("train") if p in table.index]
    fitted = {arm: load_bundle(models.bundle_dir(arm)).model for arm in models.arms}
    top_n = min(15, ctx.config.report.max_features)
    return explanation_blocks(fitted, table.loc[ids], cohort, out, top_n=top_n)


def cohort_counts(ctx: StudyContext) -> dict[str, Any]:
    """Counts for the report's patients section."""
    cohort = need(ctx.results.cohort, "cohort")
    labels = cohort.cohort.labels()
    n_high = int((labels == 1).sum())
    n = len(cohort.cohort)
    info: dict[str, Any] = {
        "n_total": cohort.n_total,
        "n_usable": n,
        "n_excluded": cohort.n_total - n,
        "n_high": n_high,
        "prevalence": 100.0 * n_high / max(n, 1),
    }
    split = ctx.results.split
    if split is not None:
        s = split.split.set_index("patient_id")["split"]
        lab = labels.reindex(s.index)
        info.update(
            {
                "n_train": int((s == "train").sum()),
                "n_test": int((s == "test").sum()),
                "n_train_high": int(((s == "train") & (lab == 1)).sum()),
                "n_test_high": int(((s == "test") & (lab == 1)).sum()),
                "split_source": split.source,
            }
        )
    return info


def _packages(run_dir: Path) -> dict[str, str]:
    path = run_dir / "provenance.json"
    return dict(json.loads(path.read_text()).get("packages", {})) if path.is_file() else {}


def write_study_report(ctx: StudyContext) -> Path:
    """Build the report context from the stages' outputs and render ``report.html``."""
    from rccgrade.report.html import Figure, ReportContext, default_checklist, render_report

    cfg = ctx.config
    r = ctx.results
    cohort = need(r.cohort, "cohort")
    models = need(r.models, "models")
    evaluation = need(r.evaluate, "evaluate")
    preprocess = need(r.preprocess, "preprocess")
    metrics = evaluation.metrics
    arms: Sequence[str] = list(metrics.get("arms", {}))
    cohort_info = cohort_counts(ctx)
    rows = metrics_rows(metrics.get("arms", {}), arms) if arms else []
    figures: dict[str, Any] = {}
    for name, paths in evaluation.figures.items():
        caption = FIGURE_CAPTIONS.get(name.split("_")[0], "")
        if name == "nomogram" and evaluation.nomogram_arm is not None:
            caption = nomogram_caption(evaluation.nomogram_arm)
        figures[name] = Figure(
            caption=caption,
            png=paths.png,
            svg=paths.svg,
            width={"roc": "90%", "nomogram": "75%"}.get(name, "100%"),
        )
    if preprocess.qc_sheet is not None:
        figures["qc_sheet"] = Figure(caption=FIGURE_CAPTIONS["qc_sheet"], png=preprocess.qc_sheet, width="80%")
    gallery = gradcam_gallery(ctx, models, r.deep, preprocess, metrics["arms"], ctx.run_dir / "figures") if arms else []
    for g in gallery:
        figures[g["key"]] = Figure(caption=g["caption"], png=g["png"])
    explained, explain_figures = explanations(ctx, models, ctx.run_dir / "figures") if arms else ({}, {})
    for key, paths in explain_figures.items():
        caption = (
            EXPLAIN_CAPTIONS["source_shares"]
            if key == "source_shares"
            else EXPLAIN_CAPTIONS["beeswarm"].format(
                arm=next(a["label"] for a in explained["arms"] if a["figure"] == key), cohort=explained["cohort"]
            )
        )
        width = "60%" if key == "source_shares" else "85%"
        figures[key] = Figure(caption=caption, png=paths.get("png"), svg=paths.get("svg"), width=width)
    split = r.split.split if r.split is not None else None
    context = ReportContext(
        title=cfg.report.title,
        run_name=cfg.name,
        version=__version__,
        warnings=list(ctx.warnings),
        cohort=cohort_info,
        table1=table1_blocks(cohort.cohort, split, cfg.report),
        qc=qc_block(cohort.validation, preprocess, ctx.failures),
        metrics=rows,
        delong=delong_blocks(metrics.get("comparisons", {}), arms),
        figures=figures,
        features=features_blocks(models, arms, cfg.report.max_features) if arms else [],
        stability=stability_block(r.radiomics.stability if r.radiomics else None, cfg.radiomics.stability),
        gradcam=gallery,
        explanations=explained,
        methods=methods_paragraphs(
            cfg,
            deep=r.deep.settings if r.deep is not None else None,
            deep_dims=dict(r.deep.dims) if r.deep is not None else None,
            split_source=r.split.source if r.split is not None else "stratified random",
            packages=_packages(ctx.run_dir),
            fusion=fusion_records(models),
        ),
        provenance=provenance_block(ctx.run_dir, cfg, ctx.records),
    )
    context.summary = summary_paragraphs(cohort_info, rows, preprocess.flagged_ids)
    context.checklist = default_checklist(context)
    return render_report(context, ctx.run_dir / "report.html", cfg.report)


class ReportStage:
    """Not cached: the report always shows this run's warnings, stages and provenance."""

    name = "report"
    description = "HTML report"
    requires: tuple[str, ...] = ("cohort", "preprocess", "split", "models", "evaluate")
    version = "report-1"

    def run(self, ctx: StudyContext, record: StageRecord) -> ReportOutput | None:
        """Render ``report.html`` (skipped when the report is disabled)."""
        if not ctx.config.report.enabled:
            record.status = "skipped"
            record.detail = "report disabled"
            return None
        path = write_study_report(ctx)
        record.detail = str(path.name)
        log.debug("report written to %s", path)
        return ReportOutput(path=path)
