"""Read the saved fitted models back for the report: the nomogram and the Grad-CAM head come from the bundles.

Nothing is rebuilt from ``selected/*.csv``: the nomogram is :func:`rccgrade.stats.nomogram_from_estimator`
applied to the bundle's own fitted scaler and classifier, and the Grad-CAM head is folded
(:func:`rccgrade.deep.cam.fold_linear_head`) from the deep arm's own fitted pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rccgrade.features.naming import STACKED, arm_label
from rccgrade.models.readout import LinearReadout, NotLinearError, arm_nomogram, folded_network, linear_readout
from rccgrade.study.outputs import ModelsOutput

#: A nomogram with more predictors than this is unreadable; such arms are not drawn.
MAX_NOMOGRAM_PREDICTORS = 12
#: Arms tried for the nomogram, in order.
NOMOGRAM_ARMS: tuple[str, ...] = ("stacked", "clinical", "combined")


# the one-source linear readout lives in the models package (the per-patient pages use it too); re-exported here
__all__ = ["LinearReadout", "NotLinearError", "explained_network", "linear_readout", "nomogram_model"]


def nomogram_model(models: ModelsOutput) -> tuple[Any, str] | None:
    """The nomogram of the first linear arm of :data:`NOMOGRAM_ARMS`, from its saved bundle.

    Returns:
        ``(nomogram, arm)``, or None when no arm is a readable linear model (at most
        :data:`MAX_NOMOGRAM_PREDICTORS` non-zero predictors).
    """
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
        return arm_nomogram(model), arm  # ranges: 0/1 for an indicator, else the training mean ± 2 SD
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
    from rccgrade.deep.weights import load_backbone
    from rccgrade.models.bundle import load_bundle

    if deep.settings.mode == "finetune" and roi in deep.model_files:
        from rccgrade.deep.finetune import load_finetuned

        _, info = load_backbone(deep.settings, seed=seed)
        return load_finetuned(deep.model_files[roi], deep.settings), info.mean, info.std
    return folded_network(load_bundle(models.bundle_dir(arm)).model, roi, deep.settings, seed)
