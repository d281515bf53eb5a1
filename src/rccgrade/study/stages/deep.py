"""Stage ``deep``: pooled ResNet features per ROI setting (frozen, or fine-tuned on training patients only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import FeatureError
from rccgrade.features.naming import deep_arm, deep_rois, source_prefix
from rccgrade.features.table import columns_of
from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext, log, need
from rccgrade.study.outputs import DeepOutput
from rccgrade.study.preflight import needs_source

RANDOM_WEIGHTS_BANNER = (
    "Deep features come from a RANDOMLY INITIALISED ResNet50 (weights: none) because the ImageNet weights "
    "were not available offline. Deep-model results are not comparable with the reference study. Put "
    "resnet50-0676ba61.pth into torch's hub cache (…/hub/checkpoints/) or set deep.weights to a local .pth "
    "file and re-run: only the deep, model and report stages are recomputed."
)

CONFIGURED_RANDOM_BANNER = (
    "Deep features come from a randomly initialised network (deep.weights: none, as configured): deep-model "
    "results are not comparable with ImageNet-initialised models such as the reference study's."
)


def effective_deep_settings(ctx: StudyContext) -> DeepSettings:
    """The deep settings actually used: ImageNet weights when obtainable, else the fallback (with a banner).

    Raises:
        FeatureError: ImageNet weights cannot be obtained and no fallback is allowed (the message says
            where to put the file).
    """
    from rccgrade.deep.weights import resolve_weights_file

    deep = ctx.config.deep
    fallback = getattr(deep, "fallback_weights", None) or ctx.fallback_weights
    if deep.weights.lower() != "imagenet":
        if deep.weights.lower() == "none":
            ctx.warn(CONFIGURED_RANDOM_BANNER)
        return deep
    try:
        resolve_weights_file(deep)
    except FeatureError as exc:
        if not fallback:
            raise
        log.warning("ImageNet weights unavailable: %s", exc.message)
        ctx.warn(RANDOM_WEIGHTS_BANNER)
        return deep.model_copy(update={"weights": fallback})
    return deep


class DeepStage:
    """Key: the effective deep settings, the preprocessing key, the patients and the seed (and, when
    fine-tuning, the split and the labels)."""

    name = "deep"
    description = "ResNet features per ROI setting"
    requires: tuple[str, ...] = ("cohort", "preprocess", "split")
    version = "deep-1"

    def __init__(self, always: bool = False) -> None:
        self.always = always

    def run(self, ctx: StudyContext, record: StageRecord) -> DeepOutput | None:
        """Extract (or reuse) the features; skipped when no arm uses deep features."""
        if not self.always and not needs_source(ctx.config, "deep"):
            record.status = "skipped"
            record.detail = "no arm uses deep features"
            return None
        from rccgrade.deep.features import extract_deep_features, write_metadata
        from rccgrade.features.table import load_table, save_table
        from rccgrade.preprocess.slices import load_slices

        settings = effective_deep_settings(ctx)
        pre = need(ctx.results.preprocess, "preprocess")
        cohort = need(ctx.results.cohort, "cohort")
        ok = set(pre.ok_ids)
        finetune = settings.mode == "finetune"
        key_parts: tuple[Any, ...] = (settings, pre.key, sorted(ok), ctx.seed)
        if finetune:
            split = need(ctx.results.split, "split")
            key_parts += (split.key, cohort.labels_key)

        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            images = {roi: {p: a for p, a in load_slices(pre.folder, roi).items() if p in ok} for roi in settings.rois}
            kwargs: dict[str, Any] = {}
            if finetune:
                kwargs["train_ids"] = need(ctx.results.split, "split").ids("train")
                labels = cohort.labels()
                kwargs["labels"] = {str(k): int(v) for k, v in labels.items() if not pd.isna(v)}
            res = extract_deep_features(
                images, settings, seed=ctx.seed, cache_dir=folder / "cache", progress=progress, **kwargs
            )
            save_table(res.table, folder / "features.parquet", settings=settings.model_dump(mode="json"))
            write_metadata(res, folder / "metadata.json")
            if res.probabilities is not None:
                res.probabilities.to_csv(folder / "probabilities.csv")
            return {
                "failures": res.failures,
                "random_init": res.random_init,
                "warnings": list(res.metadata.get("warnings", [])),
                "model_files": {k: str(v) for k, v in res.model_files.items()},
                "detail": f"{res.table.shape[0]} patients × {res.table.shape[1]} features ({settings.mode}, "
                f"weights {settings.weights})",
            }

        folder, manifest = cached(ctx, record, self.version, key_parts, compute)
        table, _ = load_table(folder / "features.parquet")
        if manifest.get("random_init") and not any("randomly" in w.lower() for w in ctx.warnings):
            ctx.warn(RANDOM_WEIGHTS_BANNER)
        columns = [str(c) for c in table.columns]
        dims = {roi: len(columns_of(table, source_prefix(deep_arm(roi)))) for roi in deep_rois(columns)}
        return DeepOutput(
            folder=folder,
            key=str(record.key),
            table=table,
            settings=settings,
            random_init=bool(manifest.get("random_init")),
            model_files={k: Path(v) for k, v in (manifest.get("model_files") or {}).items()},
            dims=dims,
        )
