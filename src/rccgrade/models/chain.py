"""The per-source selection chain of an arm: impute/encode → (ComBat) → (PCA) → selection steps → z-score.

Built from :class:`~rccgrade.features.settings.SelectionSettings` for one source (``clinical``, ``radiomics``,
``deep:<roi>``…); :func:`rccgrade.models.arms.build_arm` runs one chain per source inside a
:class:`~rccgrade.features.union.SourceUnion`. Every step is fitted on the training patients (or the training
fold) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from rccgrade.errors import ConfigError
from rccgrade.features.naming import source_prefix
from rccgrade.features.selection import (
    ComBat,
    CorrelationFilter,
    CorrelationGrouper,
    LassoSelector,
    MRMRSelector,
    NearConstantFilter,
    PrefixPCA,
    StabilityFilter,
    StabilitySelector,
    TabularPreprocessor,
    UnivariateFilter,
)
from rccgrade.models.settings import ModelSettings

__all__ = ["source_chain"]


def source_chain(
    source: str,
    settings: ModelSettings,
    seed: int,
    stability: Mapping[str, float] | None = None,
    centers: Mapping[str, str] | None = None,
) -> Pipeline:
    """The per-source chain: impute/encode → (ComBat) → (PCA) → selection steps → z-score."""
    sel = settings.selection
    prefix = source_prefix(source)
    clinical = source == "clinical"
    steps: list[tuple[str, Any]] = [("impute", TabularPreprocessor())]
    if sel.combat and not clinical:
        if centers is None:
            raise ConfigError("models.selection.combat is on but no centers were given; add a 'center' column")
        steps.append(("combat", ComBat(batches=dict(centers), empirical_bayes=sel.combat_empirical_bayes)))
    if sel.deep_pca is not None and source.startswith("deep:"):
        steps.append(("pca", PrefixPCA(prefix=prefix, n_components=sel.deep_pca)))
    for step in settings.clinical_steps if clinical else sel.steps:
        if step == "near_constant":
            steps.append((step, NearConstantFilter(max_frequency=sel.near_constant_max_frequency)))
        elif step == "stability":
            if source == "radiomics" and stability is not None:
                steps.append(
                    (
                        step,
                        StabilityFilter(
                            icc=dict(stability),
                            threshold=sel.stability_threshold,
                            keep_missing=sel.stability_keep_missing,
                            prefix="rad:",
                        ),
                    )
                )
        elif step == "univariate":
            steps.append(
                (
                    step,
                    UnivariateFilter(
                        test=sel.univariate_test,
                        alpha=sel.univariate_alpha,
                        min_features=sel.univariate_min_features,
                        max_features=sel.univariate_max_features,
                    ),
                )
            )
        elif step == "correlation":
            steps.append((step, CorrelationFilter(threshold=sel.correlation_threshold, method=sel.correlation_method)))
        elif step == "group":
            grouper = CorrelationGrouper(
                threshold=sel.group_threshold,
                method=sel.group_method,
                linkage=sel.group_linkage,
                representative=sel.group_representative,
            )
            steps.append((step, grouper))
        elif step == "lasso":
            lasso = LassoSelector(
                Cs=sel.lasso_cs,
                cv=sel.lasso_cv,
                max_features=sel.lasso_max_features,
                random_state=seed,
                l1_ratio=sel.lasso_l1_ratio,
            )
            steps.append((step, lasso))
        elif step == "stability_selection":
            stab = StabilitySelector(
                n_subsamples=sel.stability_subsamples,
                threshold=sel.stability_selection_threshold,
                max_false_positives=sel.stability_max_false_positives,
                l1_ratio=sel.lasso_l1_ratio,
                random_state=seed,
            )
            steps.append((step, stab))
        elif step == "mrmr":
            steps.append((step, MRMRSelector(n_features=sel.mrmr_features, method=sel.correlation_method)))
    steps.append(("scale", StandardScaler().set_output(transform="pandas")))
    return Pipeline(steps)
