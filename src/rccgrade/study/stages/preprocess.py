"""Stage ``preprocess``: register phases, build ROI slice images, QC montages (per-case cached too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import PreprocessOutput


class PreprocessStage:
    """Key: the preprocessing settings and the image/mask checksums (not the clinical columns)."""

    name = "preprocess"
    description = "register phases, ROI slice images"
    requires: tuple[str, ...] = ("cohort",)
    version = "preprocess-1"

    def run(self, ctx: StudyContext, record: StageRecord) -> PreprocessOutput:
        """Preprocess every usable case into the stage folder."""
        from rccgrade.preprocess.pipeline import run_preprocess

        cohort = need(ctx.results.cohort, "cohort")
        settings = ctx.config.preprocess

        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            res = run_preprocess(cohort.cohort, folder, settings, ctx.case_parallel(), progress)
            return {
                "ok_ids": res.ok_ids,
                "flagged_ids": res.flagged_ids,
                "failures": res.failures.to_dict(orient="records"),
                "qc_sheet": None if res.qc_sheet is None else str(Path(res.qc_sheet).relative_to(folder)),
                "detail": f"{len(res.ok_ids)} cases ok, {len(res.flagged_ids)} registration fallbacks",
            }

        folder, manifest = cached(ctx, record, self.version, (settings, cohort.images_key), compute)
        sheet = manifest.get("qc_sheet")
        return PreprocessOutput(
            folder=folder,
            key=str(record.key),
            ok_ids=tuple(manifest["ok_ids"]),
            flagged_ids=tuple(manifest.get("flagged_ids", [])),
            qc_sheet=folder / sheet if sheet else None,
        )
