"""Stage ``models``: fit every arm on the training patients only; save bundles and per-patient probabilities.

:func:`rccgrade.models.arms.fit_arms` fits the arms; this stage writes, into its folder, one bundle per arm,
``predictions.csv`` (training patients: out-of-fold probabilities; test patients: the final model's), the
selected features, ``models.json`` and the ranges of the stacked arm's inputs for the nomogram. The run
folder gets its own copies of ``predictions.csv`` and ``bundles/<arm>/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import ModelError
from rccgrade.features.naming import CLINICAL, RADIOMICS, STACKED, arm_folder, column_source
from rccgrade.safepath import remove_tree_inside
from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import ModelsOutput


def feature_tables(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    """Source kind → FeatureTable of the sources this run computed (empty tables left out)."""
    r = ctx.results
    out = {}
    for name, output in ((CLINICAL, r.clinical), (RADIOMICS, r.radiomics), ("deep", r.deep)):
        if output is not None and output.table.shape[1] > 0:
            out[name] = output.table
    return out


def feature_settings(ctx: StudyContext) -> dict[str, Any]:
    """Settings of the stages that made the features; ``predict`` refuses features made otherwise."""
    from rccgrade.models.bundle import study_feature_settings

    fs = study_feature_settings(ctx.config)
    # the weights actually used (e.g. "none" after an offline fallback), so predict recomputes the same features
    deep = ctx.results.deep.settings if ctx.results.deep is not None else ctx.config.deep
    fs["deep"] = deep.model_dump(mode="json")
    fs["cohort"] = {k: v for k, v in fs["cohort"].items() if k not in ("manifest", "clinical_csv")}
    cohort = ctx.results.cohort
    fs["clinical_types"] = dict(cohort.cohort.clinical_types) if cohort is not None else {}
    return fs


def icc_series(ctx: StudyContext) -> pd.Series | None:
    """ICC per radiomics feature (the configured ICC model) for the models' stability filter, or None."""
    rad = ctx.results.radiomics
    stab = rad.stability if rad is not None else None
    if stab is None or len(stab) == 0:
        return None
    model = ctx.config.radiomics.stability.icc_model
    col = model if model in stab.columns else stab.columns[0]
    series = pd.to_numeric(stab[col], errors="coerce")
    series.index = series.index.astype(str)
    series.index.name = "feature"
    return series.rename("icc")


def _classifier_name(arm: str, ctx: StudyContext, fusion: dict[str, Any] | None = None) -> str:
    """The classifier an arm used; for ``classifier: auto``, the one chosen on the training patients."""
    if arm == STACKED:
        meta = (fusion or {}).get(STACKED, {}).get("stacking_meta")
        return "non-negative logistic (stacking)" if meta == "nonnegative" else "logistic (stacking)"
    chosen = ((fusion or {}).get(arm, {}).get("auto") or {}).get("chosen")
    if chosen:
        return f"{chosen} (auto)"
    return ctx.config.models.arm_classifiers.get(arm, ctx.config.models.classifier)


def _n_candidates(arm: str, columns: list[str], settings: Any) -> int:
    """Candidate columns of an arm (0 for ``stacked``, which combines arms rather than features)."""
    from rccgrade.models.arms import arm_sources

    if arm == STACKED:
        return 0
    sources = set(arm_sources(arm, settings, columns))
    return sum(1 for c in columns if column_source(c) in sources)


def stacked_ranges(result: Any) -> dict[str, tuple[float, float]]:
    """2.5th–97.5th percentile of the stacked arm's predictors (logit of each base arm's OOF probability)."""
    if STACKED not in result.models:
        return {}
    base = [n for n, _ in result.models[STACKED].estimators_]
    eps = 1e-6
    ranges = {}
    for a in base:
        p = np.clip(result.oof_proba[a].to_numpy(float), eps, 1 - eps)
        logit = np.log(p / (1 - p))
        lo, hi = np.percentile(logit, [2.5, 97.5])
        ranges[f"logit p({a})"] = (float(lo), float(hi))
    return ranges


