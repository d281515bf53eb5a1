"""Stage ``radiomics``: PyRadiomics features of the registered phases, with the ICC stability table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import RadiomicsOutput
from rccgrade.study.preflight import needs_source


class RadiomicsStage:
    """Key: the radiomics settings, the preprocessing key and the patients preprocessed successfully."""

    name = "radiomics"
    description = "PyRadiomics features and stability"
    requires: tuple[str, ...] = ("cohort", "preprocess")
    version = "radiomics-1"

    def __init__(self, always: bool = False) -> None:
        self.always = always

    def run(self, ctx: StudyContext, record: StageRecord) -> RadiomicsOutput | None:
        """Extract (or reuse) the features; skipped when no arm uses radiomics."""
        if not self.always and not needs_source(ctx.config, "radiomics"):
            record.status = "skipped"
            record.detail = "no arm uses radiomics"
            return None
        from rccgrade.features.table import load_table
        from rccgrade.radiomics.extract import extract_radiomics

        pre = need(ctx.results.preprocess, "preprocess")
        full = need(ctx.results.cohort, "cohort").cohort
        ok = set(pre.ok_ids)
        cohort = full.subset([p for p in full.patient_ids if p in ok])
        settings = ctx.config.radiomics

        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            res = extract_radiomics(
                cohort, folder, settings, ctx.parallel, progress, registered_dir=pre.folder / "registered"
            )
            n_feat = res.features.shape[1]
            return {
                "n_patients": int(res.features.shape[0]),
                "n_features": int(n_feat),
                "failures": res.failures.to_dict(orient="records"),
                "stability": res.stability is not None,
                "detail": f"{res.features.shape[0]} patients × {n_feat} features",
            }

        folder, _ = cached(ctx, record, self.version, (settings, pre.key, sorted(cohort.patient_ids)), compute)
        table, _ = load_table(folder / "features.parquet")
        stab = folder / "stability.csv"
        stability = pd.read_csv(stab, index_col="feature") if stab.is_file() else None
        return RadiomicsOutput(folder=folder, key=str(record.key), table=table, stability=stability)
