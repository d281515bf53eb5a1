"""Stage ``clinical``: the clinical FeatureTable (no fitting: encoding and imputation are in the models)."""

from __future__ import annotations

from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import ClinicalOutput
from rccgrade.study.preflight import needs_source


class ClinicalStage:
    """``clin:<name>`` columns of the usable cohort."""

    name = "clinical"
    description = "clinical variables"
    requires: tuple[str, ...] = ("cohort",)
    version = "clinical-1"

    def run(self, ctx: StudyContext, record: StageRecord) -> ClinicalOutput:
        """Build the table; warn when an arm needs clinical variables and there are none."""
        from rccgrade.features.clinical import clinical_table

        cohort = need(ctx.results.cohort, "cohort")
        table = clinical_table(cohort.cohort)
        record.detail = f"{table.shape[1]} variables"
        if table.shape[1] == 0 and needs_source(ctx.config, "clinical"):
            ctx.warn("the cohort has no clinical variables: the clinical arm is left out")
        return ClinicalOutput(table=table, key=cohort.clinical_key)
