"""Clinical columns across hospitals: rename a cohort's columns to the names a model knows, check the rest.

Another hospital writes ``haemoglobin`` where the model was trained on ``hemoglobin``, or records Hb in g/L
where training used g/dL. Three pieces, all pure functions:

* :func:`parse_column_map` — ``["hemoglobin=haemoglobin", …]`` (``MODEL_NAME=COHORT_COLUMN``, the
  ``--map`` option) → ``{"hemoglobin": "haemoglobin"}``; ``cohort.column_map`` in the settings is the same
  mapping.
* :func:`apply_column_map` — renames the cohort's columns (``haemoglobin`` → ``hemoglobin``), refusing a
  mapped column that is absent or a rename that would overwrite an existing column.
* :func:`unit_mismatch` — a per-variable range check of a new cohort against the training distribution:
  the new cohort's median outside the training [min, max], with the ratio of medians near a power of ten
  (g/L vs g/dL, mg/dL vs mmol/L-ish scalings), is flagged as a likely unit mix-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rccgrade.errors import CohortError, ConfigError

MISSING_POLICIES = ("refuse", "impute")


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """``MODEL_NAME=COHORT_COLUMN`` items → ``{model_name: cohort_column}``.

    Raises:
        ConfigError: an item without exactly one ``=``, an empty side, or a model name mapped twice.
    """
    out: dict[str, str] = {}
    for item in items:
        parts = str(item).split("=")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ConfigError(
                f"--map {item!r}: write MODEL_NAME=COHORT_COLUMN, e.g. --map hemoglobin=haemoglobin "
                "(the name the model was trained with, then the column of this cohort)"
            )
        model, local = parts[0].strip(), parts[1].strip()
        if model in out and out[model] != local:
            raise ConfigError(f"--map names {model!r} twice ({out[model]!r} and {local!r}); keep one")
        out[model] = local
    locals_ = list(out.values())
    twice = sorted({c for c in locals_ if locals_.count(c) > 1})
    if twice:
        raise ConfigError(f"--map uses cohort column(s) {twice} for several model variables; map each once")
    return out


def apply_column_map(frame: pd.DataFrame, mapping: Mapping[str, str], path: str | Path | None = None) -> pd.DataFrame:
    """Rename ``frame``'s columns ``cohort_column → model_name`` for each entry of ``mapping``.

    Raises:
        CohortError: a mapped cohort column is not in ``frame``, or its model name is already a different
            column of ``frame`` (the rename would silently drop data).
    """
    if not mapping:
        return frame
    absent = sorted(local for local in mapping.values() if local not in frame.columns)
    if absent:
        raise CohortError(
            f"column map: column(s) {absent} are not in the manifest or clinical CSV (columns: "
            f"{list(frame.columns)[:20]}); fix the right-hand side of --map / cohort.column_map",
            path=Path(path) if path is not None else None,
        )
    clash = sorted(m for m, local in mapping.items() if m != local and m in frame.columns)
    if clash:
        raise CohortError(
            f"column map: the cohort already has column(s) {clash}; mapping another column onto them would "
            "discard data — drop or rename one of them",
            path=Path(path) if path is not None else None,
        )
    return frame.rename(columns={local: model for model, local in mapping.items()})


def missing_variables_message(missing: Iterable[str], available: Iterable[str]) -> str:
    """How to fix clinical variables a model needs that the cohort lacks."""
    miss = sorted(missing)
    have = sorted(available)
    return (
        f"the model needs clinical variable(s) {miss} that this cohort lacks (its clinical columns: {have[:20]}); "
        f"map a column of another name with --map {miss[0]}=YOUR_COLUMN (cohort.column_map), or predict "
        "anyway with --missing-variables impute (the training median/mode is used for every patient and the "
        "pages say so)"
    )


def imputed_variables_message(variables: Iterable[str]) -> str:
    """The loud warning (log, terminal, report banner) for variables imputed for every patient."""
    return (
        f"clinical variable(s) {sorted(variables)} are absent from this cohort and were IMPUTED with the training "
        "median/mode for every patient: the predictions ignore them"
    )


@dataclass(frozen=True)
class UnitCheck:
    """A likely unit mix-up of one numeric variable.

    Attributes:
        variable: The variable (FeatureTable name, e.g. ``clin:hemoglobin``).
        cohort_median: Median of the new cohort.
        train_median, train_min, train_max: The training distribution.
        factor: Power of ten nearest to the ratio of medians (e.g. 10 or 0.1); NaN when none is near.
        message: One line for logs, banners and pages.
    """

    variable: str
    cohort_median: float
    train_median: float
    train_min: float
    train_max: float
    factor: float
    message: str


def unit_mismatch(
    variable: str,
    values: pd.Series | np.ndarray,
    train_median: float,
    train_min: float,
    train_max: float,
    tolerance: float = 0.35,
) -> UnitCheck | None:
    """Flag a new cohort whose median lies outside the training range by about a power of ten.

    Args:
        variable: Name, for the message.
        values: The new cohort's values (NaN ignored).
        train_median, train_min, train_max: Training distribution of the variable.
        tolerance: ``|log10(ratio) − round(log10(ratio))|`` allowed (0.35: a factor 10 matches ratios 4.5–22).

    Returns:
        None when the median lies within the training [min, max] (or there is nothing to compare); else a
        :class:`UnitCheck` (``factor`` NaN when the ratio is not near a power of ten: still outside the range).
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    med = float(np.median(arr))
    if train_min <= med <= train_max:
        return None
    factor = math.nan
    if med != 0 and train_median != 0 and (med > 0) == (train_median > 0):
        lg = math.log10(med / train_median)
        k = round(lg)
        if k != 0 and abs(lg - k) <= tolerance:
            factor = 10.0**k
    if math.isfinite(factor):
        hint = f"about {factor:g}× the training median ({train_median:.4g}): likely a unit mix-up (e.g. g/L vs g/dL)"
    else:
        hint = f"training median {train_median:.4g}; check the unit and the column"
    msg = (
        f"{variable}: the cohort's median {med:.4g} lies outside the training range [{train_min:.4g}, "
        f"{train_max:.4g}] — {hint}"
    )
    return UnitCheck(variable, med, float(train_median), float(train_min), float(train_max), factor, msg)
