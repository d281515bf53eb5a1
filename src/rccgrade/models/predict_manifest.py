"""Predict every patient of a manifest: compute the features a bundle needs (only the stages it needs, with its
own settings), then one row per manifest row with status and reason (:func:`predict_manifest`).

Split from :mod:`rccgrade.models.predict`, which holds the per-table core
(:func:`~rccgrade.models.predict.predict_table`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cohort.integrity import CheckOptions, check_case_clinical, check_case_images
from rccgrade.cohort.types import Case, Cohort, Problem
from rccgrade.errors import ConfigError, ModelError
from rccgrade.models.bundle import ModelBundle
from rccgrade.models.ood import OOD_RANGE_FACTOR
from rccgrade.models.predict import (
    _blocks_prediction,
    _describe,
    _fail,
    bundle_cohort,
    bundle_cohort_settings,
    predict_table,
)

log = logging.getLogger(__name__)


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
    need_rad = any(c.startswith(("rad:", "kin:")) for c in needed)  # kinetic features come with radiomics
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
