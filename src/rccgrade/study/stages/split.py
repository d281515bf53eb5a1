"""Stage ``split``: the manifest's ``split`` column, else stratified 7:3 with the study seed."""

from __future__ import annotations

from rccgrade.cache import stable_hash
from rccgrade.study.context import StageRecord, StudyContext, need
from rccgrade.study.outputs import SplitOutput
from rccgrade.study.preflight import check_cohort_size


class SplitStage:
    """Runs before extraction so fine-tuning can use it; frozen extraction ignores it."""

    name = "split"
    description = "train/test split"
    requires: tuple[str, ...] = ("cohort",)
    version = "split-1"

    def run(self, ctx: StudyContext, record: StageRecord) -> SplitOutput:
        """Split the usable patients and write ``split.csv``."""
        from rccgrade.models.split import make_split, write_split

        cohort = need(ctx.results.cohort, "cohort").cohort
        labels = cohort.labels()
        labels.index = labels.index.astype(str)
        # again on the usable cases only (validation may have removed some): before any model is fitted
        check_cohort_size(labels, cohort.splits(), ctx.config.models, seed=ctx.seed)
        split = make_split(labels, cohort.splits(), test_size=ctx.config.models.test_size, seed=ctx.seed)
        write_split(split, ctx.run_dir)
        source = "manifest" if cohort.splits().notna().any() else "stratified random"
        n_train = int((split["split"] == "train").sum())
        record.detail = f"{n_train} train / {len(split) - n_train} test ({source})"
        return SplitOutput(split=split, source=source, key=stable_hash(split.to_dict(orient="list")))
