"""Apply a model bundle to new patients, refusing features that were not made like the training ones.

Two checks run before any prediction:

* **features** — every column the model was trained on must be in the table (extra columns are ignored);
  otherwise the error lists the missing ones and what the table has instead;
* **settings** — when the features come with the settings that produced them (FeatureTable metadata),
  every setting recorded in the bundle that is also present there must be equal; the error lists each
  differing key with both values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cohort.types import Cohort
from rccgrade.errors import ModelError
from rccgrade.features.table import validate_table
from rccgrade.models.bundle import ModelBundle

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


def bundle_cohort(bundle: ModelBundle, manifest: str | Path) -> Cohort:
    """Read new patients' manifest the way the training cohort was read (mask phase, clinical types).

    Labels are not required. Uses the bundle's ``feature_settings["cohort"]`` and
    ``feature_settings["clinical_types"]`` when recorded.
    """
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.settings import CohortSettings

    fs = bundle.feature_settings
    cfg = {k: v for k, v in dict(fs.get("cohort") or {}).items() if k not in ("manifest", "clinical_csv")}
    cfg["require_labels"] = False
    if isinstance(fs.get("clinical_types"), Mapping) and "clinical_types" not in cfg:
        cfg["clinical_types"] = dict(fs["clinical_types"])
    trained_phases = cfg.get("phases")
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
            cfg["phases"] = kept
    return load_cohort(manifest, settings=CohortSettings.model_validate(cfg))


def compute_features_for_bundle(
    bundle: ModelBundle,
    manifest: str | Path,
    work_dir: str | Path,
    parallel: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compute the features a bundle needs for the patients of a manifest, with the bundle's settings.

    The bundle's ``feature_settings`` must hold the stage settings that produced the training features
    (``cohort``, ``preprocess``, ``radiomics``, ``deep``: each a ``model_dump`` of the stage's settings, as
    written by :func:`rccgrade.models.bundle.study_feature_settings`). Only the stages the model needs run:
    preprocessing (registration, ROIs, slices) when it uses radiomics or deep features, PyRadiomics for
    ``rad:`` columns, the frozen CNN for ``deep:<roi>:`` columns, and the manifest's clinical columns for
    ``clin:``. Patients whose imaging failed are left out (logged); predicting for none is an error.

    Args:
        bundle: The loaded bundle.
        manifest: Manifest CSV of the new patients (no grade needed).
        work_dir: Folder for the stages' outputs (``preprocess/``, ``radiomics/``, ``deep/``).
        parallel: :class:`~rccgrade.parallel.ParallelSettings` of the imaging stages (default: local processes).

    Returns:
        ``(features, settings)``: a FeatureTable of the patients with complete features, and the settings
        used (the bundle's own, so :func:`predict_bundle`'s settings check passes by construction).

    Raises:
        ModelError: the bundle lacks the settings of a stage it needs, was trained on fine-tuned deep features
            (the fine-tuned network is not part of the bundle), or no patient could be processed.
    """
    from rccgrade.features.table import join_tables
    from rccgrade.models.arms import clinical_table

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
    work = Path(work_dir)
    cohort = bundle_cohort(bundle, manifest)
    tables: list[pd.DataFrame] = []
    if need_rad or rois:
        from rccgrade.preprocess.pipeline import REGISTERED_DIR, run_preprocess
        from rccgrade.preprocess.settings import PreprocessSettings

        pre = run_preprocess(
            cohort, work / "preprocess", PreprocessSettings.model_validate(fs["preprocess"]), parallel=parallel
        )
        for pid in pre.failed_ids:
            log.warning("patient %s: preprocessing failed; no prediction", pid)
        ok = set(pre.ok_ids)
        cohort = cohort.subset([p for p in cohort.patient_ids if p in ok])
        if need_rad:
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
                log.warning("patient %s: radiomics failed (%s); no prediction", row["patient_id"], row["error"])
            tables.append(rad.features)
        if rois:
            from rccgrade.deep.features import extract_deep_features
            from rccgrade.deep.settings import DeepSettings
            from rccgrade.preprocess.slices import load_slices

            deep_settings = DeepSettings.model_validate(fs["deep"])
            if deep_settings.mode != "frozen":
                raise ModelError(
                    f"the model was trained on {deep_settings.mode!r} deep features; the fine-tuned network is not "
                    "part of the bundle, so pass a feature table made by that network (--features)",
                    path=bundle.path,
                )
            deep_settings = deep_settings.model_copy(update={"rois": rois})
            images = {roi: load_slices(work / "preprocess", roi) for roi in rois}
            deep = extract_deep_features(images, deep_settings, seed=int(bundle.meta.get("seed") or 0))
            for row in deep.failures:
                log.warning("patient %s: deep features failed for %s (%s)", row["patient_id"], row["roi"], row["error"])
            tables.append(deep.table)
    if need_clin:
        tables.append(clinical_table(cohort))
    table = join_tables(*tables).reindex([p for p in cohort.patient_ids])
    imaging = [c for c in needed if not c.startswith("clin:")]
    complete = table[imaging].notna().all(axis=1) if imaging else pd.Series(True, index=table.index)
    for pid in table.index[~complete]:
        log.warning("patient %s: incomplete imaging features; no prediction", pid)
    table = table.loc[complete]
    if table.empty:
        raise ModelError("no patient of the manifest has complete features; see the warnings above", path=manifest)
    table.index.name = "patient_id"
    return table, dict(fs)
