"""The report's prose, generated from the settings actually used and the provenance, so its numbers are true."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rccgrade.config import StudyConfig
from rccgrade.deep.settings import DeepSettings
from rccgrade.models.settings import ModelSettings
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
    fusion: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """A short, factual methods summary generated from the configuration actually used.

    Args:
        cfg: The study configuration.
        deep: The deep settings actually used (weights after an offline fallback); default ``cfg.deep``.
        deep_dims: ROI → number of pooled deep features in the feature table (None: deep features not used).
        split_source: ``manifest`` or ``stratified random``.
        packages: Package → version, from ``provenance.json`` (PyRadiomics' version is quoted from it).
        fusion: Fitted arm → what fusion and ``auto`` learnt (``ArmsResult.fusion``, or :func:`fusion_records`
            of the models stage); None: only the configuration is described (:func:`fusion_methods`).
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
        f"Models: {_classifier_text(mod)} per arm ({', '.join(mod.arms)}), selection steps "
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
        *([text] if (text := fusion_methods(mod, fusion)) else []),
    ]


def _classifier_text(mod: ModelSettings) -> str:
    if mod.classifier == "auto":
        return "a classifier chosen by cross-validation (classifier: auto, see below)"
    return f"{mod.classifier} classifiers"


def _auto_arms(mod: ModelSettings, fusion: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Arms whose classifier was chosen by ``auto`` (from the records when given, else from the settings)."""
    if fusion is not None:
        return [a for a, rec in fusion.items() if rec.get("auto")]
    single = [a for a in mod.arms if a != "stacked"]
    return [a for a in single if mod.arm_classifiers.get(a, mod.classifier) == "auto"]


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"


def fusion_methods(mod: ModelSettings, fusion: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The fusion and model-choice sentences of the methods: non-negative stacking, per-source budgets and
    ``classifier: auto``, each only when the run used it, with the settings' numbers and what was learnt.

    Args:
        mod: The model settings of the run.
        fusion: Fitted arm → its fusion record (``ArmsResult.fusion``); None: decide from the settings alone.

    Returns:
        One paragraph, or "" when none of the three was used.
    """
    arms = list(fusion) if fusion is not None else list(mod.arms)
    parts: list[str] = []
    if "stacked" in arms:
        rec = (fusion or {}).get("stacked", {})
        meta = rec.get("stacking_meta")
        nonneg = mod.stacking_meta == "nonnegative" if meta is None else meta == "NonNegativeLogisticRegression"
        ridge = "no ridge penalty" if mod.stacking_c is None else f"ridge C = {mod.stacking_c:g}"
        text = "Stacked arm: a logistic meta-model on the logits of the single-source arms' out-of-fold training " + (
            f"probabilities with non-negative source weights (bounded L-BFGS-B, free intercept, {ridge}), so a "
            "source without signal gets weight 0"
            if nonneg
            else f"probabilities, unconstrained ({ridge})"
        )
        weights = rec.get("stacking_weights")
        if weights:
            text += "; learnt weights " + ", ".join(f"{a} {_num(w, 2)}" for a, w in weights.items())
        parts.append(text + ".")
    if "combined" in arms and mod.combined_selection == "budgets":
        rec = (fusion or {}).get("combined", {})
        text = (
            "Combined arm: each source contributed at most a budget of its selected features (mRMR order), the "
            f"budgets ({', '.join(str(b) for b in mod.combined_budgets)}; 0 leaves a source out) chosen by "
            f"{mod.combined_budget_cv}-fold inner cross-validation on the training patients (greedy search, minimum "
            f"gain {mod.combined_min_gain:g} AUC, scored by "
            + (
                "the arm's own classifier, untuned)"
                if mod.combined_budget_scorer == "arm"
                and mod.arm_classifiers.get("combined", mod.classifier) not in ("auto", "logistic")
                else "an L2 logistic regression)"
            )
        )
        budgets = rec.get("budgets")
        if budgets and all(v is None for v in budgets.values()):
            text += "; too few training patients for that cross-validation, so every source kept its selected features"
        elif budgets:
            text += "; chosen budgets " + ", ".join(f"{s} {b}" for s, b in budgets.items())
            if rec.get("budget_cv_auc") is not None:
                text += f" (inner-CV AUC {_num(rec['budget_cv_auc'])})"
        parts.append(text + ".")
    if "combined" in arms and mod.combined_selection == "gated":
        gate = (fusion or {}).get("combined", {}).get("gate") or {}
        text = (
            "Combined arm: every selected feature of each source whose held-out AUCs in a "
            f"{mod.combined_gate_repeats}-times repeated {mod.combined_budget_cv}-fold inner cross-validation on "
            "the training patients (L2 logistic regression on the source's selected features) exceeded 0.5 "
            f"(one-sided corrected resampled t-test of Nadeau and Bengio, p < {mod.combined_gate_alpha:g}; the most "
            "convincing source when none did)"
        )
        if gate:
            text += "; " + ", ".join(
                f"{s} {'kept' if g.get('kept') else 'left out'}"
                + ("" if g.get("auc") is None else f" (inner-CV AUC {_num(g['auc'])})")
                for s, g in gate.items()
            )
        parts.append(text + ".")
    auto = _auto_arms(mod, fusion)
    if auto:
        recs = {a: dict((fusion or {}).get(a, {}).get("auto") or {}) for a in auto}
        n_folds = next((r["n_folds"] for r in recs.values() if r.get("n_folds")), mod.cv_folds)
        text = (
            f"Classifier choice (classifier: auto) for {', '.join(auto)}: among {', '.join(mod.auto_candidates)}, the "
            f"highest mean {n_folds}-fold cross-validated AUC on the training patients, each candidate tuned inside "
            "the folds"
        )
        chosen = [
            f"{a} → {r['chosen']} (CV AUC {_num(r['scores'][r['chosen']])})" for a, r in recs.items() if r.get("chosen")
        ]
        if chosen:
            text += "; chosen " + ", ".join(chosen)
        per_fold = {a: [f["chosen"] for f in r.get("outer_folds", [])] for a, r in recs.items()}
        if mod.nested_oof:
            text += ". The choice was repeated inside every outer fold of the out-of-fold probabilities" + (
                " (" + "; ".join(f"{a}: {', '.join(c)}" for a, c in per_fold.items() if c) + ")"
                if any(per_fold.values())
                else ""
            )
        else:
            text += (
                ". The out-of-fold probabilities reused the final choice and hyper-parameters (nested_oof off), "
                "so the training-cohort AUC of these arms is optimistic"
            )
        parts.append(text + ".")
    return " ".join(parts)


def fusion_records(models: Any) -> dict[str, dict[str, Any]]:
    """Fitted arm → its fusion record, read from the models stage's bundles (``bundle.json`` ``extra.fusion``).

    Args:
        models: The models stage output (``arms`` and ``bundle_dir(arm)``).
    """
    from rccgrade.errors import ModelError
    from rccgrade.models.bundle import read_bundle_meta

    out: dict[str, dict[str, Any]] = {}
    for arm in models.arms:
        try:
            meta = read_bundle_meta(models.bundle_dir(arm))
        except ModelError:
            out[arm] = {}
            continue
        out[arm] = dict(meta.extra.get("fusion") or {})
    return out
