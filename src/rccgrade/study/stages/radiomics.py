"""Stage ``radiomics``: PyRadiomics features of the registered phases, with the ICC stability table.

Every phase of ``radiomics.phases`` is read from the preprocessing stage's ``registered/`` folder (all on the
mask phase's grid), so ``rad:<phase>:…`` columns describe the same tumour voxels in each phase; the
peritumoural rings (``rad:<phase>@ring<N>mm:…``) and the kinetic features (``kin:…``, source ``kinetic``)
come from the same items and land in the same FeatureTable. A ring that cannot be described for a patient
leaves that ring's features missing (NaN, imputed inside the models from training patients) and is listed in
``regions_missing.csv`` and a warning, never a failure of the patient.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rccgrade.study.cache import cached
from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import RadiomicsOutput, SplitOutput
from rccgrade.study.preflight import needs_source


def stability_pool(split: SplitOutput | None, ok: set[str], enabled: bool) -> list[str] | None:
    """Patients eligible for the ICC stability analysis: the training patients that were preprocessed.

    The ICC filter is fitted like everything else, on training patients only. None (every patient) when stability
    is off or no split exists (the features of an external cohort, whose stability is off).
    """
    if not enabled or split is None:
        return None
    return sorted(set(split.ids("train")) & ok)


class RadiomicsStage:
    """Key: the radiomics settings, the preprocessing key and the patients preprocessed successfully."""

    name = "radiomics"
    description = "PyRadiomics features and stability"
    requires: tuple[str, ...] = ("cohort", "preprocess")
    version = "radiomics-3"

    def __init__(self, always: bool = False) -> None:
        self.always = always

    def run(self, ctx: StudyContext, record: StageRecord) -> RadiomicsOutput | None:
        """Extract (or reuse) the features; skipped when no arm uses radiomics or kinetic features."""
        if not self.always and not (needs_source(ctx.config, "radiomics") or needs_source(ctx.config, "kinetic")):
            record.status = "skipped"
            record.detail = "no arm uses radiomics or kinetic features"
            return None
        from rccgrade.features.table import load_table
        from rccgrade.radiomics.extract import extract_radiomics

        pre = need(ctx.results.preprocess, "preprocess")
        full = need(ctx.results.cohort, "cohort").cohort
        ok = set(pre.ok_ids)
        cohort = full.subset([p for p in full.patient_ids if p in ok])
        settings = ctx.config.radiomics
        pool = stability_pool(ctx.results.split, ok, settings.stability.enabled)

        def compute(folder: Path, progress: Callable[[int, int], None]) -> dict[str, Any]:
            res = extract_radiomics(
                cohort,
                folder,
                settings,
                ctx.case_parallel(),
                progress,
                registered_dir=pre.folder / "registered",
                stability_pool=pool,
            )
            n_feat = res.features.shape[1]
            n_kin = sum(str(c).startswith("kin:") for c in res.features.columns)
            missing = res.regions_missing
            return {
                "n_patients": int(res.features.shape[0]),
                "n_features": int(n_feat),
                "n_kinetic": int(n_kin),
                "failures": res.failures.to_dict(orient="records"),
                "regions_missing": {str(k): int(v) for k, v in missing["phase"].value_counts().sort_index().items()},
                "stability": res.stability is not None,
                "detail": f"{res.features.shape[0]} patients × {n_feat} features"
                + (f" ({n_kin} kinetic)" if n_kin else "")
                + (f"; {len(missing)} ring(s) left missing" if len(missing) else ""),
            }

        key = (settings, pre.key, sorted(cohort.patient_ids), pool)
        folder, manifest = cached(ctx, record, self.version, key, compute)
        for region, n in (manifest.get("regions_missing") or {}).items():
            ctx.warn(
                f"radiomics: the {region} ring could not be described for {n} patient(s) (too few soft-tissue "
                "voxels); its features are missing there and imputed inside the models (reasons: "
                f"{folder / 'regions_missing.csv'})"
            )
        table, _ = load_table(folder / "features.parquet")
        stab = folder / "stability.csv"
        stability = pd.read_csv(stab, index_col="feature") if stab.is_file() else None
        return RadiomicsOutput(folder=folder, key=str(record.key), table=table, stability=stability)
