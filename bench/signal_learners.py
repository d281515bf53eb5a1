"""Does another learner on the same features close the learner's share of the oracle gap?

``bench/signal_curve.py`` and the ``factor-route`` diagnostic put about 0.02 of the gap between rccgrade's extended
``combined`` and the oracle in the learner (finding the grade's direction from 347 binary labels). This benchmark
asks whether a different linear or low-rank learner finds it: on the splits of ``bench/grade_signal.py`` (10
stratified 7:3 splits per cohort, seeds 1000…), with every extended feature (``rad:``, ``kin:``, ``clin:``), each
learner is fitted on the training split only (median imputation and z-scoring inside it; every
hyper-parameter chosen by 5-fold CV AUC on the training patients) and scored on the test patients:

* ``ridge``: an L2 logistic regression over the ``extdense`` grid (:func:`bench.signal_curve.ridge_lr`), the
  reference: it is ``extdense:combined`` without the package around it;
* ``lasso``: an L1 logistic regression (liblinear, C from 10^-2.5 to 1);
* ``enet``: an elastic-net logistic regression (saga, l1 ratio 0.1 or 0.5, C from 10^-3 to 1);
* ``ridge+lasso``: the mean of the two models' test ranks (an equal-weight ensemble, nothing fitted);
* ``pls``: PLS-DA, a partial-least-squares regression of the 0/1 label with k ∈ {1, 2, 3, 4, 6, 8} components
  (supervised latent factors);
* ``spca``: supervised PCA (Bair et al. 2006): the m ∈ {30, 100, 300} features most correlated with the label,
  their first k ∈ {2, 4, 8, 16} principal components, a logistic regression;
* ``pca``: the first k ∈ {8, 16, 32, 64} principal components of every feature, a logistic regression
  (unsupervised latent factors);
* ``ridge-clip``: ``ridge`` with every feature clipped at its training 1st and 99th percentiles before
  z-scoring (:class:`bench.signal_factors.ClipQuantiles`; heavy-tailed radiomics features);
* ``ridge-quantile``: ``ridge`` on features mapped to normal scores by their training quantiles
  (``QuantileTransformer``, 200 quantiles);
* ``lightgbm``: rccgrade's ``classifier: lightgbm`` (balanced class weights) with its built-in grid, on every
  feature (a non-linear learner).

The hand-written chain (``plain``), ``extdense:combined``, ``extg:combined`` and ``factor-route`` are read from
``bench/results/signal.json`` (the same splits). Every comparison is paired on the split. Writes
``bench/results/signal_learners.json`` and ``.md``.

Usage::

    .venv/bin/python bench/signal_learners.py --cache /work/bench_cache/s5 --tag extdemo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench.grade_signal import ROOT, add_table_args, cohort_tables, machine_info, make_splits  # noqa: E402
from bench.signal_curve import ridge_lr  # noqa: E402
from bench.signal_factors import ClipQuantiles, numeric  # noqa: E402
from bench.signal_report import diff_stats, format_diff  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin  # noqa: E402
from sklearn.cross_decomposition import PLSRegression  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import QuantileTransformer, StandardScaler  # noqa: E402
from sklearn.utils.multiclass import unique_labels  # noqa: E402
from sklearn.utils.validation import check_is_fitted, validate_data  # noqa: E402

LEARNERS = ("ridge", "lasso", "enet", "ridge+lasso", "pls", "spca", "pca", "ridge-clip", "ridge-quantile", "lightgbm")
REFERENCES = ("plain", "extdense:combined", "extg:combined", "factor-route")


class PLSScore(ClassifierMixin, BaseEstimator):
    """PLS-DA for two classes: a PLS regression of the 0/1 label; its prediction is the decision score.

    Args:
        n_components: Number of PLS components k (at most the number of features).
    """

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: Any, y: Any) -> PLSScore:
        X, y = validate_data(self, X, y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) > 2:
            raise ValueError(f"Only binary classification is supported; got {len(self.classes_)} classes")
        if len(self.classes_) < 2:
            raise ValueError("PLSScore needs two classes; y holds one class")
        target = (y == self.classes_[1]).astype(float)
        k = min(self.n_components, X.shape[1])
        self.pls_ = PLSRegression(n_components=k, scale=False).fit(X, target)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """(patients,) the predicted 0/1 label minus 0.5: positive means the second class."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(self.pls_.predict(X), dtype=float).reshape(len(X)) - 0.5

    def predict(self, X: Any) -> np.ndarray:
        score = self.decision_function(X)
        return self.classes_[(score > 0).astype(int)]


