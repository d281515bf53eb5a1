"""Clinical-value rules of a case: finite numbers inside configurable plausible ranges.

Split from :mod:`rccgrade.cohort.integrity`, which re-exports every name; ``validate`` and ``predict`` both run them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case, ClinicalKind, Problem


def clinical_value_problem(column: str, value: object, settings: CohortSettings) -> tuple[str, str] | None:
    """``(code, message)`` when a numeric clinical value is not plausible, else None (missing is fine).

    Rules: the value must be finite (``clinical_not_finite``), within ``cohort.clinical_max_abs`` and within the
    column's plausible range (:meth:`CohortSettings.clinical_range`) (``clinical_out_of_range``).
    """
    if value is None or isinstance(value, str | bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None  # missing: imputed inside the model
    if not math.isfinite(number):
        return (
            "clinical_not_finite",
            f"clinical column '{column}' holds {number:g}; give a finite value, or leave the cell empty if unknown",
        )
    bounds = settings.clinical_range(column)
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        return (
            "clinical_out_of_range",
            f"clinical column '{column}' holds {number:g}, outside its plausible range [{bounds[0]:g}, "
            f"{bounds[1]:g}]; correct the value (a typo or another unit?), or set cohort.clinical_ranges.{column} "
            "if such values are real",
        )
    limit = settings.clinical_max_abs
    if limit is not None and abs(number) > limit:
        return (
            "clinical_out_of_range",
            f"clinical column '{column}' holds {number:g}, beyond ±{limit:g} (cohort.clinical_max_abs): a typo or a "
            "unit error; correct the value, or declare a range in cohort.clinical_ranges",
        )
    return None


def check_case_clinical(
    case: Case,
    clinical_types: Mapping[str, ClinicalKind],
    settings: CohortSettings | None = None,
    columns: set[str] | None = None,
) -> list[Problem]:
    """Clinical-value rules on one case's numeric clinical variables (every one an error).

    Args:
        case: The case.
        clinical_types: Column → numeric/categorical (``Cohort.clinical_types``); categorical columns are skipped.
        settings: Ranges and limits (default: :class:`CohortSettings` defaults).
        columns: Only these columns (e.g. the ones a model reads); None: all.
    """
    settings = settings or CohortSettings()
    problems = []
    for column, value in case.clinical.items():
        if clinical_types.get(column, "numeric") != "numeric" or (columns is not None and column not in columns):
            continue
        found = clinical_value_problem(column, value, settings)
        if found is not None:
            problems.append(Problem(case.patient_id, found[0], "error", found[1], "", case.row))
    return problems
