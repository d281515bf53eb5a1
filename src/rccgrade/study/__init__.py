"""The whole study in one call: cohort → preprocess → split → radiomics / deep / clinical → models → evaluate →
report, as a pipeline of typed stages (see ``docs/architecture.md``).

* :mod:`rccgrade.study.runner` — the run order (defined once), the requires/provides check, the run folder;
* :mod:`rccgrade.study.stages` — one module per stage, each returning a frozen output (:mod:`.outputs`);
* :mod:`rccgrade.study.cache` — stage keys (rccgrade's version + the stage's code version + settings + inputs);
* :mod:`rccgrade.study.external` — external validation of saved bundles, reusing the stages;
* :mod:`rccgrade.study.cli` — ``rccgrade study``, ``demo`` and ``evaluate``.

The run folder holds ``config.yaml`` (fully resolved), ``provenance.json``, ``validation.csv``, ``split.csv``,
``predictions.csv``, ``metrics.json``, ``failures.csv``, ``figures/``, ``bundles/<arm>/``, ``stages.json`` (what
ran, was cached, failed or was interrupted), ``study.log``, ``report.html`` and ``cache/<stage>-<key>/``.
"""

from rccgrade.study.context import StageRecord, StudyContext, StudyObserver
from rccgrade.study.runner import RUN_ORDER, STAGES, StudyResult, forced_stages, read_stage_log, run_study
from rccgrade.study.stages.evaluate import metrics_equal

__all__ = [
    "RUN_ORDER",
    "STAGES",
    "StageRecord",
    "StudyContext",
    "StudyObserver",
    "StudyResult",
    "forced_stages",
    "metrics_equal",
    "read_stage_log",
    "run_study",
]
