"""Read the saved fitted models back for the report: the nomogram and the Grad-CAM head come from the bundles.

Nothing is rebuilt from ``selected/*.csv``: the nomogram is :func:`rccgrade.stats.nomogram_from_estimator`
applied to the bundle's own fitted scaler and classifier, and the Grad-CAM head is folded
(:func:`rccgrade.deep.cam.fold_linear_head`) from the deep arm's own fitted pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rccgrade.errors import RccgradeError
from rccgrade.features.naming import STACKED, arm_label, column_name, deep_feature_index
from rccgrade.study.outputs import ModelsOutput

#: A nomogram with more predictors than this is unreadable; such arms are not drawn.
MAX_NOMOGRAM_PREDICTORS = 12
#: Arms tried for the nomogram, in order.
NOMOGRAM_ARMS: tuple[str, ...] = ("stacked", "clinical", "combined")


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


def nomogram_model(models: ModelsOutput) -> tuple[Any, str] | None:
    """The nomogram of the first linear arm of :data:`NOMOGRAM_ARMS`, from its saved bundle.

    Returns:
        ``(nomogram, arm)``, or None when no arm is a readable linear model (at most
        :data:`MAX_NOMOGRAM_PREDICTORS` non-zero predictors).
    """
    from sklearn.pipeline import Pipeline

    from rccgrade.models.bundle import load_bundle
    from rccgrade.stats.nomogram import nomogram_from_estimator

    for arm in NOMOGRAM_ARMS:
        if arm not in models.arms:
            continue
        model = load_bundle(models.bundle_dir(arm)).model
        if arm == STACKED:
            meta = model.meta_
            names = [f"logit p({n})" for n, _ in model.estimators_]
            if not 0 < np.count_nonzero(meta.coef_) <= MAX_NOMOGRAM_PREDICTORS:
                continue
            if not set(names) <= set(models.nomogram_ranges):
                continue
            labels = {n: f"{arm_label(n[len('logit p(') : -1])} score (logit)" for n in names}
            return nomogram_from_estimator(meta, names, dict(models.nomogram_ranges), labels=labels), arm
        try:
            lin = linear_readout(model)
        except NotLinearError:
            continue
        if not 0 < np.count_nonzero(lin.classifier.coef_) <= MAX_NOMOGRAM_PREDICTORS:
            continue
        # a predictor's range: 0/1 for an indicator, else the training mean ± 2 SD (the fitted scaler's)
        ranges: dict[str, Any] = {}
        for n, m_, s_ in zip(lin.names, lin.scaler.mean_, lin.scaler.scale_, strict=True):
            ranges[n] = [0.0, 1.0] if n in lin.categorical else (float(m_ - 2 * s_), float(m_ + 2 * s_))
        readout = Pipeline([("scale", lin.scaler), ("clf", lin.classifier)])
        labels = {n: column_name(n) for n in lin.names}
        nomo = nomogram_from_estimator(readout, lin.names, ranges, labels=labels, categorical=lin.categorical)
        return nomo, arm
    return None


def explained_network(models: ModelsOutput, arm: str, roi: str, deep: Any, seed: int) -> tuple[Any, Any, Any]:
    """The network whose single logit is the deep arm's prediction, with its input normalisation.

    Fine-tuned networks are used as they are. For frozen features the backbone's head is replaced by the
    arm's own fitted selection, z-scoring and logistic coefficients (:func:`rccgrade.deep.cam.fold_linear_head`).

    Returns:
        ``(model, mean, std)``.

    Raises:
        NotLinearError: the arm is not a linear model on raw pooled features (PCA, ComBat, trees …).
    """
    from rccgrade.deep.cam import fold_linear_head
    from rccgrade.deep.weights import load_backbone
    from rccgrade.models.bundle import load_bundle

    if deep.settings.mode == "finetune" and roi in deep.model_files:
        from rccgrade.deep.finetune import load_finetuned

        _, info = load_backbone(deep.settings, seed=seed)
        return load_finetuned(deep.model_files[roi], deep.settings), info.mean, info.std
    lin = linear_readout(load_bundle(models.bundle_dir(arm)).model)
    transforming = [s for s in lin.steps if s in ("combat", "pca")]
    if transforming:
        raise NotLinearError(f"the {arm_label(arm)} arm transforms its features ({', '.join(transforming)})")
    idx = [deep_feature_index(n, roi) for n in lin.names]
    if any(i is None for i in idx):
        raise NotLinearError(f"the {arm_label(arm)} arm's inputs are not raw pooled features")
    model, info = load_backbone(deep.settings, seed=seed)
    clf = lin.classifier
    model = fold_linear_head(
        model,
        [int(i) for i in idx if i is not None],
        np.ravel(clf.coef_),
        lin.scaler.mean_,
        lin.scaler.scale_,
        float(np.ravel(clf.intercept_)[0]),
    )
    return model, info.mean, info.std