class TopCorrelated(TransformerMixin, BaseEstimator):
    """Keep the ``m`` columns with the largest absolute Pearson correlation with the label (ties: first column).

    Args:
        m: Number of columns kept (all of them if there are fewer).
    """

    def __init__(self, m: int = 100) -> None:
        self.m = m

    def fit(self, X: Any, y: Any) -> TopCorrelated:
        X, y = validate_data(self, X, y)
        xc = X - X.mean(axis=0)
        yc = np.asarray(y, dtype=float) - np.mean(y)
        denom = np.sqrt((xc**2).sum(axis=0)) * np.sqrt((yc**2).sum())
        r = np.abs(xc.T @ yc) / np.where(denom > 0, denom, np.inf)
        self.keep_ = np.sort(np.argsort(-r, kind="stable")[: self.m])
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return X[:, self.keep_]


def _pre() -> list[Any]:
    return [SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()]


def learner(name: str) -> Any:
    """An unfitted scikit-learn model for one of :data:`LEARNERS` (not ``ridge+lasso``, which is two of them)."""
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    lr = LogisticRegression(max_iter=5000)
    if name == "ridge":
        return ridge_lr()
    seeded = {"cv": cv, "scoring": "roc_auc", "random_state": 0}  # liblinear and saga shuffle: seed them
    if name == "lasso":
        kw: dict[str, Any] = {"penalty": "l1", "solver": "liblinear", "max_iter": 5000}
        return make_pipeline(*_pre(), LogisticRegressionCV(Cs=list(np.logspace(-2.5, 0, 8)), **kw, **seeded))
    if name == "enet":
        kw = {"penalty": "elasticnet", "solver": "saga", "l1_ratios": [0.1, 0.5], "tol": 1e-3}
        enet = LogisticRegressionCV(Cs=list(np.logspace(-3, 0, 7)), max_iter=3000, **kw, **seeded)
        return make_pipeline(*_pre(), enet)
    if name == "pls":
        grid = {"plsscore__n_components": [1, 2, 3, 4, 6, 8]}
        return GridSearchCV(make_pipeline(*_pre(), PLSScore()), grid, cv=cv, scoring="roc_auc")
    if name == "spca":
        grid = {"topcorrelated__m": [30, 100, 300], "pca__n_components": [2, 4, 8, 16]}
        model = make_pipeline(*_pre(), TopCorrelated(), PCA(random_state=0), StandardScaler(), lr)
        return GridSearchCV(model, grid, cv=cv, scoring="roc_auc")
    if name == "pca":
        model = make_pipeline(*_pre(), PCA(random_state=0), StandardScaler(), lr)
        return GridSearchCV(model, {"pca__n_components": [8, 16, 32, 64]}, cv=cv, scoring="roc_auc")
    if name == "ridge-clip":
        return ridge_lr(ClipQuantiles(0.01))
    if name == "ridge-quantile":
        return ridge_lr(QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=0))
    if name == "lightgbm":
        from rccgrade.models.classifiers import default_grid, make_classifier

        grid = {f"balancedlgbmclassifier__{k}": v for k, v in default_grid("lightgbm").items()}
        model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), make_classifier("lightgbm"))
        return GridSearchCV(model, grid, cv=cv, scoring="roc_auc")
    raise ValueError(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}")


def _score(model: Any, x: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(x)[:, 1])
    return np.asarray(model.decision_function(x))


def _fit_split(x: pd.DataFrame, y: pd.Series, sp: dict[str, Any], learners: tuple[str, ...]) -> dict[str, Any]:
    """The test AUC (and seconds, chosen parameters) of each learner on one split."""
    warnings.simplefilter("ignore")
    tr, te = sp["train"], sp["test"]
    row: dict[str, Any] = {"split": sp["k"]}
    scores = {}
    for name in [n for n in learners if n != "ridge+lasso"]:
        t0 = time.perf_counter()
        model = learner(name).fit(x.loc[tr].to_numpy(), y.loc[tr].to_numpy())
        scores[name] = _score(model, x.loc[te].to_numpy())
        row[name] = float(roc_auc_score(y.loc[te], scores[name]))
        row[f"{name}_seconds"] = time.perf_counter() - t0
        if hasattr(model, "best_params_"):
            row[f"{name}_params"] = model.best_params_
    if "ridge+lasso" in learners:
        row["ridge+lasso"] = float(roc_auc_score(y.loc[te], rankdata(scores["ridge"]) + rankdata(scores["lasso"])))
    print(f"split {sp['k']}", {k: round(v, 3) for k, v in row.items() if k in learners}, flush=True)
    return row


