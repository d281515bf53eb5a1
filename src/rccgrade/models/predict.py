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
  (preprocessing, radiomics, deep features), a missing or non-finite feature;
* ``out_of_distribution`` — no probability: a feature lies far outside the training distribution stored in the
  bundle (:func:`out_of_distribution`); the reason names the features, their values and the training range;
* ``ok`` — the probability and the class at the bundle's threshold.

The probability of an out-of-distribution patient is left empty on purpose: a model extrapolating far outside its
training data has no calibrated probability to give, and a number in the column would be read as one.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cohort.integrity import CheckOptions, check_case_clinical, check_case_images, clinical_value_problem
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case, Cohort, Problem
from rccgrade.errors import CohortError, ConfigError, ModelError
from rccgrade.features.table import validate_table
from rccgrade.models.bundle import FeatureStats, ModelBundle

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

OOD_RANGE_FACTOR = 1.0
"""A feature value is *outside* when it lies outside ``[min − k·span, max + k·span]`` of the training values, with
``k`` this factor and ``span = max − min`` (for a constant training feature, ``max(|median|, 1)``)."""

OOD_EXTREME_FACTOR = 10.0
"""A value beyond ``k = 10`` training spans is *extreme*: one extreme value makes the patient out of distribution."""

OOD_SHARE = 0.25
"""A patient is also out of distribution when more than this share of the model's (non-missing) features lie
outside. One merely-outside value among thousands of deep features is expected by chance on a small training
cohort and does not count alone."""

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


def _image_item(item: tuple[Case, CheckOptions]) -> list[Problem]:
    return check_case_images(item[0], item[1])


