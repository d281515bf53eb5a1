"""The report's prose, generated from the settings actually used and the provenance, so its numbers are true."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rccgrade.config import StudyConfig
from rccgrade.deep.settings import DeepSettings
from rccgrade.radiomics.settings import methods_sentence


def summary_paragraphs(
    cohort_info: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], flagged_ids: Sequence[str] = ()
) -> list[str]:
    """The report's opening paragraphs (abstract-like).

    Args:
        cohort_info: Counts (``n_usable``, ``n_high``, ``prevalence``, ``n_train``, ``n_test``).
        rows: Performance rows (:func:`rccgrade.study.report_blocks.metrics_rows`).
        flagged_ids: Patients whose registration fell back to identity.
    """
    paras = [
        f"{cohort_info.get('n_usable', 0)} patients with triple-phase CT and a tumour mask were analysed "
        f"({cohort_info.get('n_high', 0)} high grade, {cohort_info.get('prevalence', 0):.1f}%). "
        f"Models were developed on {cohort_info.get('n_train', '—')} training patients and evaluated on "
        f"{cohort_info.get('n_test', '—')} test patients; every fitted step (imputation, selection, scaling, tuning, "
        "threshold) used the training patients only."
        + (f" {len(flagged_ids)} registrations fell back to identity." if flagged_ids else "")
    ]
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


def _dims_text(dims: Mapping[str, int]) -> str:
    """``{"box": 2048, "tumour": 2048}`` → ``2048-d``; different sizes per ROI are listed."""
    sizes = sorted(set(dims.values()))
    if not sizes:
        return "no"
    if len(sizes) == 1:
        return f"{sizes[0]}-d"
    return "(" + ", ".join(f"{roi}: {d}-d" for roi, d in dims.items()) + ")"


def methods_paragraphs(
    cfg: StudyConfig,
    *,
    deep: DeepSettings | None = None,
    deep_dims: Mapping[str, int] | None = None,
    split_source: str = "stratified random",
    packages: Mapping[str, str] | None = None,
) -> list[str]:
    """A short, factual methods summary generated from the configuration actually used.

    Args:
        cfg: The study configuration.
        deep: The deep settings actually used (weights after an offline fallback); default ``cfg.deep``.
        deep_dims: ROI → number of pooled deep features in the feature table (None: deep features not used).
        split_source: ``manifest`` or ``stratified random``.
        packages: Package → version, from ``provenance.json`` (PyRadiomics' version is quoted from it).
    """
    pre = cfg.preprocess
    deep = deep or cfg.deep
    rad = cfg.radiomics
    mod = cfg.models
    ev = cfg.evaluation
    pyradiomics = (packages or {}).get("pyradiomics")
    reg = (
        f"the nephrographic and excretory phases were registered rigidly to the {cfg.cohort.mask_phase} phase "
        f"(Mattes mutual information restricted to the tumour ± {pre.registration.metric_margin_mm:g} mm)"
        if getattr(pre.registration, "enabled", getattr(pre, "register", True))
        else "phases were assumed aligned (no registration)"
    )
    deep_text = (
        f"Deep features: {deep.arch} ({deep.mode}; weights {deep.weights}), {_dims_text(deep_dims)} pooled "
        "features per ROI setting" + (" (out-of-fold for training patients)." if deep.mode == "finetune" else ".")
        if deep_dims is not None
        else "Deep features: not used."
    )
    return [
        "Outcome: WHO/ISUP grade 3–4 (high grade) versus 1–2 (low grade). "
        f"Images were reoriented to {pre.orientation}; {reg}; slices were resampled to {pre.inplane_spacing_mm:g} mm "
        f"in-plane, windowed at level {pre.window_level:g} / width {pre.window_width:g} HU and the "
        f"{'largest tumour cross-section' if pre.slice_selection == 'largest' else pre.slice_selection + ' slices'} "
        f"was cropped for the ROI settings {', '.join(pre.rois)} ({pre.image_size}×{pre.image_size} px, the three "
        "phases as channels).",
        f"Radiomics: PyRadiomics{' ' + pyradiomics if pyradiomics else ''} on the {', '.join(rad.phases)} phase(s) "
        f"with the '{Path(str(rad.params)).stem}' parameters; stability by ICC under perturbations "
        + (
            f"(on: {rad.stability.n_perturbations} perturbed copies of "
            + (
                "every training patient"
                if rad.stability.max_patients is None
                else f"at most {rad.stability.max_patients} training patients"
            )
            + "). "
            if rad.stability.enabled
            else "(off). "
        )
        + methods_sentence(rad)
        + deep_text
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
        f"{split_source} ({1 - mod.test_size:.0%} / {mod.test_size:.0%}). "
        f"Training-cohort statistics use out-of-fold probabilities. AUC CIs by {ev.ci_method}; paired DeLong tests "
        f"with {ev.multiple_testing} correction; Youden threshold from the training cohort; calibration "
        "slope/intercept, "
        f"Brier score, Hosmer–Lemeshow ({ev.hl_groups} groups); decision curves.",
    ]
