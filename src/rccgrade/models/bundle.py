"""Model bundles: a fitted arm plus everything needed to use it safely on new patients.

A bundle is a folder::

    <bundle>/model.skops   the fitted estimator (skops format, not pickle)
    <bundle>/bundle.json   arm, required feature columns, decision threshold, settings, versions, checksums

Loading never executes code from the file. Two independent guards:

1. **Checksum.** ``bundle.json`` records the SHA-256 of ``model.skops``; :func:`load_bundle` verifies it
   before reading the model, so a file replaced or altered after the run is refused.
2. **skops with an explicit allow-list.** The model is stored with :mod:`skops.io`, which rebuilds objects
   from a schema instead of unpickling. Every type the file asks for that skops does not already trust
   must be in :data:`TRUSTED_TYPES` (the classes of this package plus the XGBoost/LightGBM model types);
   anything else fails loudly with the list of offending types, even when the checksum matches.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.cache import file_checksum
from rccgrade.errors import ModelError

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MODEL_FILE = "model.skops"
META_FILE = "bundle.json"

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

_VERSIONED = ("rccgrade", "scikit-learn", "numpy", "scipy", "pandas", "skops", "xgboost", "lightgbm")


@dataclass
class ModelBundle:
    """A loaded bundle.

    Attributes:
        model: The fitted estimator; ``model.predict_proba(table)[:, 1]`` is P(high grade).
        meta: The parsed ``bundle.json``.
        path: The bundle folder.
    """

    model: Any
    meta: dict[str, Any]
    path: Path

    @property
    def arm(self) -> str:
        """Arm name (``combined``, ``radiomics`` …)."""
        return str(self.meta["arm"])

    @property
    def feature_names(self) -> list[str]:
        """FeatureTable columns the model needs."""
        return list(self.meta["feature_names"])

    @property
    def threshold(self) -> float:
        """Decision threshold on P(high grade), chosen on training data."""
        return float(self.meta["threshold"])

    @property
    def feature_settings(self) -> dict[str, Any]:
        """Settings of the stages that produced the features (radiomics, preprocess, deep …)."""
        return dict(self.meta.get("feature_settings") or {})

    @property
    def feature_metadata(self) -> dict[str, Any]:
        """Stage name → metadata stored with that stage's training FeatureTable (may be empty)."""
        return dict(self.meta.get("feature_metadata") or {})


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a bundle's numbers depend on (``<name>-cpu`` builds count as ``name``)."""
    from rccgrade.provenance import package_versions as installed

    found = installed([*_VERSIONED, *(f"{name}-cpu" for name in _VERSIONED)])
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        out[name] = found.get(name) or found.get(f"{name}-cpu") or "not installed"
    return out


def training_checksum(X: pd.DataFrame, y: pd.Series | None = None) -> str:
    """SHA-256 over the training features (names, patient ids, values) and labels.

    Identifies the exact training data of a model, so a report can say which data made it.
    """
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in X.columns]).encode())
    h.update(json.dumps([str(i) for i in X.index]).encode())
    h.update(pd.util.hash_pandas_object(X, index=True).to_numpy().tobytes())
    if y is not None:
        h.update(np.asarray(y).astype(np.int64).tobytes())
    return h.hexdigest()


def required_features(model: Any) -> list[str]:
    """FeatureTable columns a fitted arm reads (sorted)."""
    from rccgrade.models.arms import StackedClassifier

    if isinstance(model, StackedClassifier):
        cols: set[str] = set()
        for _, est in model.estimators_:
            cols |= set(required_features(est))
        return sorted(cols)
    steps = getattr(model, "named_steps", {})
    union = steps.get("features") if steps else None
    if union is not None and hasattr(union, "columns_"):
        return sorted({c for cols in union.columns_.values() for c in cols})
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise ModelError("cannot tell which features this model needs; fit it on a FeatureTable DataFrame")
    return sorted(str(c) for c in names)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def study_feature_settings(config: Any) -> dict[str, Any]:
    """The stage settings to record in a bundle from a :class:`~rccgrade.config.StudyConfig`.

    ``predict`` reruns exactly these stages (cohort typing, preprocessing/ROIs, PyRadiomics parameters, deep
    weights) for new patients and refuses feature tables made with other values.
    """
    return {
        name: getattr(config, name).model_dump(mode="json") for name in ("cohort", "preprocess", "radiomics", "deep")
    }


