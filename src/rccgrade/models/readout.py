"""A fitted one-source logistic arm read as ``z = (x − mean) / scale`` then logistic regression: its nomogram.

The study's nomogram (:mod:`rccgrade.study.fitted`) and the per-patient nomogram points of
``predict --report`` both come from here, so a patient's points lie on the same 0–100 scale as the
study's figure: a predictor's range is 0/1 for a one-hot indicator, else the training mean ± 2 SD (the fitted
scaler's), and :func:`rccgrade.stats.nomogram.nomogram_from_estimator` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rccgrade.errors import RccgradeError
from rccgrade.features.naming import column_name


class NotLinearError(RccgradeError):
    """The arm's fitted model is not a single standardised linear model (no nomogram or folded head)."""


@dataclass(frozen=True)
class LinearReadout:
    """A fitted arm seen as ``z = (x − mean) / scale`` on named predictors, then logistic regression.

    Attributes:
        names: Predictors (columns entering the final scaler), in order.
        scaler: The arm's fitted ``StandardScaler``.
        classifier: The arm's fitted ``LogisticRegression``.
        categorical: Predictors that are one-hot indicators (0/1).
        steps: Names of the fitted steps before the scaler.
    """

    names: list[str]
    scaler: Any
    classifier: Any
    categorical: list[str]
    steps: list[str]


def linear_readout(model: Any) -> LinearReadout:
    """The scaler and classifier of a one-source arm pipeline (``features`` → ``clf``).

    Raises:
        NotLinearError: not a pipeline of one source chain ending in a scaler, or a classifier without
            coefficients.
    """
    named = getattr(model, "named_steps", None)
    if not named or "features" not in named or "clf" not in named:
        raise NotLinearError("the model is not an arm pipeline (features → clf)")
    clf = named["clf"]
    if not hasattr(clf, "coef_") or not hasattr(clf, "intercept_"):
        raise NotLinearError(f"the classifier ({type(clf).__name__}) is not linear")
    chains = named["features"].transformers_
    if len(chains) != 1:
        raise NotLinearError(f"the model fuses {len(chains)} sources, each with its own scaler")
    chain = chains[0][2]
    scaler = chain.named_steps.get("scale")
    if scaler is None:
        raise NotLinearError("the source chain has no final scaler")
    impute = chain.named_steps.get("impute")
    onehot: set[str] = set()
    if impute is not None:
        for col in getattr(impute, "categorical_", []):
            onehot.update(f"{col}={lvl}" for lvl in impute.levels_[col][1:])
    names = [str(n) for n in getattr(scaler, "feature_names_in_", chain[:-1].get_feature_names_out())]
    return LinearReadout(
        names=names,
        scaler=scaler,
        classifier=clf,
        categorical=[n for n in names if n in onehot],
        steps=[name for name, _ in chain.steps[:-1]],
    )


def arm_nomogram(model: Any) -> Any:
    """The nomogram of a one-source logistic arm, on the study's 0–100 points scale.

    Returns:
        A :class:`rccgrade.stats.nomogram.Nomogram` over :attr:`LinearReadout.names`.

    Raises:
        NotLinearError: the arm is not a one-source standardised linear model.
    """
    from sklearn.pipeline import Pipeline

    from rccgrade.stats.nomogram import nomogram_from_estimator

    lin = linear_readout(model)
    ranges: dict[str, Any] = {}
    for n, m_, s_ in zip(lin.names, lin.scaler.mean_, lin.scaler.scale_, strict=True):
        ranges[n] = [0.0, 1.0] if n in lin.categorical else (float(m_ - 2 * s_), float(m_ + 2 * s_))
    readout = Pipeline([("scale", lin.scaler), ("clf", lin.classifier)])
    labels = {n: column_name(n) for n in lin.names}
    return nomogram_from_estimator(readout, lin.names, ranges, labels=labels, categorical=lin.categorical)


def nomogram_inputs(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """The values a one-source arm's scaler receives (imputed, encoded, selected; original units).

    Args:
        model: A fitted one-source arm pipeline.
        features: FeatureTable of the patients (rows = patients).

    Returns:
        Patients × :attr:`LinearReadout.names`.
    """
    lin = linear_readout(model)
    union = model.named_steps["features"]
    name, _, chain = union.transformers_[0]
    pre = chain[:-1].transform(features[union.columns_[name]])
    arr = pre.to_numpy(dtype=np.float64) if isinstance(pre, pd.DataFrame) else np.asarray(pre, dtype=np.float64)
    return pd.DataFrame(arr, index=features.index, columns=lin.names)


def nomogram_points(model: Any, features: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """Each patient's nomogram points per predictor and ``total``, and the nomogram they come from.

    ``nomogram.probability_from_points(total)`` equals the arm's predicted probability for each patient.

    Raises:
        NotLinearError: the arm has no nomogram (see :func:`arm_nomogram`).
    """
    nomo = arm_nomogram(model)
    return nomo, nomo.points(nomogram_inputs(model, features))


def folded_network(model: Any, roi: str, deep_settings: Any, seed: int) -> tuple[Any, Any, Any]:
    """The frozen backbone whose head is the deep arm's own selection, z-scoring and logistic coefficients.

    Its single logit is the arm's prediction, so Grad-CAM of it explains this model
    (:func:`rccgrade.deep.cam.fold_linear_head`).

    Args:
        model: The fitted deep arm (one source: ``deep:<roi>``).
        roi: The arm's ROI.
        deep_settings: The :class:`~rccgrade.deep.settings.DeepSettings` its features were made with.
        seed: The seed the features were made with (random-initialised backbones).

    Returns:
        ``(network, mean, std)``: the network and its input normalisation.

    Raises:
        NotLinearError: the arm is not a linear model on raw pooled features (PCA, ComBat, trees …).
    """
    from rccgrade.deep.cam import fold_linear_head
    from rccgrade.deep.weights import load_backbone
    from rccgrade.features.naming import arm_label, deep_arm, deep_feature_index

    lin = linear_readout(model)
    arm = arm_label(deep_arm(roi))
    transforming = [s for s in lin.steps if s in ("combat", "pca")]
    if transforming:
        raise NotLinearError(f"the {arm} arm transforms its features ({', '.join(transforming)})")
    idx = [deep_feature_index(n, roi) for n in lin.names]
    if any(i is None for i in idx):
        raise NotLinearError(f"the {arm} arm's inputs are not raw pooled features")
    network, info = load_backbone(deep_settings, seed=seed)
    clf = lin.classifier
    network = fold_linear_head(
        network,
        [int(i) for i in idx if i is not None],
        np.ravel(clf.coef_),
        lin.scaler.mean_,
        lin.scaler.scale_,
        float(np.ravel(clf.intercept_)[0]),
    )
    return network, info.mean, info.std
