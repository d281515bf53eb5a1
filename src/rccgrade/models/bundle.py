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

Since bundle format 2 the whole of ``bundle.json`` is guarded too:

3. ``checksums.json`` records the SHA-256 of ``bundle.json`` and of ``model.skops``; a ``bundle.json`` edited
   after export (a threshold changed by hand, a corrupted copy) is refused before it is parsed.
4. ``bundle.json`` is parsed by a pydantic model (:class:`BundleMeta`): required keys, a finite threshold in
   [0, 1], an arm from the known set, hexadecimal checksums, the training distribution of every feature.
   Anything malformed is a one-line :class:`~rccgrade.errors.ModelError` naming the file and the field.

The checksums detect accidental or careless changes; they are not a signature (whoever can rewrite both files
can forge them), which is why guard 2 never relies on them.
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
from pydantic import (
    ValidationError,
)

from rccgrade.cache import file_checksum
from rccgrade.errors import ModelError
from rccgrade.models.bundle_schema import (  # noqa: F401 - moved there; names kept importable from here
    _SHA256,
    ARM_PATTERN,
    BUNDLE_FORMAT,
    CHECKSUM_FILE,
    META_FILE,
    MODEL_FILE,
    TRUSTED_TYPES,
    BundleMeta,
    Count,
    FeatureStats,
    FiniteFloat,
    Probability,
)

log = logging.getLogger(__name__)

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

    @property
    def training_distribution(self) -> dict[str, FeatureStats]:
        """Feature → its training distribution (numeric features with at least one training value)."""
        return {
            name: FeatureStats.model_validate(stats)
            for name, stats in dict(self.meta.get("training_distribution") or {}).items()
        }


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


def feature_distribution(X: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, float | int]]:
    """Per-feature robust statistics of the training patients (see :class:`FeatureStats`).

    Args:
        X: Training FeatureTable (training patients only: nothing from a test patient may enter a bundle).
        columns: Features to describe; non-numeric (categorical) columns and columns without a finite training
            value are left out.

    Returns:
        Feature → ``{"n", "median", "mad", "q1", "q3", "min", "max"}`` (JSON-able floats).
    """
    out: dict[str, dict[str, float | int]] = {}
    for name in columns:
        col = X[name]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            continue
        values = col.to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        median = float(np.median(values))
        q1, q3 = (float(v) for v in np.percentile(values, [25.0, 75.0]))
        out[name] = {
            "n": int(values.size),
            "median": median,
            "mad": float(np.median(np.abs(values - median))),
            "q1": min(max(q1, float(values.min())), median),
            "q3": max(min(q3, float(values.max())), median),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out


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
        The bundle folder (``model.skops``, ``bundle.json`` with the training distribution of every numeric
        feature, ``checksums.json``).

    Raises:
        ModelError: the arm name or threshold would make an invalid bundle (e.g. a NaN threshold).
    """
    import skops.io as sio

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    tmp = model_path.with_suffix(".tmp")
    sio.dump(model, tmp)
    tmp.replace(model_path)
    y_arr = np.asarray(y_train).astype(np.int64)
    names = required_features(model)
    meta = {
        "format": BUNDLE_FORMAT,
        "arm": arm,
        "feature_names": names,
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
        "training_distribution": feature_distribution(X_train, names),
        "package_versions": package_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "extra": _jsonable(extra or {}),
    }
    try:
        BundleMeta.model_validate(json.loads(json.dumps(meta, default=str)))
    except ValidationError as exc:
        raise ModelError(f"refusing to export an invalid bundle: {_one_line(exc)}", path=folder) from None
    meta_path = folder / META_FILE
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str, allow_nan=False))
    sums = {META_FILE: file_checksum(meta_path), MODEL_FILE: meta["model_sha256"]}
    (folder / CHECKSUM_FILE).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")
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
        extra={
            "best_params": result.best_params.get(arm, {}),
            "training_roc": training_roc(result.y_train, result.oof_proba[arm].reindex(result.y_train.index)),
            "logit_covariance": _logit_covariance(result.models[arm], table.loc[result.train_ids]),
            "oof_calibration": oof_calibration(result.y_train, result.oof_proba[arm].reindex(result.y_train.index)),
            "fusion": getattr(result, "fusion", {}).get(arm, {}),
        },
    )


def _logit_covariance(model: Any, X_train: pd.DataFrame) -> list[list[float]] | None:
    """Covariance of a logistic arm's parameters on its training patients (see models.explain), JSON-ready."""
    from rccgrade.models.explain import logistic_covariance

    cov = logistic_covariance(model, X_train)
    return None if cov is None or not np.all(np.isfinite(cov)) else cov.tolist()


def oof_calibration(y: pd.Series, oof: pd.Series) -> dict[str, list[float]] | None:
    """Training patients' out-of-fold probabilities and labels (no ids), for :mod:`rccgrade.models.score_interval`."""
    p = np.asarray(oof, dtype=np.float64)
    if p.size == 0 or not np.all(np.isfinite(p)):
        return None
    return {"oof": p.tolist(), "y": np.asarray(y, dtype=np.int64).tolist()}


def training_roc(y: pd.Series, oof: pd.Series) -> dict[str, list[float]]:
    """The ROC of the training patients' out-of-fold probabilities, for placing a new patient on it.

    Returns:
        ``{"fpr", "tpr", "thresholds"}`` of :func:`sklearn.metrics.roc_curve` (thresholds decreasing; the
        first, +inf in scikit-learn, is stored as 1 + 1e-9 so the file stays JSON); ``tpr[i]``/``fpr[i]`` are
        the training sensitivity / 1 − specificity of the rule ``probability >= thresholds[i]``. Empty lists
        when the OOF probabilities are incomplete.
    """
    from sklearn.metrics import roc_curve

    p = np.asarray(oof, dtype=np.float64)
    lab = np.asarray(y, dtype=np.int64)
    if p.size == 0 or not np.all(np.isfinite(p)) or np.unique(lab).size < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thr = roc_curve(lab, p, drop_intermediate=False)
    thr = np.where(np.isfinite(thr), thr, 1.0 + 1e-9)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def roc_position(roc: dict[str, list[float]], probability: float) -> tuple[float, float] | None:
    """Training (sensitivity, specificity) of the rule ``probability >= p`` (None without a stored ROC)."""
    thr = np.asarray(roc.get("thresholds") or [], dtype=np.float64)
    if thr.size == 0:
        return None
    i = int(np.flatnonzero(thr >= probability).max()) if np.any(thr >= probability) else 0
    return float(roc["tpr"][i]), 1.0 - float(roc["fpr"][i])


def _one_line(exc: ValidationError) -> str:
    """Pydantic errors as one line: ``field 'threshold': Input should be … (got 'abc')``."""
    parts = []
    for err in exc.errors()[:4]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {str(got)[:40]!r})"
        parts.append(f"field '{loc}': {err.get('msg', 'invalid')}{shown}")
    more = f"; and {exc.error_count() - 4} more" if exc.error_count() > 4 else ""
    return "; ".join(parts) + more


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0][:120]
        raise ModelError(f"{what} is not valid JSON ({detail}); re-export the bundle", path=path) from None


