"""Check every case of a cohort and say, patient by patient, what is wrong and how to fix it.

Each rule has its own code and severity. A case is *usable* when it has no ``error``;
``warning`` problems are reported only. One bad case never stops the others: each case is checked
in its own :func:`rccgrade.parallel.run_cases` item, and each rule inside a case is guarded, so an
unexpected exception becomes a ``check_failed`` problem of that case alone.

Rules (code — severity):
    ``patient_id_missing``, ``duplicate_patient_id`` — error (manifest rows)
    ``bad_patient_id`` — error (an id that breaks :func:`rccgrade.safepath.check_identifier`)
    ``phase_missing``, ``mask_missing`` — error (empty manifest cell)
    ``path_escapes_root`` — warning (relative path leaving the manifest's folder)
    ``grade_missing`` (error; warning when labels are not required), ``grade_out_of_range``,
    ``label_conflict``, ``split_invalid``, ``label_invalid``, ``clinical_wrong_type`` — error
    the image rules of :mod:`rccgrade.cohort.integrity` (``file_missing``, ``unreadable``, ``truncated``,
    ``not_3d``, ``not_scalar``, ``multiple_series``, ``mask_empty``, ``mask_not_binary``,
    ``mask_geometry_mismatch``, ``mask_unreadable``, ``multiple_lesions``, ``phases_no_overlap``,
    ``nonfinite_voxels``, ``not_hu``, ``check_failed``)
    and its clinical-value rules (``clinical_not_finite``, ``clinical_out_of_range``) — the same code that
    ``rccgrade predict`` runs before computing any feature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rccgrade.cohort.integrity import CheckOptions, check_case_clinical, check_case_images
from rccgrade.cohort.manifest import load_cohort
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case, Cohort, Problem
from rccgrade.parallel import Outcome, ParallelSettings, ProgressCallback, run_cases

log = logging.getLogger(__name__)

PROBLEM_COLUMNS: list[str] = ["case", "row", "patient_id", "severity", "code", "file", "message"]
CASE_COLUMNS: list[str] = ["case", "row", "patient_id", "status", "n_errors", "n_warnings", "codes"]
CSV_COLUMNS: list[str] = ["row", "patient_id", "status", "severity", "code", "file", "message"]


def check_case(case: Case, options: CheckOptions | None = None) -> list[Problem]:
    """Run the image rules on one case: :func:`rccgrade.cohort.integrity.check_case_images`.

    Manifest-level rules (labels, duplicates, clinical types) come from ``Cohort.issues``; clinical values are
    checked by :func:`~rccgrade.cohort.integrity.check_case_clinical`. Never raises.
    """
    return check_case_images(case, options or CheckOptions())


def _check_item(item: tuple[Case, CheckOptions]) -> list[Problem]:
    return check_case(item[0], item[1])


@dataclass
class ValidationReport:
    """Result of :func:`validate_cohort`.

    Attributes:
        problems: One row per (case, problem): columns ``case`` (position in the cohort), ``row``
            (manifest line), ``patient_id, severity, code, file, message``, in manifest order with
            errors first.
        cases: One row per case: ``case, row, patient_id, status`` (``usable``/``unusable``),
            ``n_errors``, ``n_warnings``, ``codes`` (semicolon-separated).
        clinical_missing: Missing values per clinical column.
        clinical_types: Clinical column → numeric/categorical.
    """

    problems: pd.DataFrame
    cases: pd.DataFrame
    clinical_missing: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    clinical_types: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every case is usable."""
        return bool((self.cases["status"] == "usable").all())

    @property
    def usable(self) -> list[str]:
        """Patient ids of usable cases, in manifest order."""
        return self.cases.loc[self.cases["status"] == "usable", "patient_id"].tolist()

    @property
    def unusable(self) -> list[str]:
        """Patient ids of unusable cases, in manifest order."""
        return self.cases.loc[self.cases["status"] != "usable", "patient_id"].tolist()

    def codes(self, patient_id: str) -> set[str]:
        """Problem codes reported for a patient."""
        return set(self.problems.loc[self.problems["patient_id"] == patient_id, "code"])

    def summary(self) -> str:
        """One line: counts of cases, usable, unusable and warnings."""
        n = len(self.cases)
        n_bad = len(self.unusable)
        n_warn = int((self.problems["severity"] == "warning").sum())
        return f"{n} cases: {n - n_bad} usable, {n_bad} unusable; {n_warn} warning(s)"

    def to_frame(self) -> pd.DataFrame:
        """validation.csv as a table: one row per (case, problem), plus one row for a case without problems."""
        rows = []
        for rec in self.cases.to_dict(orient="records"):
            mine = self.problems[self.problems["case"] == rec["case"]]
            if mine.empty:
                rows.append({**{c: "" for c in CSV_COLUMNS}, "row": rec["row"], "patient_id": rec["patient_id"]})
                rows[-1]["status"] = rec["status"]
            for prob in mine.to_dict(orient="records"):
                rows.append({c: prob.get(c, "") for c in CSV_COLUMNS} | {"status": rec["status"]})
        return pd.DataFrame(rows, columns=CSV_COLUMNS)

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (creating the folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)
        return path