def model_workers(ctx: StudyContext) -> int:
    """Worker processes for the arms and outer folds: the configured workers (1 for the serial backend).

    The numbers do not depend on it (every task is seeded when it is built), so it is not part of the cache key.
    """
    par = ctx.parallel
    return 1 if par.backend == "serial" else max(1, par.resolved_workers())


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
    cohort = need(ctx.results.cohort, "cohort")
    ok = set(need(ctx.results.preprocess, "preprocess").ok_ids)
    split = need(ctx.results.split, "split").split
    keep = [p for p in split["patient_id"] if p in ok and p in table.index]
    dropped = [p for p in split["patient_id"] if p not in set(keep)]
    failures = [{"patient_id": p, "error": "left out of modelling: features could not be computed"} for p in dropped]
    # A patient missing a whole source (e.g. radiomics failed) cannot be scored by arms using it.
    per_source_missing = {}
    for name, t in tables.items():
        if name == CLINICAL:  # missing clinical values are imputed inside the pipelines
            continue
        missing = [p for p in keep if p not in t.index or t.loc[p].isna().all()]
        if missing:
            per_source_missing[name] = missing
    drop_more = sorted({p for v in per_source_missing.values() for p in v})
    for p in drop_more:
        failures.append({"patient_id": p, "error": "left out of modelling: a feature source failed for this case"})
    keep = [p for p in keep if p not in set(drop_more)]
    table = table.loc[keep]
    y = cohort.labels().reindex(keep).astype(int)
    s = split.set_index("patient_id")["split"].reindex(keep)
    train_ids = [p for p in keep if s[p] == "train"]
    test_ids = [p for p in keep if s[p] == "test"]
    centers = cohort.cohort.centers() if ctx.config.models.selection.combat else None
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
        n_jobs=model_workers(ctx),
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
    columns = [str(c) for c in table.columns]
    info = {
        "arms": result.arms,
        "thresholds": result.thresholds,
        "best_params": result.best_params,
        "n_candidates": {arm: _n_candidates(arm, columns, ctx.config.models) for arm in result.arms},
        "classifiers": {a: _classifier_name(a, ctx, getattr(result, "fusion", {})) for a in result.arms},
        "nomogram_ranges": stacked_ranges(result),
    }
    (folder / "models.json").write_text(json.dumps(info, indent=1, default=str))
    return {
        "arms": result.arms,
        "n_train": len(train_ids),
        "n_test": len(test_ids),
        "failures": failures,
        "detail": f"{len(result.arms)} arms on {len(train_ids)} training patients",
    }


class ModelsStage:
    """Key: the model settings, the split, the labels, the keys of every feature source and the seed."""

    name = "models"
    description = "fit model arms (training patients only)"
    requires: tuple[str, ...] = ("cohort", "preprocess", "split", "radiomics", "deep", "clinical")
    version = "models-3"

    def run(self, ctx: StudyContext, record: StageRecord) -> ModelsOutput:
        """Fit (or reuse) the arms; copy ``predictions.csv`` and ``bundles/`` into the run folder."""
        r = ctx.results
        tables = feature_tables(ctx)
        key_parts = (
            ctx.config.models,
            need(r.split, "split").key,
            need(r.cohort, "cohort").labels_key,
            r.radiomics.key if r.radiomics is not None else None,
            r.deep.key if r.deep is not None else None,
            need(r.clinical, "clinical").key,
            ctx.seed,
        )

        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            return fit_and_save(ctx, tables, folder, progress)

        folder, _ = cached(ctx, record, self.version, key_parts, compute)
        shutil.copyfile(folder / "predictions.csv", ctx.run_dir / "predictions.csv")
        bundles = ctx.run_dir / "bundles"
        if bundles.exists():
            remove_tree_inside(bundles, ctx.run_dir)
        if (folder / "bundles").is_dir():
            shutil.copytree(folder / "bundles", bundles)
        info = json.loads((folder / "models.json").read_text())
        return ModelsOutput(
            folder=folder,
            key=str(record.key),
            arms=tuple(info["arms"]),
            predictions=pd.read_csv(
                ctx.run_dir / "predictions.csv", dtype={"patient_id": str}, keep_default_na=False, na_values=[""]
            ),
            thresholds={k: float(v) for k, v in info["thresholds"].items()},
            n_candidates={k: int(v) for k, v in info["n_candidates"].items()},
            classifiers=dict(info["classifiers"]),
            nomogram_ranges={k: (float(v[0]), float(v[1])) for k, v in (info.get("nomogram_ranges") or {}).items()},
        )
