"""Per-patient feature contributions of a fitted arm: why the model gave this patient this probability.

Every arm is ``Pipeline([("features", SourceUnion), ("clf", classifier)])`` (:mod:`rccgrade.models.arms`).
The union's output — imputed, encoded, selected, z-scored features, named after the original FeatureTable
columns (a one-hot level is ``<column>=<level>``; a PCA component of a deep source is
``deep:<roi>:pcNNN`` and is reported *as a component*, never smeared back onto 2,048 inputs) — is what the
classifier sees, so contributions are computed there, exactly:

* **logistic regression** — ``coefficient × z-scored value`` per feature; base = intercept. Contributions +
  base sum to the model's logit (``decision_function``) to floating-point precision for every patient.
* **XGBoost / LightGBM** — the boosters' own exact TreeSHAP (``pred_contribs=True`` /
  ``pred_contrib=True``); base = expected margin. Sum = the margin (logit) to ~1e-6.
* **random forest** — TreeSHAP of :mod:`shap` (``TreeExplainer``, path-dependent) on the probability of
  high grade; base = the forest's mean training-leaf probability. Sum = ``predict_proba`` (probability
  scale, ``scale="probability"``), because a forest averages probabilities, not logits.
* **SVM** — no exact decomposition of an RBF-kernel SVM with Platt scaling exists; asking raises
  :class:`~rccgrade.errors.ModelError` rather than returning an approximation labelled as exact.
* **stacked** — the meta-model is ``b0 + Σ_a w_a · logit(p_a)``: each base arm on the logit scale contributes
  ``w_a × its own feature contributions`` (columns ``[<arm>] <feature>``) and ``w_a × its base`` goes into
  the base; a base arm without a logit decomposition (random forest, SVM) or whose probability hit the
  clipping at 1e-6 contributes one column ``[<arm>]`` = ``w_a · logit(p_a)``. The total is still exact.

Missing values imputed by the pipeline are reported (``imputed``), so a page can say "value imputed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from rccgrade.errors import ModelError
from rccgrade.models.arms import _EPS, StackedClassifier, _logit
from rccgrade.models.classifiers import BalancedLGBMClassifier, BalancedXGBClassifier, CalibratedSVM

Scale = Literal["logit", "probability"]


@dataclass(frozen=True)
class Contributions:
    """Per-patient contributions of one arm.

    Attributes:
        arm: Arm name (``""`` when unknown).
        classifier: ``logistic``, ``xgboost``, ``lightgbm``, ``random_forest`` or ``stacked``.
        method: How they were computed, in words (for reports).
        scale: ``logit`` (contributions add up to the log-odds) or ``probability``.
        values: Patients × model features; the contribution of each feature on ``scale``.
        inputs: Patients × model features; the value the classifier saw (z-scored for single arms;
            NaN for stacked columns).
        imputed: Patients × model features; True where the patient's raw value was missing and imputed
            (one-hot columns: the categorical variable was missing).
        base: Per patient, the part not attributed to any feature (intercept / expected value).
        output: Per patient, ``base + values.sum(axis=1)``: the model's logit or probability.
        sources: Model feature → source, from the feature's prefix (``clinical``, ``radiomics``, ``kinetic``,
            ``deep:<roi>`` …, :func:`feature_source`); an undecomposed stacked column ``[<arm>]``: the arm.
    """

    arm: str
    classifier: str
    method: str
    scale: Scale
    values: pd.DataFrame
    inputs: pd.DataFrame
    imputed: pd.DataFrame
    base: pd.Series
    output: pd.Series
    sources: dict[str, str]

    def probability(self) -> pd.Series:
        """Probability of high grade implied by ``output``."""
        if self.scale == "probability":
            return self.output.rename("probability")
        return pd.Series(1.0 / (1.0 + np.exp(-self.output.to_numpy())), index=self.output.index, name="probability")

    def top(self, patient_id: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` largest absolute contributions of one patient (feature, contribution, value, source)."""
        if patient_id not in self.values.index:
            raise ModelError(f"no contributions for patient {patient_id!r}", patient_id=patient_id)
        row = self.values.loc[patient_id]
        order = row.abs().sort_values(ascending=False, kind="mergesort").index[:n]
        return pd.DataFrame(
            {
                "feature": list(order),
                "contribution": row[order].to_numpy(),
                "value": self.inputs.loc[patient_id, order].to_numpy(),
                "imputed": self.imputed.loc[patient_id, order].to_numpy(dtype=bool),
                "source": [self.sources.get(f, "") for f in order],
            }
        )