def run_cohort(table: pd.DataFrame, splits: int, learners: tuple[str, ...], workers: int = 1) -> list[dict[str, Any]]:
    """One record per split (in split order, whatever ``workers``): the test AUC of each learner and its seconds."""
    from joblib import Parallel, delayed

    # worker processes import bench.signal_learners: give them the repository root (as bench/grade_signal.py does)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    y = table["label"].astype(int)
    x = numeric(table[[c for c in table.columns if c.startswith(("rad:", "kin:", "clin:"))]])
    jobs = (delayed(_fit_split)(x, y, sp, learners) for sp in make_splits(y, splits, 1000))
    return list(Parallel(n_jobs=workers)(jobs))


def summary(frame: pd.DataFrame, learners: tuple[str, ...]) -> dict[str, Any]:
    """Per learner: mean test AUC per cohort, and paired differences pooled over every split against ``ridge``,
    the references and ``factor-route`` (what the features hold when the learner knows what to look for)."""
    out: dict[str, Any] = {}
    for name in learners:
        row: dict[str, Any] = {"auc": {c: float(g[name].mean()) for c, g in frame.groupby("cohort")}}
        for ref in ("ridge", *REFERENCES):
            d = (frame[name] - frame[ref]).dropna() if ref != name and ref in frame else None
            if d is not None and len(d):  # a split missing from signal.json is left out of the pairing
                row[f"vs {ref}"] = diff_stats(d)
        out[name] = row
    return out


def markdown(result: dict[str, Any], source: str) -> str:
    cohorts = list(result["cohorts"])
    lines = [
        "# bench/signal_learners.py: other learners on every extended feature, paired on the splits of signal.json",
        "",
        f"Generated from `{source}`. Test AUC, mean of {result['splits']} splits per cohort; differences pooled over "
        "every cohort's splits: mean ± SD (splits lost).",
        "",
        "| learner | " + " | ".join(cohorts) + " | − ridge | − plain | − extg:combined | − factor-route |",
        "|---|" + "---|" * (len(cohorts) + 4),
    ]

    for name, row in result["summary"].items():
        aucs = " | ".join(f"{row['auc'].get(c, float('nan')):.3f}" for c in cohorts)
        refs = [format_diff(row.get(f"vs {r}")) for r in ("ridge", "plain", "extg:combined", "factor-route")]
        lines.append(f"| {name} | {aucs} | " + " | ".join(refs) + " |")
    machine = result["machine"]
    where = f"{machine.get('platform')}, {machine.get('cpu_count')} CPUs, commit `{machine.get('git_commit', '')[:10]}`"
    lines += ["", f"Machine: {where}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser, "signal_learners.json")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--workers", type=int, default=1, help="splits fitted in parallel (processes)")
    parser.add_argument("--signal", type=Path, default=ROOT / "bench/results/signal.json")
    args = parser.parse_args()
    learners = tuple(args.learners.split(","))
    if "ridge+lasso" in learners and not {"ridge", "lasso"} <= set(learners):
        parser.error("ridge+lasso needs ridge and lasso in --learners")
    warnings.simplefilter("ignore")
    signal = json.loads(args.signal.read_text())
    t0 = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "signal_learners", "tag": args.tag, "splits": args.splits, "cohorts": {}}
    every = []
    for cohort, table in cohort_tables(args.cache, args.cohorts, args.tag):
        print(cohort, flush=True)
        rows = run_cohort(table, args.splits, learners, args.workers)
        ref = {(r["split"], r["method"]): r["auc"] for r in signal["cohorts"].get(cohort, {}).get("records", [])}
        for row in rows:
            row.update({m: ref[(row["split"], m)] for m in REFERENCES if (row["split"], m) in ref})
        result["cohorts"][cohort] = rows
        every += [{"cohort": cohort, **r} for r in rows]
    result["summary"] = summary(pd.DataFrame(every), learners)
    result["seconds"] = time.perf_counter() - t0
    result["machine"] = machine_info()
    args.out.write_text(json.dumps(result, indent=1))
    md = args.out.with_suffix(".md")
    md.write_text(markdown(result, args.out.name))
    print(md.read_text())


if __name__ == "__main__":
    main()
