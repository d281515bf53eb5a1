"""One frozen dataclass per stage output: what a stage hands to the stages after it.

Tables are pandas DataFrames (FeatureTables indexed by ``patient_id``); every other field is typed. A
stage that is skipped (no arm needs it, report disabled) provides ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rccgrade.cohort.types import Cohort
from rccgrade.deep.settings import DeepSettings

if TYPE_CHECKING:
    from rccgrade.cohort.validate import ValidationReport


@dataclass(frozen=True)
class CohortOutput:
    """The usable cohort and the keys of what later stages read from it.

    Attributes:
        manifest: The manifest file (absolute).
        cohort: Usable cases only (each patient once).
        validation: The validation report of every case (``validation.csv``).
        checksums: Input file (relative to the manifest's folder) → SHA-256, for ``provenance.json``.
        images_key: Hash of every usable case's image and mask checksums (and labels / mask phase).
        labels_key: Hash of the labels.
        clinical_key: Hash of the clinical variables and their types.
    """

    manifest: Path
    cohort: Cohort
    validation: ValidationReport
    checksums: Mapping[str, str]
    images_key: str
    labels_key: str
    clinical_key: str

    @property
    def n_total(self) -> int:
        """Cases in the manifest (usable or not)."""
        return len(self.validation.cases)

    def labels(self) -> pd.Series:
        """Label (0 low / 1 high) per usable patient, index as strings."""
        labels = self.cohort.labels()
        labels.index = labels.index.astype(str)
        return labels


@dataclass(frozen=True)
class PreprocessOutput:
    """Registered images and ROI slice images, in the stage's cache folder.

    Attributes:
        folder: ``cache/preprocess-<key>`` (``registered/``, ``slices/<roi>/``, ``qc/``).
        key: Cache key.
        ok_ids: Patients preprocessed successfully.
        flagged_ids: Patients whose registration fell back to identity.
        qc_sheet: The QC contact sheet (None when QC is off).
    """

    folder: Path
    key: str
    ok_ids: tuple[str, ...]
    flagged_ids: tuple[str, ...]
    qc_sheet: Path | None


@dataclass(frozen=True)
class SplitOutput:
    """Train/test split (``split.csv``).

    Attributes:
        split: Columns ``patient_id``, ``split`` (``train``/``test``), ``y``.
        source: ``manifest`` (the manifest's ``split`` column) or ``stratified random``.
        key: Hash of the split.
    """

    split: pd.DataFrame
    source: str
    key: str

    def ids(self, which: str) -> list[str]:
        """Patients of ``train`` or ``test``, in split order."""
        return self.split.loc[self.split["split"] == which, "patient_id"].astype(str).tolist()


@dataclass(frozen=True)
class RadiomicsOutput:
    """PyRadiomics FeatureTable (``rad:<phase>:<feature>``) and the ICC stability table.

    Attributes:
        folder: ``cache/radiomics-<key>``.
        key: Cache key.
        table: Patients × radiomics features.
        stability: Feature → ICC columns and ``stable`` (None when stability is off).
    """

    folder: Path
    key: str
    table: pd.DataFrame
    stability: pd.DataFrame | None


@dataclass(frozen=True)
class DeepOutput:
    """Pooled deep features per ROI (``deep:<roi>:fNNNN``).

    Attributes:
        folder: ``cache/deep-<key>`` (``features.parquet``, ``metadata.json``).
        key: Cache key.
        table: Patients × deep features.
        settings: The deep settings actually used (weights after an offline fallback).
        random_init: The network was randomly initialised.
        model_files: ROI → fine-tuned network file (fine-tuning only).
        dims: ROI → number of pooled features.
    """

    folder: Path
    key: str
    table: pd.DataFrame
    settings: DeepSettings
    random_init: bool
    model_files: Mapping[str, Path]
    dims: Mapping[str, int]


@dataclass(frozen=True)
class ClinicalOutput:
    """The clinical FeatureTable (``clin:<name>``; encoding and imputation happen inside the models)."""

    table: pd.DataFrame
    key: str


@dataclass(frozen=True)
class ModelsOutput:
    """Fitted arms, saved as bundles, and the per-patient probabilities.

    Attributes:
        folder: ``cache/models-<key>`` (``bundles/<arm>/``, ``predictions.csv``, ``selected/<arm>.csv``).
        key: Cache key.
        arms: Fitted arms in fitting order.
        predictions: ``patient_id``, ``split``, ``y``, one column per arm (training patients: out-of-fold).
        thresholds: Arm → decision threshold (Youden on the training OOF probabilities).
        n_candidates: Arm → number of candidate features.
        classifiers: Arm → classifier name.
        nomogram_ranges: ``logit p(<arm>)`` → (2.5th, 97.5th) percentile of the stacked arm's inputs.
    """

    folder: Path
    key: str
    arms: tuple[str, ...]
    predictions: pd.DataFrame
    thresholds: Mapping[str, float]
    n_candidates: Mapping[str, int]
    classifiers: Mapping[str, str]
    nomogram_ranges: Mapping[str, tuple[float, float]]

    def bundle_dir(self, arm: str) -> Path:
        """The bundle folder of an arm inside the stage folder."""
        from rccgrade.features.naming import arm_folder

        return self.folder / "bundles" / arm_folder(arm)

    def selected_path(self, arm: str) -> Path:
        """``selected/<arm>.csv``: the arm's selected features and coefficients."""
        from rccgrade.features.naming import arm_folder

        return self.folder / "selected" / f"{arm_folder(arm)}.csv"


@dataclass(frozen=True)
class FigurePaths:
    """A figure saved as PNG and SVG."""

    png: Path | None
    svg: Path | None


@dataclass(frozen=True)
class EvaluateOutput:
    """Every statistic (``metrics.json``) and the figures.

    Attributes:
        metrics: Contents of ``metrics.json``.
        evaluation: The statistics objects of :func:`rccgrade.stats.evaluate.evaluate_arms`.
        figures: Figure name (``roc``, ``calibration_<cohort>``, ``dca_<cohort>``, ``nomogram``) → files.
        nomogram_arm: The arm the nomogram shows (None: no nomogram).
    """

    metrics: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    figures: Mapping[str, FigurePaths]
    nomogram_arm: str | None


@dataclass(frozen=True)
class ReportOutput:
    """The rendered ``report.html``."""

    path: Path
