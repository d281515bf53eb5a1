"""Stage ``evaluate``: every statistic of every arm on the training (out-of-fold) and test cohorts.

:func:`rccgrade.stats.evaluate.evaluate_arms` computes the statistics (training patients on their
out-of-fold probabilities, so their numbers are honest estimates rather than apparent performance); this
stage writes ``metrics.json`` and the figures (the nomogram from the saved bundle, :mod:`rccgrade.study.fitted`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import RccgradeError
from rccgrade.study.context import StageRecord, StudyContext, log, need
from rccgrade.study.outputs import EvaluateOutput, FigurePaths, ModelsOutput


def jsonable(x: Any) -> Any:
    """NumPy scalars → Python numbers, NaN → None, mappings and sequences recursively (for ``metrics.json``)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) else v
    if isinstance(x, np.integer):
        return int(x)
    return x


def metrics_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two ``metrics.json`` contents hold the same numbers (NaN equals NaN)."""

    def norm(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        if isinstance(x, float) and np.isnan(x):
            return "nan"
        return x

    return norm(a) == norm(b)


def save_figures(
    ctx: StudyContext,
    evaluations: Mapping[str, Any],
    out: Path,
    *,
    decision_curves: Any = None,
    nomogram: Any = None,
) -> dict[str, FigurePaths]:
    """Every evaluation figure (:func:`rccgrade.report.figures.save_evaluation_figures`), as PNG + SVG.

    Drawing can fail on degenerate data (a matplotlib error is not documented per input); such a failure is
    a warning in the report, never the end of the study. Programming errors still propagate.
    """
    from rccgrade.report import figures as F

    arms = list(evaluations)
    try:
        paths = F.save_evaluation_figures(
            dict(evaluations),
            out,
            decision_curves=decision_curves,
            nomogram=nomogram,
            colors=F.arm_colors(arms),
            dpi=getattr(ctx.config.report, "figure_dpi", 300),
        )
    except (RccgradeError, ValueError, OverflowError, np.linalg.LinAlgError) as exc:
        log.warning("figures failed: %s: %s", type(exc).__name__, exc)
        ctx.warn(f"figures could not be drawn ({type(exc).__name__}: {exc})")
        return {}
    return {name: FigurePaths(png=p.get("png"), svg=p.get("svg")) for name, p in paths.items()}


def metrics_document(ctx: StudyContext, res: Mapping[str, Any], arms: Sequence[str], n: Mapping[str, int]) -> dict:
    """The contents of ``metrics.json``."""
    return jsonable(
        {
            "seed": ctx.seed,
            "train_predictions": "out-of-fold",
            "n": dict(n),
            "arms": {a: res["arms"][a].flat() for a in arms},
            "comparisons": {c: t.to_dict(orient="records") for c, t in res["comparisons"].items()},
        }
    )


def _nomogram(ctx: StudyContext, models: ModelsOutput) -> tuple[Any, str | None]:
    from rccgrade.study.fitted import nomogram_model

    try:
        found = nomogram_model(models)
    except RccgradeError as exc:  # StatsError: the model cannot be drawn as a nomogram
        ctx.warn(f"nomogram not drawn: {exc}")
        return None, None
    return (None, None) if found is None else found


class EvaluateStage:
    """Not cached: cheap, and always consistent with the models it reads."""

    name = "evaluate"
    description = "statistics and figures"
    requires: tuple[str, ...] = ("models",)
    version = "evaluate-1"

    def run(self, ctx: StudyContext, record: StageRecord) -> EvaluateOutput:
        """Statistics → ``metrics.json``; figures → ``figures/``."""
        from rccgrade.stats.evaluate import evaluate_arms

        models = need(ctx.results.models, "models")
        pred: pd.DataFrame = models.predictions.set_index("patient_id")
        arms = list(models.arms)
        train = pred[pred["split"] == "train"]
        test = pred[pred["split"] == "test"]
        res = evaluate_arms(
            train["y"].to_numpy(int),
            {a: train[a].to_numpy(float) for a in arms},
            test["y"].to_numpy(int) if len(test) else None,
            {a: test[a].to_numpy(float) for a in arms} if len(test) else None,
            ctx.config.evaluation,
            seed=ctx.seed,
            thresholds=dict(models.thresholds),
        )
        metrics = metrics_document(ctx, res, arms, {"train": len(train), "test": len(test)})
        (ctx.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=False) + "\n")
        figures_dir = ctx.run_dir / "figures"
        figures_dir.mkdir(exist_ok=True)
        nomo, nomo_arm = _nomogram(ctx, models)
        figures = save_figures(
            ctx,
            {a: res["arms"][a] for a in arms},
            figures_dir,
            decision_curves=res.get("decision_curves"),
            nomogram=nomo,
        )
        record.detail = f"{len(metrics.get('arms', {}))} arms"
        return EvaluateOutput(
            metrics=metrics,
            evaluation=res,
            figures=figures,
            nomogram_arm=nomo_arm if "nomogram" in figures else None,
        )
