"""The schema of ``bundle.json`` (format 2): every field validated, one-line errors naming the file and the field.

Split from :mod:`rccgrade.models.bundle` (which re-exports every name and loads, saves and checks bundles).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

BUNDLE_FORMAT = 2
MODEL_FILE = "model.skops"
META_FILE = "bundle.json"
CHECKSUM_FILE = "checksums.json"

ARM_PATTERN = re.compile(r"(clinical|radiomics|kinetic|combined|stacked|deep:[A-Za-z0-9_]{1,64})")
"""Arm names a bundle may carry: the arms of :mod:`rccgrade.models.arms` (``deep:<roi>`` per ROI setting)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0)]


class FeatureStats(BaseModel):
    """Training distribution of one feature (training patients only; missing values left out).

    Attributes:
        n: Training patients with a value.
        median, mad: Median and median absolute deviation (unscaled).
        q1, q3: 25th and 75th percentiles (linear interpolation).
        min, max: Smallest and largest training value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: Annotated[int, Field(strict=True, ge=1)]
    median: FiniteFloat
    mad: Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False)]
    q1: FiniteFloat
    q3: FiniteFloat
    min: FiniteFloat
    max: FiniteFloat

    @model_validator(mode="after")
    def _ordered(self) -> FeatureStats:
        if not self.min <= self.q1 <= self.median <= self.q3 <= self.max:
            raise ValueError("needs min <= q1 <= median <= q3 <= max")
        return self


class BundleMeta(BaseModel):
    """The schema of ``bundle.json`` (format 2); see docs/model_bundles.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[2]
    arm: str
    feature_names: list[str] = Field(min_length=1)
    threshold: Probability
    threshold_method: str
    model_file: Literal["model.skops"]
    model_sha256: str
    serialization: Literal["skops"]
    model_settings: dict[str, Any] | None
    feature_settings: dict[str, Any]
    feature_metadata: dict[str, Any]
    seed: Annotated[int, Field(strict=True)] | None
    n_train: Count
    n_train_high_grade: Count
    training_checksum: str
    training_distribution: dict[str, FeatureStats]
    package_versions: dict[str, str]
    created: str
    extra: dict[str, Any]

    @field_validator("arm")
    @classmethod
    def _known_arm(cls, value: str) -> str:
        if not ARM_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value[:60]!r} is not an arm name: use clinical, radiomics, kinetic, combined, stacked or deep:<roi> "
                "(letters, digits and '_' only)"
            )
        return value

    @field_validator("feature_names")
    @classmethod
    def _clean_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 300 or any(not ch.isprintable() for ch in name):
                raise ValueError(
                    f"feature name {name[:60]!r} is empty, over 300 characters or holds control characters"
                )
        if len(set(value)) != len(value):
            raise ValueError("feature names repeat")
        return value

    @field_validator("model_sha256", "training_checksum")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError("must be a SHA-256 in 64 lower-case hexadecimal digits")
        return value

    @field_validator("n_train_high_grade")
    @classmethod
    def _at_most_n_train(cls, value: int, info: ValidationInfo) -> int:
        if value > info.data.get("n_train", value):
            raise ValueError("exceeds n_train")
        return value

    @field_validator("training_distribution")
    @classmethod
    def _known_features(cls, value: dict[str, FeatureStats], info: ValidationInfo) -> dict[str, FeatureStats]:
        unknown = sorted(set(value) - set(info.data.get("feature_names") or []))
        if unknown:
            raise ValueError(f"names features the model does not read: {unknown[:3]}")
        return value


TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "rccgrade.features.harmonize.ComBat",
    "rccgrade.features.selection.CorrelationFilter",
    "rccgrade.features.selection.LassoSelector",
    "rccgrade.features.selection.MRMRSelector",
    "rccgrade.features.selection.NearConstantFilter",
    "rccgrade.features.selection.PrefixPCA",
    "rccgrade.features.selection.SourceUnion",
    "rccgrade.features.selection.StabilityFilter",
    "rccgrade.features.selection.TabularPreprocessor",
    "rccgrade.features.selection.UnivariateFilter",
    "rccgrade.models.arms.StackedClassifier",
    "rccgrade.models.classifiers.BalancedLGBMClassifier",
    "rccgrade.models.classifiers.BalancedXGBClassifier",
    "rccgrade.models.classifiers.CalibratedSVM",
    "rccgrade.models.fusion.BudgetedSourceUnion",
    "rccgrade.models.source_gate.GatedSourceUnion",
    "rccgrade.models.stacking.NonNegativeLogisticRegression",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.tree._tree.Tree",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
)
"""Types beyond skops' defaults (scikit-learn, NumPy, SciPy, builtins) that a bundle may contain."""
