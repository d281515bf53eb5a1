"""Apply a model bundle to new patients: every patient accounted for, garbage never a confident number.

Two checks refuse a whole feature table (a :class:`~rccgrade.errors.ModelError`):

* **features** — every column the model was trained on must be in the table (extra columns are ignored);
  otherwise the error lists the missing ones and what the table has instead;
* **settings** — when the features come with the settings that produced them (FeatureTable metadata),
  every setting recorded in the bundle that is also present there must be equal; the error lists each
  differing key with both values.

Then every patient gets one row (:func:`predict_manifest`, :func:`predict_table`) with a ``status``:

* ``failed`` — no probability: a manifest error (missing file, bad mask label …), an integrity error of the
  images (:func:`rccgrade.cohort.integrity.check_case_images`: truncated file, NaN voxels, one slice, not HU …),
  an implausible clinical value (:func:`rccgrade.cohort.integrity.check_case_clinical`), a failed stage
  (preprocessing, radiomics, deep features), a non-finite or non-numeric feature value, a missing value the
  model has no training-fitted imputer for, or every imaging feature missing
  (:mod:`rccgrade.models.predict_missing`);
* ``out_of_distribution`` — no probability: a feature lies far outside the training distribution stored in the
  bundle (:func:`out_of_distribution`); the reason names the features, their values and the training range;
* ``ok`` — the probability and the class at the bundle's threshold. A missing feature value (e.g. a peritumoural
  ring thinner than the voxels) is imputed by the bundle's training-fitted imputer exactly as in training; the
  row's ``reason`` (and so the patient's page and ``preds.json``) names the imputed feature groups, and a
  warning is logged.

The probability of an out-of-distribution patient is left empty on purpose: a model extrapolating far outside its
training data has no calibrated probability to give, and a number in the column would be read as one.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cohort.integrity import clinical_value_problem
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Cohort, Problem
from rccgrade.errors import ModelError
from rccgrade.features.table import validate_table
from rccgrade.models.bundle import ModelBundle
from rccgrade.models.ood import (  # noqa: F401 - moved there; names kept importable from here
    OOD_EXTREME_FACTOR,
    OOD_RANGE_FACTOR,
    OOD_SHARE,
    out_of_distribution,
)
from rccgrade.models.predict_missing import MissingValues, missing_values

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_OOD = "out_of_distribution"
STATUSES: tuple[str, ...] = (STATUS_OK, STATUS_FAILED, STATUS_OOD)

PREDICTION_COLUMNS: list[str] = [
    "row",
    "status",
    "reason",
    "probability",
    "predicted_class",
    "predicted_grade",
    "threshold",
    "arm",
]
"""Columns of :func:`predict_manifest`'s table (index ``patient_id``); ``row`` is the manifest line (header = 1)."""

_LABEL_ONLY_CODES = frozenset({"grade_missing", "grade_out_of_range", "label_conflict", "split_invalid"})
"""Manifest problems that only concern the label: irrelevant when predicting."""