_SEVERITY_ORDER = {"error": 0, "warning": 1}


def validate_cohort(
    cohort_or_manifest: Cohort | str | Path,
    *,
    label: int | None = None,
    settings: CohortSettings | None = None,
    parallel: ParallelSettings | None = None,
    clinical_csv: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Check every case of a cohort (or of a manifest, loaded first) and report every problem.

    Args:
        cohort_or_manifest: A loaded cohort, or the path of a manifest CSV.
        label: Tumour label for multi-label masks, for cases without a manifest ``label``
            (default: ``settings.label``).
        settings: Cohort settings (phases, tolerances, typing).
        parallel: Executor settings (default: local processes, all cores).
        clinical_csv: Clinical CSV when a manifest path is given.
        progress: Optional ``progress(done, total)`` callback.

    Returns:
        The report; ``report.ok`` is False when any case is unusable.

    Raises:
        CohortError: only for structural manifest problems (see :func:`load_cohort`).
    """
    settings = settings or CohortSettings()
    if isinstance(cohort_or_manifest, Cohort):
        cohort = cohort_or_manifest
    else:
        cohort = load_cohort(cohort_or_manifest, clinical_csv=clinical_csv, settings=settings, bad_ids="report")
    options = CheckOptions.from_settings(settings, label=label)
    items = [(case, options) for case in cohort.cases]
    outcomes: list[Outcome[list[Problem]]] = run_cases(
        _check_item, items, keys=[c.patient_id for c in cohort.cases], settings=parallel, progress=progress
    )

    order = {(c.row, c.patient_id): i for i, c in enumerate(cohort.cases)}
    located: list[tuple[int, Problem]] = [(order.get((p.row, p.patient_id), -1), p) for p in cohort.issues]
    for i, (case, outcome) in enumerate(zip(cohort.cases, outcomes, strict=True)):
        located.extend((i, p) for p in check_case_clinical(case, cohort.clinical_types, settings))
        if outcome.ok and outcome.value is not None:
            located.extend((i, p) for p in outcome.value)
        else:
            message = f"validation of this case crashed: {outcome.error}"
            located.append((i, Problem(case.patient_id, "check_failed", "error", message, "", case.row)))
    located.sort(key=lambda item: (item[0] if item[0] >= 0 else len(order), _SEVERITY_ORDER[item[1].severity]))
    prob_frame = pd.DataFrame(
        [
            {
                "case": i,
                "row": p.row,
                "patient_id": p.patient_id,
                "severity": p.severity,
                "code": p.code,
                "file": p.file,
                "message": p.message,
            }
            for i, p in located
        ],
        columns=PROBLEM_COLUMNS,
    )
    case_rows = []
    for i, case in enumerate(cohort.cases):
        mine = [p for j, p in located if j == i]
        n_err = sum(p.severity == "error" for p in mine)
        n_warn = sum(p.severity == "warning" for p in mine)
        case_rows.append(
            {
                "case": i,
                "row": case.row,
                "patient_id": case.patient_id,
                "status": "unusable" if n_err else "usable",
                "n_errors": n_err,
                "n_warnings": n_warn,
                "codes": ";".join(dict.fromkeys(p.code for p in mine)),
            }
        )
    report = ValidationReport(
        problems=prob_frame,
        cases=pd.DataFrame(case_rows, columns=CASE_COLUMNS),
        clinical_missing=cohort.clinical_missing() if cohort.clinical_types else pd.Series(dtype="int64"),
        clinical_types=dict(cohort.clinical_types),
    )
    log.info("validation: %s", report.summary())
    return report
