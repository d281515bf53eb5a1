"""The study's model and evaluation stages: glue between the feature tables, the models and the statistics.

``fit_and_save`` fits every configured arm with :func:`rccgrade.models.arms.fit_arms` on the training
patients only and writes, into the models stage folder, one bundle per arm, ``predictions.csv`` (training
patients: out-of-fold probabilities; test patients: the final model's), the selected features and the
thresholds. ``evaluate_run`` computes every statistic with :func:`rccgrade.stats.evaluate.evaluate_arms`
(the training cohort is evaluated on its out-of-fold probabilities, so its numbers are honest estimates
rather than apparent performance), writes ``metrics.json`` and the figures.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rccgrade.errors import ModelError

if TYPE_CHECKING:
    from rccgrade.study import StudyContext

log = logging.getLogger(__name__)

ADAPTER_VERSION = "models-adapter-2"


def arm_label(arm: str) -> str:
    """Display name of an arm (``deep:dilated5mm`` → ``Deep (dilated 5 mm)``), as in the figures' legends."""
    from rccgrade.report.figures import arm_label as _label

    return _label(arm)


def arm_folder(arm: str) -> str:
    """Folder name of an arm's bundle (``deep:box`` → ``deep-box``)."""
    return arm.replace(":", "-").replace("/", "-")


def arm_colors(arms: list[str]) -> dict[str, str]:
    """One colour per arm, the same in every figure and table of a run (the figures' palette)."""
    from rccgrade.report.figures import arm_colors as _colors

    return _colors(arms)


def feature_settings(ctx: StudyContext) -> dict[str, Any]:
    """Settings of the stages that made the features; ``predict`` refuses features made otherwise."""
    from rccgrade.models.bundle import study_feature_settings

    fs = study_feature_settings(ctx.config)
    # the weights actually used (e.g. "none" after an offline fallback), so predict recomputes the same features
    deep = ctx.outputs.get("deep_settings") or ctx.config.deep
    fs["deep"] = deep.model_dump(mode="json")
    fs["cohort"] = {k: v for k, v in fs["cohort"].items() if k not in ("manifest", "clinical_csv")}
    fs["clinical_types"] = dict(ctx.cohort.clinical_types) if ctx.cohort is not None else {}
    return fs