log = logging.getLogger(__name__)


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"radiomics.params.binWidth": 25, …}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_settings(value, name + "."))
        else:
            out[name] = value
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_norm(v) for v in value]
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def settings_differences(expected: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two settings mappings (keys present in both only).

    Returns:
        Lines like ``"radiomics.params.binWidth: model 25, features 10"``; empty when they agree.
    """
    exp = flatten_settings(expected)
    got = flatten_settings(given)
    return [
        f"{key}: model {exp[key]!r}, features {got[key]!r}"
        for key in sorted(set(exp) & set(got))
        if _norm(exp[key]) != _norm(got[key])
    ]


def check_features(bundle: ModelBundle, features: pd.DataFrame, feature_settings: Mapping[str, Any] | None) -> None:
    """Raise a :class:`ModelError` saying what differs when ``features`` do not fit ``bundle``."""
    needed = bundle.feature_names
    missing = [c for c in needed if c not in features.columns]
    if missing:
        sources = sorted({c.rsplit(":", 1)[0] for c in missing})
        have = sorted({c.rsplit(":", 1)[0] for c in features.columns})
        raise ModelError(
            f"the feature table lacks {len(missing)} of the {len(needed)} features the {bundle.arm!r} model was "
            f"trained on (e.g. {missing[:5]}; groups {sources[:6]}); the table has groups {have[:6]}. Compute the "
            "features with the bundle's settings (rccgrade predict BUNDLE MANIFEST) or pass the matching table.",
            path=bundle.path,
        )
    if feature_settings:
        diffs = settings_differences(bundle.feature_settings, feature_settings)
        for stage, meta in _stage_metadata(feature_settings).items():
            if stage in bundle.feature_metadata:
                diffs += [f"{stage} table: {d}" for d in settings_differences(bundle.feature_metadata[stage], meta)]
        if diffs:
            raise ModelError(
                "the features were made with settings that differ from the model's:\n  - "
                + "\n  - ".join(diffs)
                + "\nRecompute them with the bundle's settings.",
                path=bundle.path,
            )
    elif bundle.feature_settings or bundle.feature_metadata:
        log.warning("the features carry no settings; cannot check they were made like the training features")


def _stage_metadata(settings: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Stage-table metadata in a table's settings: the settings when they name a ``stage``, else sub-dicts that do."""
    if isinstance(settings.get("stage"), str):
        return {str(settings["stage"]): settings}
    return {str(v["stage"]): v for v in settings.values() if isinstance(v, Mapping) and isinstance(v.get("stage"), str)}


def predict_bundle(
    bundle: ModelBundle, features: pd.DataFrame, feature_settings: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Probability of high grade and the class at the bundle's training threshold.

    Args:
        bundle: A loaded bundle (:func:`rccgrade.models.bundle.load_bundle`).
        features: FeatureTable of the new patients (extra columns ignored).
        feature_settings: Settings that produced ``features`` (FeatureTable metadata); checked against the
            bundle's when given.

    Returns:
        DataFrame indexed by ``patient_id`` with ``probability`` (P(ISUP 3–4)), ``predicted_class`` (1 when
        probability >= threshold), ``predicted_grade`` (``high``/``low``), ``threshold`` and ``arm``.

    Raises:
        ModelError: missing feature columns or differing settings (the message lists them).
    """
    validate_table(features)
    check_features(bundle, features, feature_settings)
    proba = np.asarray(bundle.model.predict_proba(features[bundle.feature_names]))[:, 1]
    cls = (proba >= bundle.threshold).astype(np.int64)
    return pd.DataFrame(
        {
            "probability": proba,
            "predicted_class": cls,
            "predicted_grade": np.where(cls == 1, "high", "low"),
            "threshold": bundle.threshold,
            "arm": bundle.arm,
        },
        index=pd.Index(features.index.astype(str), name="patient_id"),
    )


def bundle_cohort_settings(bundle: ModelBundle) -> CohortSettings:
    """The cohort settings the bundle's training cohort was read with (labels not required).

    Clinical columns the model reads get the type the model was trained with (numeric when the bundle holds
    their training distribution), unless the recorded settings declare one.
    """
    fs = bundle.feature_settings
    cfg = {k: v for k, v in dict(fs.get("cohort") or {}).items() if k not in ("manifest", "clinical_csv", "column_map")}
    cfg["require_labels"] = False
    if isinstance(fs.get("clinical_types"), Mapping) and "clinical_types" not in cfg:
        cfg["clinical_types"] = dict(fs["clinical_types"])
    # the model fixes each clinical column's type: a column it read as numbers (it has a training distribution)
    # stays numeric however the new manifest looks ("inf" or typos in a small cohort must not turn it into text)
    types = dict(cfg.get("clinical_types") or {})
    numeric = set(bundle.meta.get("training_distribution") or {})
    for name in bundle.feature_names:
        if name.startswith("clin:") and name[len("clin:") :] not in types:
            types[name[len("clin:") :]] = "numeric" if name in numeric else "categorical"
    if types:
        cfg["clinical_types"] = types
    try:
        return CohortSettings.model_validate(cfg)
    except ValueError as exc:
        raise ModelError(
            f"the bundle's cohort settings are invalid ({exc}); re-export the bundle", path=bundle.path
        ) from None


def bundle_cohort(bundle: ModelBundle, manifest: str | Path, column_map: Mapping[str, str] | None = None) -> Cohort:
    """Read new patients' manifest the way the training cohort was read (mask phase, clinical types).

    Labels are not required. Uses the bundle's ``feature_settings["cohort"]`` and
    ``feature_settings["clinical_types"]`` when recorded. ``column_map`` (model variable → this cohort's
    column, the ``--map`` option) renames the new hospital's columns; the training cohort's own map is not
    carried over.
    """
    from rccgrade.cohort.manifest import load_cohort

    settings = bundle_cohort_settings(bundle)
    if column_map:
        settings = settings.model_copy(update={"column_map": dict(column_map)})
    trained_phases = dict(bundle.feature_settings.get("cohort") or {}).get("phases")
    if trained_phases:
        # new patients may lack a phase (e.g. no excretory scan): read the phases present; preprocessing fills
        # the missing channels with its documented strategy, and a stage that needs a missing phase says so
        from rccgrade.cohort.manifest_info import manifest_phases

        present = manifest_phases(manifest)
        kept = [p for p in trained_phases if p in present]
        if kept and kept != list(trained_phases):
            log.warning(
                "the manifest %s lacks phase(s) %s the model was trained with; predicting from %s",
                manifest,
                [p for p in trained_phases if p not in present],
                kept,
            )
            settings = settings.model_copy(update={"phases": kept})
    return load_cohort(manifest, settings=settings)


# --------------------------------------------------------------------------------------------------
# per-patient accounting
# --------------------------------------------------------------------------------------------------


def _describe(problems: Sequence[Problem], limit: int = 3) -> str:
    """Problems of one patient as one reason: ``code: message (file) | …``."""
    parts = [f"{p.code}: {p.message}" + (f" ({p.file})" if p.file else "") for p in problems[:limit]]
    if len(problems) > limit:
        parts.append(f"and {len(problems) - limit} more problem(s)")
    return " | ".join(parts)


_CLINICAL_COLUMN = re.compile(r"clinical column '([^']*)'")


def _blocks_prediction(problem: Problem, clinical_used: set[str]) -> bool:
    """Whether a manifest problem stops a prediction (label problems and unused clinical columns do not)."""
    if problem.severity != "error" or problem.code in _LABEL_ONLY_CODES:
        return False
    if problem.code == "clinical_wrong_type":
        found = _CLINICAL_COLUMN.search(problem.message)
        return found is None or found.group(1) in clinical_used
    return True


def _fail(failures: dict[str, str], pid: str, reason: str) -> None:
    if pid in failures:
        failures[pid] = f"{failures[pid]} | {reason}"
    else:
        failures[pid] = reason


def _feature_row_problems(
    bundle: ModelBundle, features: pd.DataFrame, settings: CohortSettings
) -> tuple[dict[str, str], MissingValues]:
    """Per-patient problems of a feature table, and the missing values the model imputes as in training.

    Refused (:mod:`rccgrade.models.predict_missing`): non-finite or non-numeric values, missing values no
    training-fitted imputer covers, every imaging feature missing; and implausible clinical values.
    """
    needed = [c for c in bundle.feature_names if c in features.columns]
    found = missing_values(bundle.model, features, needed)
    out: dict[str, str] = {}
    for pid, reason in found.failures.items():
        _fail(out, pid, reason)
    for name in needed:
        col = features[name]
        if not name.startswith("clin:") or not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        values = col.to_numpy(dtype=np.float64)
        for i in np.flatnonzero(np.isfinite(values)):
            problem = clinical_value_problem(name[len("clin:") :], float(values[i]), settings)
            if problem is not None:
                _fail(out, str(features.index[i]), f"{problem[0]}: {problem[1]}")
    return out, found


def predict_table(
    bundle: ModelBundle,
    features: pd.DataFrame,
    feature_settings: Mapping[str, Any] | None = None,
    *,
    patients: Sequence[str] | None = None,
    failures: Mapping[str, str] | None = None,
    rows: Sequence[int | None] | None = None,
    ood_factor: float = OOD_RANGE_FACTOR,
) -> pd.DataFrame:
    """One row per patient with status, reason and — for ``ok`` rows only — the probability and class.

    Args:
        bundle: The loaded bundle.
        features: FeatureTable of the patients that have features.
        feature_settings: Settings that made ``features`` (checked against the bundle's when given).
        patients: Every patient to account for, in output order (default: ``features.index``). A patient absent
            from ``features`` and from ``failures`` is ``failed`` ("no features").
        failures: Patient → why it has no features (from :func:`compute_features_for_bundle`).
        rows: Manifest line of each entry of ``patients`` (None: column left empty).
        ood_factor: ``k`` of :func:`out_of_distribution`.

    Returns:
        DataFrame indexed by ``patient_id`` (one row per entry of ``patients``) with :data:`PREDICTION_COLUMNS`.

    Raises:
        ModelError: the table lacks columns the model needs or was made with other settings (whole table).
    """
    ids = [str(p) for p in (patients if patients is not None else features.index)]
    failed: dict[str, str] = dict(failures or {})
    features = features.copy()
    features.index = features.index.astype(str)
    if len(features):  # an empty table (every patient failed earlier) has nothing to check
        validate_table(features)
        check_features(bundle, features, feature_settings)
    settings = bundle_cohort_settings(bundle)
    candidates = [p for p in dict.fromkeys(ids) if p not in failed]
    absent = [p for p in candidates if p not in features.index]
    for pid in absent:
        _fail(failed, pid, "no features for this patient in the feature table; compute them or remove the row")
    present = features.loc[[p for p in candidates if p in features.index]]
    if present.index.has_duplicates:
        for pid in present.index[present.index.duplicated()].unique():
            _fail(failed, str(pid), "the feature table holds this patient more than once")
        present = present[~present.index.isin([p for p in failed])]
    problems, missing = _feature_row_problems(bundle, present, settings)
    for pid, reason in problems.items():
        _fail(failed, pid, reason)
    imputed = [p for p in present.index if p not in failed and missing.note(p)]
    for pid in imputed[:20]:
        log.warning("patient %s: %s", pid, missing.note(pid))
    if len(imputed) > 20:
        log.warning("… and %d more patient(s) with imputed feature values (see their reason)", len(imputed) - 20)
    present = present.loc[[p for p in present.index if p not in failed]]
    proba = pd.Series(dtype=np.float64)
    ood = pd.Series(dtype=object)
    if len(present):
        preds = predict_bundle(bundle, present, feature_settings)
        proba = preds["probability"]
        for pid in proba.index[~np.isfinite(proba.to_numpy(dtype=np.float64))]:
            _fail(failed, str(pid), "the model returned a non-finite probability")
        ood = out_of_distribution(present, bundle.training_distribution, ood_factor)
    records = []
    for i, pid in enumerate(ids):
        rec: dict[str, Any] = {
            "patient_id": pid,
            "row": None if rows is None else rows[i],
            "status": STATUS_FAILED,
            "reason": failed.get(pid, ""),
            "probability": math.nan,
            "predicted_class": pd.NA,
            "predicted_grade": "",
            "threshold": bundle.threshold,
            "arm": bundle.arm,
        }
        if pid not in failed and pid in proba.index:
            if ood.get(pid, ""):
                rec["status"] = STATUS_OOD
                rec["reason"] = " | ".join(r for r in (ood[pid], missing.note(pid)) if r)
            else:
                p = float(proba[pid])
                rec["status"] = STATUS_OK
                rec["probability"] = p
                rec["predicted_class"] = int(p >= bundle.threshold)
                rec["predicted_grade"] = "high" if p >= bundle.threshold else "low"
                rec["reason"] = missing.note(pid)
        elif not rec["reason"]:
            rec["reason"] = "no prediction (unknown cause)"
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=["patient_id", *PREDICTION_COLUMNS])
    frame["row"] = frame["row"].astype("Int64")
    frame["predicted_class"] = frame["predicted_class"].astype("Int64")
    frame["probability"] = frame["probability"].astype(np.float64)
    return frame.set_index("patient_id")
