"""Missing and malformed feature values at prediction time, treated exactly as training treated them.

Training imputes a missing value inside the model: the first step of every source's chain is a
:class:`~rccgrade.features.selection.TabularPreprocessor` fitted on the training patients (median of a numeric
column, mode of a categorical one; a column missing in every training patient is dropped). A value legitimately
missing for a new patient — a peritumoural ring thinner than the voxels leaves ``rad:<phase>@ring<N>mm:…`` empty
and is listed in ``regions_missing.csv``, exactly as for training patients — is therefore filled by the bundle's
own training-fitted imputer when the model predicts, and the prediction says so.

What training could not have imputed is still refused, per patient (a failed row naming the feature):

* ``inf`` / ``-inf`` (training never imputes those: it would be garbage turned into a number);
* a non-numeric entry in a column the model reads as numbers (e.g. ``"n/a"``: the imputer would coerce it to
  a missing value and fill it silently);
* a missing value in a column no training-fitted imputer covers (a model not built by rccgrade's chains);
* every imaging feature of the model missing at once (nothing measured: the "prediction" would be the training
  medians, not this patient).

A column absent from the whole table is refused for the whole table (:func:`rccgrade.models.predict.check_features`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MissingValues", "imputer_kinds", "missing_values"]


def _imputers(model: Any) -> Iterable[Any]:
    """The fitted ``impute`` steps of a model's source chains (a stacked model: those of its base arms)."""
    for _, base in getattr(model, "estimators_", None) or []:  # StackedClassifier
        yield from _imputers(base)
    union = getattr(model, "named_steps", {}).get("features")
    for _, _, chain in getattr(union, "transformers_", None) or []:
        step = getattr(chain, "named_steps", {}).get("impute")
        if step is not None and hasattr(step, "feature_names_in_"):
            yield step


def imputer_kinds(model: Any) -> dict[str, str]:
    """Column → how the model's training-fitted imputers treat it: ``numeric`` (median), ``categorical`` (mode)
    or ``dropped`` (missing in every training patient, unused). A column absent here has no imputer."""
    kinds: dict[str, str] = {}
    for step in _imputers(model):
        for col in step.feature_names_in_:
            kinds.setdefault(str(col), "dropped")
        for col in step.numeric_:
            kinds[str(col)] = "numeric"
        for col in step.categorical_:
            kinds[str(col)] = "categorical"
    return kinds


def feature_group(column: str) -> str:
    """The group a column belongs to: everything before its last ``:`` (``rad:arterial@ring2mm:x`` →
    ``rad:arterial@ring2mm``, ``clin:bmi`` → ``clin:bmi``)."""
    head, _, _ = column.rpartition(":")
    return column if head in ("clin", "") else head


@dataclass(frozen=True)
class MissingValues:
    """Per-patient outcome of :func:`missing_values`.

    Attributes:
        failures: Patient → why no prediction can be made (inf, non-numeric, not imputable, nothing measured).
        imputed: Patient → group → number of that group's features filled by the training-fitted imputer.
    """

    failures: dict[str, str] = field(default_factory=dict)
    imputed: dict[str, dict[str, int]] = field(default_factory=dict)

    def note(self, patient: str) -> str:
        """One line for the patient's row, page and ``preds.json`` ("" when nothing was imputed)."""
        groups = self.imputed.get(patient)
        if not groups:
            return ""
        parts = [
            g if g.startswith("clin:") else f"{g} ({n} feature{'s' if n > 1 else ''})"
            for g, n in sorted(groups.items())
        ]
        return "missing feature values imputed with the model's training medians/modes, as in training: " + ", ".join(
            parts
        )


def missing_values(model: Any, features: pd.DataFrame, needed: list[str]) -> MissingValues:
    """Which patients' missing values the model imputes (as in training) and which it must refuse.

    Args:
        model: The fitted model of a bundle.
        features: FeatureTable of the patients (index ``patient_id``, every column of ``needed`` present).
        needed: The columns the model reads.
    """
    kinds = imputer_kinds(model)
    failures: dict[str, list[str]] = {}
    imputed: dict[str, dict[str, int]] = {}
    imaging = [c for c in needed if not c.startswith("clin:") and kinds.get(c) != "dropped"]
    n_missing_imaging = pd.Series(0, index=features.index)
    for name in needed:
        col = features[name]
        kind = kinds.get(name)
        if kind == "dropped":
            continue
        if kind == "categorical" or (kind is None and not _numeric(col)):
            values = col.astype(object)
            absent = values.isna().to_numpy()
            bad = np.zeros(len(col), dtype=bool)
        else:
            parsed = pd.to_numeric(col, errors="coerce") if not _numeric(col) else col
            numbers = np.asarray(parsed, dtype=np.float64)
            absent = np.asarray(col.isna())
            bad = np.isnan(numbers) & ~absent  # an entry that is there but is not a number
            for i in np.flatnonzero(np.isinf(numbers)):
                failures.setdefault(str(features.index[i]), []).append(f"feature {name} is {numbers[i]:g}: not finite")
        for i in np.flatnonzero(bad):
            failures.setdefault(str(features.index[i]), []).append(f"feature {name} is {col.iloc[i]!r}: not a number")
        for i in np.flatnonzero(absent):
            pid = str(features.index[i])
            if kind is None:
                what = "clinical variable" if name.startswith("clin:") else "imaging feature"
                failures.setdefault(pid, []).append(
                    f"{what} {name} is missing and the model has no training imputation for it"
                )
                continue
            group = feature_group(name)
            imputed.setdefault(pid, {})[group] = imputed.get(pid, {}).get(group, 0) + 1
        if name in imaging:
            n_missing_imaging += absent.astype(np.int64)
    if imaging:
        for pid in n_missing_imaging.index[n_missing_imaging.to_numpy() == len(imaging)]:
            failures.setdefault(str(pid), []).append(
                f"every one of the model's {len(imaging)} imaging features is missing (nothing was measured)"
            )
    return MissingValues(
        failures={p: " | ".join(r) for p, r in failures.items()},
        imputed={p: g for p, g in imputed.items() if p not in failures},
    )


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))