def fit_and_save(
    ctx: StudyContext, tables: Mapping[str, pd.DataFrame], folder: Path, progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """Fit the arms, save bundles, predictions, selected features; return the stage manifest."""
    from rccgrade.features.table import join_tables
    from rccgrade.models.arms import fit_arms
    from rccgrade.models.bundle import bundle_from_arms

    if not tables:
        raise ModelError("no feature source was computed; check models.arms and the earlier stages")
    table = join_tables(*tables.values())
    ok = set(ctx.outputs["preprocess"]["ok_ids"])
    split = ctx.outputs["split"]
    keep = [p for p in split["patient_id"] if p in ok and p in table.index]
    dropped = [p for p in split["patient_id"] if p not in set(keep)]
    failures = [{"patient_id": p, "error": "left out of modelling: features could not be computed"} for p in dropped]
    # A patient missing a whole source (e.g. radiomics failed) cannot be scored by arms using it.
    per_source_missing = {}
    for name, t in tables.items():
        if name == "clinical":  # missing clinical values are imputed inside the pipelines
            continue
        missing = [p for p in keep if p not in t.index or t.loc[p].isna().all()]
        if missing:
            per_source_missing[name] = missing
    drop_more = sorted({p for v in per_source_missing.values() for p in v})
    for p in drop_more:
        failures.append({"patient_id": p, "error": "left out of modelling: a feature source failed for this case"})
    keep = [p for p in keep if p not in set(drop_more)]
    table = table.loc[keep]
    labels = ctx.cohort.labels()
    labels.index = labels.index.astype(str)
    y = labels.reindex(keep).astype(int)
    s = split.set_index("patient_id")["split"].reindex(keep)
    train_ids = [p for p in keep if s[p] == "train"]
    test_ids = [p for p in keep if s[p] == "test"]
    centers = ctx.cohort.centers() if ctx.config.models.selection.combat else None
    progress(0, 1)
    result = fit_arms(
        table,
        y,
        train_ids,
        ctx.config.models,
        seed=ctx.seed,
        stability=icc_series(ctx),
        centers=centers,
        test_ids=test_ids,
    )
    progress(1, 1)
    fs = feature_settings(ctx)
    bundles = folder / "bundles"
    for arm in result.arms:
        bundle_from_arms(result, arm, table, bundles / arm_folder(arm), feature_settings=fs)
    # predictions.csv: training patients out-of-fold, test patients from the final model.
    pred = pd.DataFrame(index=pd.Index(keep, name="patient_id"))
    pred["split"] = s
    pred["y"] = y
    for arm in result.arms:
        col = pd.concat([result.oof_proba[arm], result.test_proba[arm]])
        pred[arm] = col.reindex(keep)
    for arm in result.arms:
        pred[f"{arm}.apparent"] = result.train_proba[arm].reindex(keep)
    pred.to_csv(folder / "predictions.csv", float_format="%.10g")
    sel_dir = folder / "selected"
    sel_dir.mkdir(exist_ok=True)
    for arm, frame in result.selected.items():
        frame.to_csv(sel_dir / f"{arm_folder(arm)}.csv", index=False, float_format="%.10g")
    n_candidates = {
        arm: int(sum(1 for c in table.columns if _arm_uses(arm, c, ctx.config.models, list(table.columns))))
        for arm in result.arms
    }
    info = {
        "arms": result.arms,
        "thresholds": result.thresholds,
        "best_params": result.best_params,
        "n_candidates": n_candidates,
        "classifiers": {a: _classifier_name(a, ctx) for a in result.arms},
    }
    (folder / "models.json").write_text(json.dumps(info, indent=1, default=str))
    _nomogram_inputs(result, folder)
    return {
        "arms": result.arms,
        "n_train": len(train_ids),
        "n_test": len(test_ids),
        "failures": failures,
        "detail": f"{len(result.arms)} arms on {len(train_ids)} training patients",
    }


def icc_series(ctx: StudyContext) -> pd.Series | None:
    """ICC per radiomics feature (the configured ICC model) for the models' stability filter, or None."""
    stab = ctx.outputs.get("stability")
    if stab is None or len(stab) == 0:
        return None
    model = ctx.config.radiomics.stability.icc_model
    col = model if model in stab.columns else stab.columns[0]
    series = pd.to_numeric(stab[col], errors="coerce")
    series.index = series.index.astype(str)
    series.index.name = "feature"
    return series.rename("icc")


def _classifier_name(arm: str, ctx: StudyContext) -> str:
    if arm == "stacked":
        return "logistic (stacking)"
    return ctx.config.models.arm_classifiers.get(arm, ctx.config.models.classifier)


def _arm_uses(arm: str, column: str, settings: Any, columns: list[str]) -> bool:
    from rccgrade.models.arms import arm_sources, source_prefix

    if arm == "stacked":
        return False
    try:
        return any(column.startswith(source_prefix(s)) for s in arm_sources(arm, settings, columns))
    except Exception:  # noqa: BLE001 - only used for a count in the report
        return False


def _nomogram_inputs(result: Any, folder: Path) -> None:
    """Ranges of the stacked arm's predictors (logit of each base arm's OOF probability), for the nomogram."""
    if "stacked" not in result.models:
        return
    base = [n for n, _ in result.models["stacked"].estimators_]
    eps = 1e-6
    ranges = {}
    for a in base:
        p = np.clip(result.oof_proba[a].to_numpy(float), eps, 1 - eps)
        logit = np.log(p / (1 - p))
        lo, hi = np.percentile(logit, [2.5, 97.5])
        ranges[f"logit p({a})"] = [float(lo), float(hi)]
    (folder / "nomogram_ranges.json").write_text(json.dumps(ranges, indent=1))


# --------------------------------------------------------------------------- evaluation


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) else v
    if isinstance(x, np.integer):
        return int(x)
    return x


def evaluate_run(ctx: StudyContext) -> dict[str, Any]:
    """Statistics of every arm on the training (out-of-fold) and test cohorts → ``metrics.json`` + figures."""
    from rccgrade.stats.evaluate import evaluate_arms

    pred: pd.DataFrame = ctx.outputs["predictions"].set_index("patient_id")
    arms: list[str] = list(ctx.outputs["models"]["arms"])
    info = json.loads((Path(ctx.outputs["models_dir"]) / "models.json").read_text())
    train = pred[pred["split"] == "train"]
    test = pred[pred["split"] == "test"]
    res = evaluate_arms(
        train["y"].to_numpy(int),
        {a: train[a].to_numpy(float) for a in arms},
        test["y"].to_numpy(int) if len(test) else None,
        {a: test[a].to_numpy(float) for a in arms} if len(test) else None,
        ctx.config.evaluation,
        seed=ctx.seed,
        thresholds=info["thresholds"],
    )
    metrics: dict[str, Any] = {
        "seed": ctx.seed,
        "train_predictions": "out-of-fold",
        "n": {"train": len(train), "test": len(test)},
        "arms": {a: res["arms"][a].flat() for a in arms},
        "comparisons": {c: t.to_dict(orient="records") for c, t in res["comparisons"].items()},
    }
    metrics = _jsonable(metrics)
    (ctx.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=False) + "\n")
    ctx.outputs["evaluation"] = res
    figures_dir = ctx.run_dir / "figures"
    figures_dir.mkdir(exist_ok=True)
    ctx.outputs["figures"] = make_figures(ctx, res, arms, figures_dir)
    return metrics