_REEXPORT = "re-export the bundle from its run with this rccgrade version"


def read_bundle_meta(folder: str | Path) -> BundleMeta:
    """Verify ``checksums.json`` against ``bundle.json`` and parse ``bundle.json`` (the model is not read).

    Raises:
        ModelError: a missing file, a ``bundle.json`` whose SHA-256 differs from ``checksums.json``, an older
            bundle format, or any malformed field (one line naming the file and the field).
    """
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ModelError(f"not a model bundle: {META_FILE} is missing; pass the bundle folder", path=folder)
    raw = _read_json(meta_path, META_FILE)
    if not isinstance(raw, dict):
        raise ModelError(
            f"{META_FILE} holds a JSON {type(raw).__name__}, not an object with the bundle's fields; {_REEXPORT}",
            path=meta_path,
        )
    if raw.get("format") != BUNDLE_FORMAT:
        raise ModelError(
            f"field 'format': bundle format {str(raw.get('format'))[:20]!r} is not the supported format "
            f"{BUNDLE_FORMAT} (format 1 bundles carry no training distribution and no {META_FILE} checksum); "
            f"{_REEXPORT}",
            path=meta_path,
        )
    sums_path = folder / CHECKSUM_FILE
    if not sums_path.is_file():
        raise ModelError(f"{CHECKSUM_FILE} is missing, so {META_FILE} cannot be verified; {_REEXPORT}", path=sums_path)
    sums = _read_json(sums_path, CHECKSUM_FILE)
    if not isinstance(sums, dict) or not all(
        isinstance(sums.get(k), str) and _SHA256.fullmatch(sums[k]) for k in (META_FILE, MODEL_FILE)
    ):
        raise ModelError(
            f"field '{META_FILE}'/'{MODEL_FILE}': {CHECKSUM_FILE} must map both files to a SHA-256; {_REEXPORT}",
            path=sums_path,
        )
    if file_checksum(meta_path) != sums[META_FILE]:
        raise ModelError(
            f"the SHA-256 of {META_FILE} does not match the one in {CHECKSUM_FILE}: the file was edited or damaged "
            f"after export; refusing to use it ({_REEXPORT})",
            path=meta_path,
        )
    try:
        meta = BundleMeta.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{META_FILE} is malformed: {_one_line(exc)}; {_REEXPORT}", path=meta_path) from None
    if meta.model_sha256 != sums[MODEL_FILE]:
        raise ModelError(
            f"field 'model_sha256' differs from the model checksum in {CHECKSUM_FILE}; {_REEXPORT}", path=meta_path
        )
    return meta


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle, refusing tampered or malformed files and unexpected types.

    Raises:
        ModelError: missing files; a ``bundle.json`` whose SHA-256 differs from ``checksums.json`` or that is
            malformed (:func:`read_bundle_meta`); a model file whose SHA-256 differs from ``bundle.json``; a model
            needing types outside skops' defaults and :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    folder = Path(path)
    parsed = read_bundle_meta(folder)
    meta = parsed.model_dump(mode="json")
    model_path = folder / parsed.model_file
    if not model_path.is_file():
        raise ModelError("the bundle's model file is missing", path=model_path)
    digest = file_checksum(model_path)
    if digest != parsed.model_sha256:
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
    try:
        model = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:  # noqa: BLE001 - a file that passed the checks but does not rebuild
        raise ModelError(
            f"the model file cannot be rebuilt ({type(exc).__name__}: {exc}); {_REEXPORT}", path=model_path
        ) from None
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelError(
            f"the model file holds a {type(model).__name__}, not a classifier; {_REEXPORT}", path=model_path
        )
    saved = parsed.package_versions
    now = package_versions()
    differ = {k: (saved[k], now.get(k)) for k in saved if k != "python" and saved[k] != now.get(k)}
    if differ:
        log.warning("bundle made with other package versions (saved, installed): %s", differ)
    return ModelBundle(model=model, meta=meta, path=folder)