@dataclass
class BundleFeatures:
    """What :func:`compute_features_for_bundle` produced.

    Attributes:
        features: FeatureTable of the patients whose features are complete (may be empty).
        settings: The settings the features were made with (the bundle's own).
        failures: Patient id → why that patient has no features (manifest, integrity, clinical or stage error),
            in manifest order.
        cohort: The cohort read from the manifest (every patient, failed ones included).
    """

    features: pd.DataFrame
    settings: dict[str, Any]
    failures: dict[str, str] = field(default_factory=dict)
    cohort: Cohort | None = None

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as ``(features, settings)``, the return value of earlier versions."""
        return iter((self.features, self.settings))


def _fail(failures: dict[str, str], pid: str, reason: str) -> None:
    if pid in failures:
        failures[pid] = f"{failures[pid]} | {reason}"
    else:
        failures[pid] = reason


def compute_features_for_bundle(
    bundle: ModelBundle,
    manifest: str | Path | Cohort,
    work_dir: str | Path,
    parallel: Any = None,
) -> BundleFeatures:
    """Compute the features a bundle needs for the patients of a manifest, with the bundle's settings.

    The bundle's ``feature_settings`` must hold the stage settings that produced the training features
    (``cohort``, ``preprocess``, ``radiomics``, ``deep``: each a ``model_dump`` of the stage's settings, as
    written by :func:`rccgrade.models.bundle.study_feature_settings`). Before any feature is computed, every
    patient goes through the manifest's own checks, the clinical-value rules and — when the model reads imaging
    features — the image integrity rules (the same code as ``rccgrade validate``); a patient with an error is
    recorded in ``failures`` and computes nothing. Then only the stages the model needs run: preprocessing
    (registration, ROIs, slices) when it uses radiomics or deep features, PyRadiomics for ``rad:`` columns, the
    frozen CNN for ``deep:<roi>:`` columns, and the manifest's clinical columns for ``clin:``. A patient whose
    stage fails, or whose imaging features are incomplete, is recorded in ``failures`` too.

    Args:
        bundle: The loaded bundle.
        manifest: Manifest CSV of the new patients (no grade needed), or a cohort already read with
            :func:`bundle_cohort`.
        work_dir: Folder for the stages' outputs (``preprocess/``, ``radiomics/``, ``deep/``).
        parallel: :class:`~rccgrade.parallel.ParallelSettings` of the per-case work (default: local processes).

    Returns:
        A :class:`BundleFeatures`: the features of the patients that have them, and why the others have none.

    Raises:
        ModelError: the bundle lacks the settings of a stage it needs, or was trained on fine-tuned deep features
            (the fine-tuned network is not part of the bundle).
        CohortError: the manifest itself is unreadable (no such file, no patient_id column …).
    """
    from rccgrade.features.table import join_tables
    from rccgrade.models.arms import clinical_table
    from rccgrade.parallel import run_cases

    fs = bundle.feature_settings
    needed = bundle.feature_names
    need_rad = any(c.startswith("rad:") for c in needed)
    rois = sorted({c.split(":")[1] for c in needed if c.startswith("deep:")})
    need_clin = any(c.startswith("clin:") for c in needed)
    for stage, wanted in (("preprocess", need_rad or bool(rois)), ("radiomics", need_rad), ("deep", bool(rois))):
        if wanted and not isinstance(fs.get(stage), Mapping):
            raise ModelError(
                f"the bundle does not record the {stage!r} settings its features were made with; it cannot compute "
                "them for new patients. Pass a feature table made with the training settings (--features).",
                path=bundle.path,
            )
    if rois:
        from rccgrade.deep.settings import DeepSettings

        deep_settings = DeepSettings.model_validate(fs["deep"])
        if deep_settings.mode != "frozen":
            raise ModelError(
                f"the model was trained on {deep_settings.mode!r} deep features; the fine-tuned network is not "
                "part of the bundle, so pass a feature table made by that network (--features)",
                path=bundle.path,
            )
    work = Path(work_dir)
    cohort = manifest if isinstance(manifest, Cohort) else bundle_cohort(bundle, manifest)
    everyone = cohort
    settings = bundle_cohort_settings(bundle)
    failures: dict[str, str] = {}

    # 1. the manifest's own problems, and implausible clinical values of the columns the model reads
    clinical_used = {c[len("clin:") :] for c in needed if c.startswith("clin:")}
    for pid in dict.fromkeys(p.patient_id for p in cohort.issues if _blocks_prediction(p, clinical_used)):
        _fail(
            failures,
            pid,
            _describe([p for p in cohort.issues if p.patient_id == pid and _blocks_prediction(p, clinical_used)]),
        )
    for case in cohort.cases:
        found = check_case_clinical(case, cohort.clinical_types, settings, columns=clinical_used)
        if found:
            _fail(failures, case.patient_id, _describe(found))

    # 2. image integrity (validate's rules) before any imaging work
    if need_rad or rois:
        options = CheckOptions.from_settings(settings)
        todo = [c for c in cohort.cases if c.patient_id not in failures]
        outcomes = run_cases(
            _image_item, [(c, options) for c in todo], keys=[c.patient_id for c in todo], settings=parallel
        )
        for case, outcome in zip(todo, outcomes, strict=True):
            if not outcome.ok or outcome.value is None:
                _fail(failures, case.patient_id, f"check_failed: the image checks crashed ({outcome.error})")
                continue
            errors = [p for p in outcome.value if p.severity == "error"]
            if errors:
                _fail(failures, case.patient_id, _describe(errors))
    ok_ids = list(dict.fromkeys(p for p in cohort.patient_ids if p not in failures))
    cohort = cohort.subset(ok_ids)

    tables: list[pd.DataFrame] = []
    if (need_rad or rois) and ok_ids:
        from rccgrade.preprocess.paths import REGISTERED_DIR
        from rccgrade.preprocess.pipeline import run_preprocess
        from rccgrade.preprocess.settings import PreprocessSettings

        pre = run_preprocess(
            cohort, work / "preprocess", PreprocessSettings.model_validate(fs["preprocess"]), parallel=parallel
        )
        for row in pre.failures.to_dict("records"):
            _fail(failures, str(row["patient_id"]), f"preprocessing failed: {row['error']}")
        for pid in pre.failed_ids:
            if pid not in failures:
                _fail(failures, pid, "preprocessing failed (see preprocess/failures.csv)")
        ok = set(pre.ok_ids)
        cohort = cohort.subset([p for p in cohort.patient_ids if p in ok])
        if need_rad and cohort.cases:
            from rccgrade.radiomics.extract import extract_radiomics
            from rccgrade.radiomics.settings import RadiomicsSettings

            rad = extract_radiomics(
                cohort,
                work / "radiomics",
                RadiomicsSettings.model_validate(fs["radiomics"]),
                parallel=parallel,
                registered_dir=work / "preprocess" / REGISTERED_DIR,
            )
            for row in rad.failures.to_dict("records"):
                _fail(failures, str(row["patient_id"]), f"radiomics failed: {row['error']}")
            tables.append(rad.features)
        if rois and cohort.cases:
            from rccgrade.deep.features import extract_deep_features
            from rccgrade.deep.settings import DeepSettings
            from rccgrade.preprocess.slices import load_slices

            deep_settings = DeepSettings.model_validate(fs["deep"]).model_copy(update={"rois": rois})
            wanted = set(cohort.patient_ids)  # slices left in a reused work folder by earlier runs are not ours
            images = {
                roi: {p: a for p, a in load_slices(work / "preprocess", roi).items() if p in wanted} for roi in rois
            }
            deep = extract_deep_features(images, deep_settings, seed=int(bundle.meta.get("seed") or 0))
            for row in deep.failures:
                _fail(failures, str(row["patient_id"]), f"deep features failed for {row['roi']}: {row['error']}")
            tables.append(deep.table)
    if need_clin and cohort.cases:
        tables.append(clinical_table(cohort))
    ids = [p for p in cohort.patient_ids if p not in failures]
    if tables:
        table = join_tables(*tables).reindex(ids)
    else:
        table = pd.DataFrame(index=pd.Index(ids, dtype=object))
    imaging = [c for c in needed if not c.startswith("clin:") and c in table.columns]
    if imaging:
        incomplete = table[imaging].isna()
        for pid in table.index[incomplete.any(axis=1)]:
            lacking = [c for c in imaging if bool(incomplete.at[pid, c])]
            _fail(failures, str(pid), f"incomplete imaging features: {len(lacking)} missing (e.g. {lacking[:3]})")
        table = table.loc[~incomplete.any(axis=1)]
    table.index.name = "patient_id"
    for pid in failures:
        log.warning("patient %s: no prediction: %s", pid, failures[pid])
    return BundleFeatures(features=table, settings=dict(fs), failures=failures, cohort=everyone)


def out_of_distribution(
    features: pd.DataFrame,
    distribution: Mapping[str, FeatureStats],
    factor: float = OOD_RANGE_FACTOR,
    *,
    extreme_factor: float = OOD_EXTREME_FACTOR,
    share: float = OOD_SHARE,
) -> pd.Series:
    """Why each patient lies far outside the training distribution ("" when it does not).

    Rule: a value ``x`` of feature ``f`` is *outside* when ``x < min − k·span`` or ``x > max + k·span``, with
    ``min``/``max`` over the training patients, ``span = max − min`` (``max(|median|, 1)`` for a feature constant
    in training) and ``k = factor``; it is *extreme* beyond ``max(extreme_factor, factor)`` spans. A patient is
    out of distribution when any value is extreme, or when more than ``share`` of its judged features are outside.
    Missing values (imputed by the model) are not judged.

    Args:
        features: FeatureTable of the patients (index ``patient_id``).
        distribution: The bundle's :attr:`~rccgrade.models.bundle.ModelBundle.training_distribution`.
        factor: ``k`` (default :data:`OOD_RANGE_FACTOR`).
        extreme_factor: Spans beyond which one value suffices (default :data:`OOD_EXTREME_FACTOR`).
        share: Largest share of outside features that is tolerated (default :data:`OOD_SHARE`).

    Returns:
        A string Series indexed like ``features``: the features outside, with value and training range.
    """
    reasons = pd.Series("", index=features.index, dtype=object)
    n = len(features.index)
    judged = np.zeros(n, dtype=np.int64)
    n_out = np.zeros(n, dtype=np.int64)
    n_extreme = np.zeros(n, dtype=np.int64)
    hits: dict[int, list[tuple[float, str]]] = {}
    big = max(extreme_factor, factor)
    for name, stats in distribution.items():
        if name not in features.columns or not pd.api.types.is_numeric_dtype(features[name]):
            continue
        span = stats.max - stats.min
        if span <= 0:
            span = max(abs(stats.median), 1.0)
        values = features[name].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            beyond = np.maximum(stats.min - values, values - stats.max) / span  # spans beyond the training range
        finite = ~np.isnan(values)
        judged += finite
        outside = finite & (beyond > factor)
        n_out += outside
        n_extreme += finite & (beyond > big)
        for i in np.flatnonzero(outside):
            hits.setdefault(int(i), []).append(
                (float(beyond[i]), f"{name} = {values[i]:.4g} (training {stats.min:.4g}..{stats.max:.4g})")
            )
    for i, items in hits.items():
        if not (n_extreme[i] > 0 or n_out[i] > share * judged[i]):
            continue
        items.sort(key=lambda t: -t[0])  # the farthest first
        shown = "; ".join(t[1] for t in items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
        why = f"{n_extreme[i]} beyond {big:g}× the range" if n_extreme[i] else f"more than {share:.0%} of {judged[i]}"
        reasons.iloc[i] = (
            f"{len(items)} of {judged[i]} feature(s) far outside the training range (beyond {factor:g}× the range on "
            f"either side; {why}): {shown}. No probability is given: the model would extrapolate"
        )
    return reasons


def _feature_row_problems(bundle: ModelBundle, features: pd.DataFrame, settings: CohortSettings) -> dict[str, str]:
    """Per-patient problems of a feature table: non-finite values, missing imaging values, implausible clinical."""
    out: dict[str, str] = {}
    needed = [c for c in bundle.feature_names if c in features.columns]
    for name in needed:
        col = features[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        values = col.to_numpy(dtype=np.float64)
        for i in np.flatnonzero(np.isinf(values)):
            _fail(out, str(features.index[i]), f"feature {name} is {values[i]:g}: not finite")
        if not name.startswith("clin:"):
            for i in np.flatnonzero(np.isnan(values)):
                _fail(out, str(features.index[i]), f"imaging feature {name} is missing")
        else:
            for i in np.flatnonzero(np.isfinite(values)):
                found = clinical_value_problem(name[len("clin:") :], float(values[i]), settings)
                if found is not None:
                    _fail(out, str(features.index[i]), f"{found[0]}: {found[1]}")
    return out


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
    for pid, reason in _feature_row_problems(bundle, present, settings).items():
        _fail(failed, pid, reason)
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
                rec["reason"] = ood[pid]
            else:
                p = float(proba[pid])
                rec["status"] = STATUS_OK
                rec["probability"] = p
                rec["predicted_class"] = int(p >= bundle.threshold)
                rec["predicted_grade"] = "high" if p >= bundle.threshold else "low"
        elif not rec["reason"]:
            rec["reason"] = "no prediction (unknown cause)"
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=["patient_id", *PREDICTION_COLUMNS])
    frame["row"] = frame["row"].astype("Int64")
    frame["predicted_class"] = frame["predicted_class"].astype("Int64")
    frame["probability"] = frame["probability"].astype(np.float64)
    return frame.set_index("patient_id")


def predict_manifest(
    bundle: ModelBundle,
    manifest: str | Path,
    work_dir: str | Path,
    *,
    features: pd.DataFrame | None = None,
    feature_settings: Mapping[str, Any] | None = None,
    parallel: Any = None,
    ood_factor: float = OOD_RANGE_FACTOR,
) -> pd.DataFrame:
    """Predict every patient of a manifest; every manifest row gets a row (see :func:`predict_table`).

    Args:
        bundle: The loaded bundle.
        manifest: Manifest CSV of the new patients (images, mask, clinical columns; no grade needed).
        work_dir: Folder for intermediate files when features are computed.
        features: A precomputed FeatureTable instead of computing features; the manifest then gives the patients
            (those absent from the table fail) and the clinical columns the table lacks.
        feature_settings: Settings that made ``features``.
        parallel: :class:`~rccgrade.parallel.ParallelSettings` of the per-case work.
        ood_factor: ``k`` of :func:`out_of_distribution`.

    Returns:
        DataFrame indexed by ``patient_id``, one row per manifest row in manifest order, :data:`PREDICTION_COLUMNS`.
    """
    return predict_manifest_with_features(
        bundle,
        manifest,
        work_dir,
        features=features,
        feature_settings=feature_settings,
        parallel=parallel,
        ood_factor=ood_factor,
    ).predictions


@dataclass(frozen=True)
class ManifestPrediction:
    """:func:`predict_manifest_with_features`'s result.

    Attributes:
        predictions: One row per manifest row (see :func:`predict_table`).
        features: The FeatureTable the predictions were made from (for explanations).
        imputed_variables: Clinical variables the cohort lacks, imputed for every patient (``impute`` policy).
        warnings: Cohort-wide warnings (imputed variables, likely unit mix-ups) for logs and report banners.
    """

    predictions: pd.DataFrame
    features: pd.DataFrame
    imputed_variables: list[str]
    warnings: list[str]


def missing_clinical_variables(
    bundle: ModelBundle, cohort: Cohort, policy: str = "refuse", present: Sequence[str] = ()
) -> list[str]:
    """Clinical variables the model reads that the cohort has no column for.

    Args:
        present: FeatureTable columns already available (``--features`` mode): those count as present.
        policy: ``refuse`` raises; ``impute`` returns them (the pipeline's training median/mode fills them).

    Raises:
        ModelError: ``refuse`` and some variable is missing — naming each and how to map or impute it.
        ConfigError: unknown policy.
    """
    from rccgrade.cohort.column_map import MISSING_POLICIES, missing_variables_message

    if policy not in MISSING_POLICIES:
        raise ConfigError(f"--missing-variables {policy!r}: choose one of {list(MISSING_POLICIES)}")
    needed = [c[len("clin:") :] for c in bundle.feature_names if c.startswith("clin:")]
    missing = [v for v in needed if v not in cohort.clinical_types and f"clin:{v}" not in set(present)]
    if missing and policy == "refuse":
        raise ModelError(missing_variables_message(missing, cohort.clinical_types), path=bundle.path)
    return missing


def unit_warnings(bundle: ModelBundle, features: pd.DataFrame) -> list[str]:
    """Likely unit mix-ups: numeric model variables whose cohort median is ~10^k × the training median."""
    from rccgrade.cohort.column_map import unit_mismatch

    out: list[str] = []
    for name, stats in bundle.training_distribution.items():
        if name not in features.columns or not name.startswith("clin:"):
            continue
        values = pd.to_numeric(features[name], errors="coerce")
        found = unit_mismatch(name, values.to_numpy(dtype=np.float64), stats.median, stats.min, stats.max)
        if found is not None:
            out.append(found.message)
    return out


def predict_manifest_with_features(
    bundle: ModelBundle,
    manifest: str | Path,
    work_dir: str | Path,
    *,
    features: pd.DataFrame | None = None,
    feature_settings: Mapping[str, Any] | None = None,
    parallel: Any = None,
    ood_factor: float = OOD_RANGE_FACTOR,
    column_map: Mapping[str, str] | None = None,
    missing_variables: str = "refuse",
) -> ManifestPrediction:
    """:func:`predict_manifest` plus the FeatureTable, the imputed variables and cohort-wide warnings.

    Args:
        column_map: Model variable → this cohort's column (``--map``), see :mod:`rccgrade.cohort.column_map`.
        missing_variables: ``refuse`` (default: a clinical variable the model reads is absent → ModelError
            naming it and the fix) or ``impute`` (training median/mode for every patient, loudly warned).
    """
    cohort = bundle_cohort(bundle, manifest, column_map)
    present = [] if features is None else [str(c) for c in features.columns]
    imputed = missing_clinical_variables(bundle, cohort, missing_variables, present)
    warnings: list[str] = []
    if imputed:
        msg = (
            f"clinical variable(s) {imputed} are absent from this cohort and were IMPUTED with the training "
            "median/mode for every patient: the predictions ignore them"
        )
        log.warning(msg)
        warnings.append(msg)
    if features is None:
        made = compute_features_for_bundle(bundle, cohort, work_dir, parallel)
        cohort = made.cohort
        assert cohort is not None
        table, settings, failures = made.features, made.settings, made.failures
    else:
        from rccgrade.features.table import join_tables
        from rccgrade.models.arms import clinical_table

        cohort_settings = bundle_cohort_settings(bundle)
        table, settings = features.copy(), feature_settings
        table.index = table.index.astype(str)
        failures = {}
        clinical_used = {c[len("clin:") :] for c in bundle.feature_names if c.startswith("clin:")}
        for problem in cohort.issues:
            if _blocks_prediction(problem, clinical_used) and not problem.code.startswith(("phase_", "mask_")):
                _fail(failures, problem.patient_id, _describe([problem]))
        for case in cohort.cases:
            found = check_case_clinical(case, cohort.clinical_types, cohort_settings, columns=clinical_used)
            if found:
                _fail(failures, case.patient_id, _describe(found))
        need_clin = [c for c in bundle.feature_names if c.startswith("clin:") and c not in table.columns]
        if need_clin:
            ids = [p for p in dict.fromkeys(cohort.patient_ids) if p in table.index]
            clin = clinical_table(cohort.subset(ids))
            table = join_tables(table.loc[ids], clin[[c for c in clin.columns if c not in table.columns]])
    for var in imputed:
        if f"clin:{var}" not in table.columns:
            table[f"clin:{var}"] = np.nan
    for msg in unit_warnings(bundle, table):
        log.warning(msg)
        warnings.append(msg)
    preds = predict_table(
        bundle,
        table,
        settings,
        patients=cohort.patient_ids,
        failures=failures,
        rows=[c.row for c in cohort.cases],
        ood_factor=ood_factor,
    )
    return ManifestPrediction(preds, table, imputed, warnings)
