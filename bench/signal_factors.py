"""Where the grade signal is lost: how well each feature source recovers each of the generator's true factors.

For every cohort of ``bench/grade_signal.py`` (the extended feature tables) and every true factor ``z_*`` of
``truth.csv`` (size, margin, heterogeneity, necrosis, enhancement, washout, peritumoural, systemic), the
cross-validated R² of a ridge regression (median imputation, z-scoring, ``RidgeCV`` over 12 alphas; 5 shuffled
folds, seed 0) from each feature group: the arterial tumour radiomics (the paper's features), every radiomics
column (all phases and rings), the kinetic source, radiomics + kinetic, and the clinical columns. Beside it,
the cross-validated AUC of a logistic regression on the true factors with and without ``z_systemic`` (the one
factor no image carries): the ceiling of a perfect image feature extractor, and of a perfect fusion.

This is a diagnostic of the features, not of a model of rccgrade: every number is out of fold, on all the
cohort's patients. Options (each fitted inside the training folds only): ``--clip Q`` clips every feature at the
training fold's ``Q`` and ``1 − Q`` quantiles before z-scoring (robust to heavy-tailed features such as
PyRadiomics' LoG and wavelet ones, where a few extreme test values can drive the R² below 0); ``--combat``
ComBat-harmonises the features by centre (``truth:center``, the manifest's ``center``) first. Writes
``bench/results/signal_factors.json`` and prints a markdown table.

Usage::

    .venv/bin/python bench/signal_factors.py --cache /work/bench_cache/s4 --tag extdemo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench.grade_signal import add_table_args, cohort_tables, machine_info  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeCV  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def numeric(x: pd.DataFrame) -> pd.DataFrame:
    """Every column as float (``sex``: 1 for the first level in sorted order); ±inf as missing."""
    out = {}
    for c in x.columns:
        col = pd.to_numeric(x[c], errors="coerce")
        if col.isna().all() and x[c].notna().any():
            levels = sorted(x[c].dropna().astype(str).unique())
            col = (x[c].astype(str) == levels[0]).astype(float).where(x[c].notna())
        out[c] = col.astype(float)
    return pd.DataFrame(out, index=x.index).replace([np.inf, -np.inf], np.nan)


def _ridge(*between: Any) -> Any:
    """The diagnostic's regression: median imputation, the ``between`` steps (ComBat, clipping), z-scoring and
    ``RidgeCV`` over 12 alphas."""
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).set_output(transform="pandas")
    return make_pipeline(imputer, *between, StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 12)))


class ClipQuantiles(TransformerMixin, BaseEstimator):
    """Clip every column at its training ``q`` and ``1 − q`` quantiles (``q = 0``: no clipping).

    Args:
        q: Lower tail probability, in [0, 0.5).
    """

    def __init__(self, q: float = 0.0) -> None:
        self.q = q

    def fit(self, X: Any, y: Any = None) -> ClipQuantiles:
        arr = np.asarray(X, dtype=float)
        if self.q > 0:  # q = 0 clips nothing: no quantiles to compute
            self.low_, self.high_ = np.nanquantile(arr, [self.q, 1 - self.q], axis=0)
        self.n_features_in_ = arr.shape[1]
        return self

    def transform(self, X: Any) -> Any:
        if self.q == 0:
            return X
        out = np.clip(np.asarray(X, dtype=float), self.low_, self.high_)
        return pd.DataFrame(out, index=X.index, columns=X.columns) if isinstance(X, pd.DataFrame) else out


def cv_r2(
    x: pd.DataFrame, target: pd.Series, seed: int = 0, clip: float = 0.0, centers: pd.Series | None = None
) -> float:
    """Out-of-fold R² of a ridge regression (alphas chosen inside each training fold).

    Args:
        x: (patients, features) numeric table indexed by patient.
        target: (patients,) the true factor.
        clip: Training-quantile clipping of every feature (see :class:`ClipQuantiles`).
        centers: Centre per patient: ComBat-harmonise the features by centre first (None: no ComBat).
    """
    from rccgrade.features.harmonize import ComBat

    steps: list[Any] = []
    if centers is not None:
        steps.append(ComBat(batches={str(k): str(v) for k, v in centers.items()}))
    steps.append(ClipQuantiles(clip))  # q = 0: a no-op that computes nothing
    pred = cross_val_predict(_ridge(*steps), x, target, cv=KFold(5, shuffle=True, random_state=seed))
    return float(1 - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2))


def fit_predict_factor_route(
    x_train: pd.DataFrame, z_train: pd.DataFrame, y_train: pd.Series, x_test: pd.DataFrame, seed: int = 0
) -> np.ndarray:
    """A two-stage model that knows what to look for: what the features hold, given the right targets.

    Stage 1: one ridge regression (:func:`_ridge`) per true factor, from every feature column to the factor,
    fitted on the training patients. Stage 2: a plain logistic regression (z-scored, C = 1) on the training
    patients' **out-of-fold** predicted factors (5 shuffled folds, ``seed``), applied to the test patients'
    factors predicted by the ridges fitted on all training patients. The true factors of test patients are
    never used. It is a diagnostic, not a method: no real cohort has the factors.

    Args:
        x_train: (train patients, features) feature columns (``numeric`` is applied).
        z_train: (train patients, factors) the true factors of the training patients.
        y_train: (train patients,) 0/1 labels.
        x_test: (test patients, features) the same columns.
        seed: Seed of the out-of-fold split.

    Returns:
        (test patients,) probabilities of the positive class.
    """
    from bench.signal_chain import fit_predict_lr

    xtr, xte = numeric(x_train), numeric(x_test)
    folds = KFold(5, shuffle=True, random_state=seed)
    oof, test = {}, {}
    for factor in z_train.columns:
        oof[factor] = cross_val_predict(_ridge(), xtr, z_train[factor], cv=folds)
        test[factor] = _ridge().fit(xtr, z_train[factor]).predict(xte)
    return fit_predict_lr(pd.DataFrame(oof, index=xtr.index), y_train, pd.DataFrame(test, index=xte.index))


def cv_auc(x: pd.DataFrame, y: pd.Series, seed: int = 0) -> float:
    """Out-of-fold AUC of a plain logistic regression (z-scored)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(roc_auc_score(y, cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]))