def save_bundle(
    path: str | Path,
    model: Any,
    *,
    arm: str,
    threshold: float,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    model_settings: Any = None,
    feature_settings: dict[str, Any] | None = None,
    feature_metadata: dict[str, Any] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle folder (created if needed; existing bundle files are replaced).

    Args:
        path: Bundle folder.
        model: Fitted arm estimator taking a FeatureTable.
        arm: Arm name.
        threshold: Decision threshold on P(high grade) chosen on training data (e.g. Youden on OOF).
        X_train: Training FeatureTable (for the checksum and the patient count).
        y_train: Training labels.
        model_settings: The :class:`~rccgrade.models.settings.ModelSettings` (or dict) used.
        feature_settings: Settings of the stages that made the features (the FeatureTable metadata:
            preprocess/ROI, radiomics parameters, deep weights …); ``predict`` refuses features made
            differently.
        feature_metadata: Stage name → the metadata saved with that stage's training FeatureTable (e.g. the
            radiomics fingerprint, whose ``"stage"`` key is ``"radiomics"``); a table passed to ``predict``
            whose metadata names a stage is compared with this entry key by key.
        seed: Seed of the run.
        extra: Anything else to record (JSON-able).

    Returns:
        The bundle folder.
    """
    import skops.io as sio

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    tmp = model_path.with_suffix(".tmp")
    sio.dump(model, tmp)
    tmp.replace(model_path)
    y_arr = np.asarray(y_train).astype(np.int64)
    meta = {
        "format": BUNDLE_FORMAT,
        "arm": arm,
        "feature_names": required_features(model),
        "threshold": float(threshold),
        "threshold_method": "youden on out-of-fold training probabilities",
        "model_file": MODEL_FILE,
        "model_sha256": file_checksum(model_path),
        "serialization": "skops",
        "model_settings": _jsonable(model_settings) if model_settings is not None else None,
        "feature_settings": _jsonable(feature_settings or {}),
        "feature_metadata": _jsonable(feature_metadata or {}),
        "seed": seed,
        "n_train": int(y_arr.size),
        "n_train_high_grade": int(y_arr.sum()),
        "training_checksum": training_checksum(X_train, y_train),
        "package_versions": package_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "extra": _jsonable(extra or {}),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return folder


def bundle_from_arms(
    result: Any,
    arm: str,
    table: pd.DataFrame,
    path: str | Path,
    feature_settings: dict[str, Any] | None = None,
    feature_metadata: dict[str, Any] | None = None,
) -> Path:
    """Save one arm of an :class:`~rccgrade.models.arms.ArmsResult` as a bundle.

    ``table`` is the FeatureTable the arms were fitted on (its training rows are checksummed).
    """
    if arm not in result.models:
        raise ModelError(f"arm {arm!r} was not fitted; fitted arms: {result.arms}")
    return save_bundle(
        path,
        result.models[arm],
        arm=arm,
        threshold=result.thresholds[arm],
        X_train=table.loc[result.train_ids],
        y_train=result.y_train,
        model_settings=result.settings,
        feature_settings=feature_settings,
        feature_metadata=feature_metadata,
        seed=result.seed,
        extra={"best_params": result.best_params.get(arm, {})},
    )


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle, refusing tampered files and unexpected types.

    Raises:
        ModelError: missing files, a model file whose SHA-256 differs from ``bundle.json``, or a model
            needing types outside skops' defaults and :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    folder = Path(path)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ModelError(f"not a model bundle: {META_FILE} is missing; pass the bundle folder", path=folder)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"bundle.json is not valid JSON ({exc})", path=meta_path) from None
    if meta.get("format") != BUNDLE_FORMAT or meta.get("serialization") != "skops":
        raise ModelError(
            f"unsupported bundle format {meta.get('format')!r}/{meta.get('serialization')!r}; re-create it with "
            "this rccgrade version",
            path=meta_path,
        )
    model_path = folder / str(meta.get("model_file", MODEL_FILE))
    if model_path.parent.resolve() != folder.resolve() or not model_path.is_file():
        raise ModelError("the bundle's model file is missing", path=model_path)
    digest = file_checksum(model_path)
    if digest != meta.get("model_sha256"):
        raise ModelError(
            "the model file's SHA-256 does not match the one recorded in bundle.json: the file was modified or "
            "replaced after training; refusing to load it (re-export the bundle from the run)",
            path=model_path,
        )
    data = model_path.read_bytes()
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means an unusable file
        raise ModelError(f"the model file is not a readable skops file ({exc})", path=model_path) from None
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise ModelError(
            f"the model file asks for types outside the trusted list: {unknown}; refusing to load it",
            path=model_path,
        )
    model = sio.loads(data, trusted=list(untrusted))
    saved = meta.get("package_versions", {})
    now = package_versions()
    differ = {k: (saved[k], now.get(k)) for k in saved if k != "python" and saved[k] != now.get(k)}
    if differ:
        log.warning("bundle made with other package versions (saved, installed): %s", differ)
    return ModelBundle(model=model, meta=meta, path=folder)