def make_figures(ctx: StudyContext, res: Mapping[str, Any], arms: list[str], out: Path) -> dict[str, dict[str, str]]:
    """Every evaluation figure via :func:`rccgrade.report.figures.save_evaluation_figures`.

    Returns:
        Figure name (``roc``, ``calibration_<cohort>``, ``dca_<cohort>``, ``nomogram``) → {"png", "svg"} paths.
        A failure is reported as a warning (the report then says the figure is absent), never fatal.
    """
    from rccgrade.report import figures as F

    nomo = None
    try:
        nomo = nomogram_model(ctx)
    except Exception as exc:  # noqa: BLE001 - the nomogram is optional
        ctx.warn(f"nomogram not drawn: {type(exc).__name__}: {exc}")
    try:
        paths = F.save_evaluation_figures(
            {a: res["arms"][a] for a in arms},
            out,
            decision_curves=res.get("decision_curves"),
            nomogram=nomo,
            colors=arm_colors(arms),
            dpi=ctx.config.report.figure_dpi if hasattr(ctx.config.report, "figure_dpi") else 300,
        )
    except Exception as exc:  # noqa: BLE001 - a figure must never sink the study
        log.warning("figures failed: %s: %s", type(exc).__name__, exc)
        ctx.warn(f"figures could not be drawn ({type(exc).__name__}: {exc})")
        return {}
    return {name: {k: str(v) for k, v in p.items()} for name, p in paths.items()}


def nomogram_model(ctx: StudyContext) -> Any:
    """The nomogram of the stacked arm (points per arm score), or of the clinical arm; None if neither is linear."""
    from rccgrade.stats.nomogram import build_nomogram

    folder = Path(ctx.outputs["models_dir"])
    for arm in ("stacked", "clinical", "combined"):
        sel_path = folder / "selected" / f"{arm_folder(arm)}.csv"
        if not sel_path.is_file():
            continue
        sel = pd.read_csv(sel_path)
        if "coefficient" not in sel or sel["coefficient"].isna().all():
            continue
        body = sel[sel["feature"] != "(intercept)"]
        body = body[body["coefficient"].abs() > 0]
        intercept = sel.loc[sel["feature"] == "(intercept)", "coefficient"]
        if body.empty or intercept.empty or len(body) > 12:
            continue
        if arm == "stacked":
            rng_path = folder / "nomogram_ranges.json"
            if not rng_path.is_file():
                continue
            ranges = {k: tuple(v) for k, v in json.loads(rng_path.read_text()).items()}
            names = body["feature"].tolist()
            labels = {n: f"{arm_label(n[len('logit p(') : -1])} score (logit)" for n in names}
            ctx.outputs["nomogram_arm"] = arm
            return build_nomogram(
                body["coefficient"].to_numpy(float), float(intercept.iloc[0]), names, ranges, labels=labels
            )
        mean = body["mean"].to_numpy(float)
        sd = body["sd"].to_numpy(float)
        coef = body["coefficient"].to_numpy(float)
        names = body["feature"].tolist()
        ranges = {}
        for n, m_, s_ in zip(names, mean, sd, strict=True):
            if s_ > 0 and 0 <= m_ <= 1 and abs(m_ * (1 - m_) - s_**2) < 0.02:  # a one-hot column
                ranges[n] = [0.0, 1.0]
            else:
                ranges[n] = (float(m_ - 2 * s_), float(m_ + 2 * s_))

        class _Scaler:
            mean_ = mean
            scale_ = np.where(sd > 0, sd, 1.0)

        labels = {n: n.split(":", 1)[-1] for n in names}
        ctx.outputs["nomogram_arm"] = arm
        return build_nomogram(
            coef,
            float(intercept.iloc[0]),
            names,
            ranges,
            scaler=_Scaler(),
            labels=labels,
            categorical=[n for n, r in ranges.items() if isinstance(r, list)],
        )
    return None