def groups(table: pd.DataFrame) -> dict[str, list[str]]:
    cols = list(table.columns)
    return {
        "arterial tumour": [c for c in cols if c.startswith("rad:arterial:")],
        "all radiomics": [c for c in cols if c.startswith("rad:")],
        "kinetic": [c for c in cols if c.startswith("kin:")],
        "radiomics + kinetic": [c for c in cols if c.startswith(("rad:", "kin:"))],
        "clinical": [c for c in cols if c.startswith("clin:")],
    }


def factors(table: pd.DataFrame, clip: float = 0.0, combat: bool = False) -> dict[str, Any]:
    """R² per (factor, group) and the true-factor AUC ceilings of one cohort (options: see :func:`cv_r2`)."""
    y = table["label"].astype(int)
    z = table[[c for c in table.columns if c.startswith("truth:z_")]]
    g = groups(table)
    centers = table["truth:center"] if combat else None
    r2 = {
        zc.removeprefix("truth:"): {
            name: cv_r2(numeric(table[cols]), z[zc], clip=clip, centers=centers) for name, cols in g.items() if cols
        }
        for zc in z.columns
    }
    image = z.drop(columns=[c for c in z.columns if c.endswith("systemic")])
    return {
        "n_patients": len(table),
        "n_columns": {name: len(cols) for name, cols in g.items()},
        "r2": r2,
        "auc_true_factors": cv_auc(z, y),
        "auc_true_image_factors": cv_auc(image, y),
        "auc_oracle": float(roc_auc_score(y, table["truth:p_high"])),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for cohort, c in result["cohorts"].items():
        names = list(next(iter(c["r2"].values())))
        lines += [
            f"### {cohort} ({c['n_patients']} patients): cross-validated R² of each true factor",
            "",
            "| factor | " + " | ".join(f"{n} ({c['n_columns'][n]})" for n in names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for factor, row in c["r2"].items():
            lines.append(f"| {factor} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")
        lines += [
            "",
            f"Out-of-fold AUC of a logistic regression on the true factors: {c['auc_true_factors']:.3f}; on the "
            f"image factors only (no `z_systemic`): {c['auc_true_image_factors']:.3f}; oracle `p_high`: "
            f"{c['auc_oracle']:.3f}.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser, "signal_factors.json", cache="/work/bench_cache/s4")
    parser.add_argument("--clip", type=float, default=0.0, help="clip features at training quantiles q, 1 - q")
    parser.add_argument("--combat", action="store_true", help="ComBat by centre inside each training fold")
    args = parser.parse_args()
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "signal_factors",
        "tag": args.tag,
        "clip": args.clip,
        "combat": args.combat,
        "cohorts": {},
    }
    for cohort, table in cohort_tables(args.cache, args.cohorts, args.tag):
        result["cohorts"][cohort] = factors(table, clip=args.clip, combat=args.combat)
    result["seconds"] = time.perf_counter() - t0
    result["machine"] = machine_info()
    args.out.write_text(json.dumps(result, indent=1))
    text = markdown(result)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