def _classifier_kind(clf: Any) -> str:
    if isinstance(clf, LogisticRegression):
        return "logistic"
    if isinstance(clf, BalancedXGBClassifier):
        return "xgboost"
    if isinstance(clf, BalancedLGBMClassifier):
        return "lightgbm"
    if isinstance(clf, RandomForestClassifier):
        return "random_forest"
    if isinstance(clf, CalibratedSVM):
        return "svm"
    return type(clf).__name__


def _imputed_mask(X: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """True where the model feature's raw input was missing for the patient (imputed in the pipeline)."""
    mask = pd.DataFrame(False, index=X.index, columns=names)
    for name in names:
        raw = name.split("=", 1)[0] if "=" in name and name.split("=", 1)[0] in X.columns else name
        if raw in X.columns:
            mask[name] = X[raw].isna().to_numpy()
    return mask


def feature_source(feature: str, fallback: str) -> str:
    """The source of a model feature from its FeatureTable prefix, generically (``clin:`` → ``clinical``,
    ``rad:`` → ``radiomics``, ``kin:`` → ``kinetic``, ``deep:<roi>:`` → ``deep:<roi>``, any future prefix that
    :func:`rccgrade.features.naming.column_source` knows); a stacked column ``[<arm>] <feature>`` is traced to
    its feature. ``fallback`` (the union's or base arm's name) when the name carries no known prefix.
    """
    from rccgrade.errors import ConfigError
    from rccgrade.features.naming import column_source

    name = feature.split("] ", 1)[1] if feature.startswith("[") and "] " in feature else feature
    try:
        return column_source(name.split("=", 1)[0])
    except ConfigError:
        return fallback


def _sources(union: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, _, chain in union.transformers_:
        for feat in chain.get_feature_names_out():
            out[str(feat)] = feature_source(str(feat), name)
    return out


def _single_arm(model: Any, X: pd.DataFrame, arm: str) -> Contributions:
    try:
        union = model.named_steps["features"]
        clf = model.named_steps["clf"]
    except (AttributeError, KeyError) as exc:
        raise ModelError(f"arm {arm!r}: not a fitted rccgrade arm pipeline ({type(model).__name__})") from exc
    Z = union.transform(X)
    names = [str(c) for c in Z.columns]
    z = Z.to_numpy(dtype=np.float64)
    kind = _classifier_kind(clf)
    scale: Scale = "logit"
    if kind == "logistic":
        coef = np.asarray(clf.coef_, dtype=np.float64).ravel()
        values = z * coef
        base = np.full(len(z), float(np.ravel(clf.intercept_)[0]))
        method = "coefficient × z-scored value (exact; sums with the intercept to the logit)"
    elif kind == "xgboost":
        import xgboost

        raw = clf.model_.get_booster().predict(xgboost.DMatrix(z), pred_contribs=True)
        values, base = raw[:, :-1], raw[:, -1]
        method = "XGBoost TreeSHAP (pred_contribs; exact, sums to the margin)"
    elif kind == "lightgbm":
        raw = np.asarray(clf.model_.predict(z, pred_contrib=True), dtype=np.float64)
        values, base = raw[:, :-1], raw[:, -1]
        method = "LightGBM TreeSHAP (pred_contrib; exact, sums to the raw score)"
    elif kind == "random_forest":
        import shap

        explainer = shap.TreeExplainer(clf)
        sv = np.asarray(explainer.shap_values(z, check_additivity=True))
        if sv.ndim == 3:  # (n, features, classes)
            values = sv[:, :, 1]
        else:  # pragma: no cover - older shap returned a list per class
            values = np.asarray(sv[1])
        base = np.full(len(z), float(np.ravel(explainer.expected_value)[1]))
        scale = "probability"
        method = "shap TreeExplainer (path-dependent TreeSHAP on P(high grade); exact, sums to the probability)"
    elif kind == "svm":
        raise ModelError(
            f"arm {arm!r} uses an RBF SVM with Platt scaling, which has no exact per-feature decomposition; "
            "refit the arm with classifier logistic, random_forest, xgboost or lightgbm to get contributions"
        )
    else:
        raise ModelError(f"arm {arm!r}: no contribution method for classifier {kind}")
    values = np.asarray(values, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    frame = pd.DataFrame(values, index=X.index, columns=names)
    base_s = pd.Series(base, index=X.index, name="base")
    return Contributions(
        arm=arm,
        classifier=kind,
        method=method,
        scale=scale,
        values=frame,
        inputs=pd.DataFrame(z, index=X.index, columns=names),
        imputed=_imputed_mask(X, names),
        base=base_s,
        output=(base_s + frame.sum(axis=1)).rename("output"),
        sources=_sources(union),
    )


def _stacked(model: StackedClassifier, X: pd.DataFrame, arm: str) -> Contributions:
    weights = np.asarray(model.meta_.coef_, dtype=np.float64).ravel()
    base = pd.Series(float(np.ravel(model.meta_.intercept_)[0]), index=X.index, name="base")
    cols: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    imputed: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    limit = float(np.log((1 - _EPS) / _EPS))
    for (name, est), w in zip(model.estimators_, weights, strict=True):
        p = est.predict_proba(X)[:, 1]
        logit = _logit(p)
        sub: Contributions | None = None
        try:
            sub = _single_arm(est, X, name)
        except ModelError:
            sub = None
        # the meta-model sees the clipped logit: decompose only where no patient was clipped
        if sub is not None and sub.scale == "logit" and np.all(np.abs(sub.output.to_numpy()) < limit):
            for feat in sub.values.columns:
                key = f"[{name}] {feat}"
                cols[key] = w * sub.values[feat].to_numpy()
                inputs[key] = sub.inputs[feat].to_numpy()
                imputed[key] = sub.imputed[feat].to_numpy()
                sources[key] = sub.sources.get(feat, name)
            base = base + w * sub.base.to_numpy()
        else:
            key = f"[{name}]"
            cols[key] = w * logit
            inputs[key] = logit
            imputed[key] = np.zeros(len(X), dtype=bool)
            sources[key] = name
    values = pd.DataFrame(cols, index=X.index)
    return Contributions(
        arm=arm,
        classifier="stacked",
        method="meta-model weight × each arm's own contributions (exact; sums to the meta-model logit)",
        scale="logit",
        values=values,
        inputs=pd.DataFrame(inputs, index=X.index),
        imputed=pd.DataFrame(imputed, index=X.index),
        base=base.rename("base"),
        output=(base + values.sum(axis=1)).rename("output"),
        sources=sources,
    )


def contributions(model: Any, features: pd.DataFrame, arm: str = "") -> Contributions:
    """Per-patient feature contributions of a fitted arm (see the module docstring for each classifier).

    Args:
        model: A fitted arm (``ModelBundle.model``, ``ArmsResult.models[arm]``).
        features: FeatureTable of the patients (rows = patients; the arm picks its columns).
        arm: Arm name, for messages and reports.

    Returns:
        :class:`Contributions`; ``output`` equals the model's logit (or probability for random forests).

    Raises:
        ModelError: SVM arms (no exact decomposition), foreign estimators, missing feature columns.
    """
    if not isinstance(features, pd.DataFrame):
        raise ModelError("contributions need a FeatureTable DataFrame (patients × 'source:name' columns)")
    if isinstance(model, StackedClassifier):
        return _stacked(model, features, arm or "stacked")
    return _single_arm(model, features, arm)


@dataclass(frozen=True)
class ArmContributionSummary:
    """Cohort-level summary of one arm's contributions (for the study report).

    Attributes:
        contributions: The per-patient contributions.
        features: Per model feature: ``feature``, ``source``, ``mean_abs`` (mean |contribution|),
            ``mean`` (signed mean), ``share`` (``mean_abs`` / total), sorted by ``mean_abs`` descending.
        sources: Per source: ``source``, ``mean_abs`` (sum over its features), ``share`` (of the arm's total).
    """

    contributions: Contributions
    features: pd.DataFrame
    sources: pd.DataFrame


def arm_contribution_summary(bundle_or_model: Any, features: pd.DataFrame, arm: str = "") -> ArmContributionSummary:
    """Contributions of an arm on a cohort, summarised per feature and per source.

    Args:
        bundle_or_model: A :class:`~rccgrade.models.bundle.ModelBundle` or a fitted arm estimator.
        features: FeatureTable of the patients to explain (training or test patients).
        arm: Arm name (taken from the bundle when given one).
    """
    model = getattr(bundle_or_model, "model", bundle_or_model)
    meta = getattr(bundle_or_model, "meta", None)
    if meta is not None and not arm:
        arm = str(getattr(bundle_or_model, "arm", ""))
    contrib = contributions(model, features, arm)
    mean_abs = contrib.values.abs().mean(axis=0)
    total = float(mean_abs.sum())
    feat = pd.DataFrame(
        {
            "feature": list(contrib.values.columns),
            "source": [contrib.sources.get(c, "") for c in contrib.values.columns],
            "mean_abs": mean_abs.to_numpy(),
            "mean": contrib.values.mean(axis=0).to_numpy(),
            "share": (mean_abs / total).to_numpy() if total > 0 else np.zeros(len(mean_abs)),
        }
    ).sort_values(["mean_abs", "feature"], ascending=[False, True], kind="mergesort", ignore_index=True)
    src = feat.groupby("source", sort=True)["mean_abs"].sum().reset_index()
    src["share"] = src["mean_abs"] / total if total > 0 else 0.0
    src = src.sort_values(["mean_abs", "source"], ascending=[False, True], kind="mergesort", ignore_index=True)
    return ArmContributionSummary(contributions=contrib, features=feat, sources=src)


def source_share_table(summaries: Mapping[str, ArmContributionSummary]) -> pd.DataFrame:
    """Arms × sources table of each source's share of an arm's mean |contribution| (rows sum to 1)."""
    rows = {arm: s.sources.set_index("source")["share"] for arm, s in summaries.items()}
    table = pd.DataFrame(rows).T.fillna(0.0)
    table.index.name = "arm"
    return table.loc[:, sorted(table.columns)]


# --------------------------------------------------------------------------------------------------
# uncertainty of a logistic arm's probability
# --------------------------------------------------------------------------------------------------


def logistic_covariance(model: Any, X_train: pd.DataFrame) -> np.ndarray | None:
    """Approximate covariance of a logistic arm's (intercept, coefficients), from the training patients.

    The inverse Hessian of the penalised negative log-likelihood at the fitted coefficients,
    ``(Z1ᵀ W Z1 + diag(0, 1/C, …, 1/C))⁻¹`` with ``Z1 = [1, Z]`` the training design (the arm's own imputed,
    selected, z-scored features), ``W = diag(p(1 − p))`` and scikit-learn's L2 penalty ``‖w‖² / (2C)``
    (the intercept is not penalised). With a large C it equals the usual Wald covariance. It is conditional on
    the selected features: the uncertainty of the selection itself is *not* included.

    Returns:
        Array (k + 1, k + 1) in the order (intercept, features of ``union.get_feature_names_out()``); None
        when the arm is not a single-source-union logistic regression with an L2 (or no) penalty.
    """
    if isinstance(model, StackedClassifier) or not hasattr(model, "named_steps"):
        return None
    clf = model.named_steps.get("clf")
    if not isinstance(clf, LogisticRegression):
        return None
    l1 = getattr(clf, "l1_ratio", None)
    penalty = getattr(clf, "penalty", "deprecated")
    if (l1 not in (None, 0, 0.0)) or penalty not in ("l2", None, "none", "deprecated"):
        return None
    Zdf = model.named_steps["features"].transform(X_train)
    Z = Zdf.to_numpy(dtype=np.float64)
    Z1 = np.column_stack([np.ones(len(Z)), Z])
    p = clf.predict_proba(Zdf)[:, 1]
    H = (Z1 * (p * (1 - p))[:, None]).T @ Z1
    if penalty is not None and penalty != "none" and np.isfinite(clf.C):
        H[1:, 1:] += np.eye(Z.shape[1]) / float(clf.C)
    try:
        return np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None


def probability_interval(model: Any, covariance: np.ndarray, X: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Wald interval of P(high grade) on the logit scale, mapped back: ``expit(η ± z·√(z1ᵀ Σ z1))``.

    Returns:
        DataFrame (patients × ``lower``, ``upper``, ``se_logit``).
    """
    from scipy.stats import norm

    Zdf = model.named_steps["features"].transform(X)
    Z1 = np.column_stack([np.ones(len(Zdf)), Zdf.to_numpy(dtype=np.float64)])
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.shape != (Z1.shape[1], Z1.shape[1]):
        raise ModelError(f"covariance shape {cov.shape} does not match the arm's {Z1.shape[1]} parameters")
    eta = model.named_steps["clf"].decision_function(Zdf)
    se = np.sqrt(np.einsum("ij,jk,ik->i", Z1, cov, Z1))
    q = float(norm.ppf(0.5 + level / 2))
    expit = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    return pd.DataFrame({"lower": expit(eta - q * se), "upper": expit(eta + q * se), "se_logit": se}, index=X.index)
