"""Benchmark of the models stage: leakage (honest vs naive select-then-split) over seeds, fusion gain, timing.

* Leakage: 200 patients, 1,000 noise features, permuted labels. The honest radiomics arm (selection inside
  the pipeline, fitted on training patients only) should score test AUC ≈ 0.5 with a 95% DeLong CI that
  contains 0.5; the naive pipeline (top-20 Mann–Whitney features chosen on ALL patients, then split) scores
  far higher. Reported per seed: both AUCs, the honest CI, and the fit time.
* Fusion: 400 patients with signal split across clinical, radiomics and deep features; test AUC per arm.

Usage::

    .venv/bin/python bench/models.py --seeds 5

Writes ``bench/results/models.json`` (numbers + machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _noise(seed: int, n: int = 200, p: int = 1000) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    y = rng.permutation(np.r_[np.ones(70, dtype=int), np.zeros(n - 70, dtype=int)])
    table = pd.DataFrame(rng.normal(size=(n, p)), index=ids, columns=[f"rad:arterial:f{j:04d}" for j in range(p)])
    return table, pd.Series(y, index=ids)


def _signal(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"p{i:03d}" for i in range(n)], name="patient_id")
    clin, rad, deep = rng.normal(size=(n, 3)), rng.normal(size=(n, 40)), rng.normal(size=(n, 30))
    logit = -0.7 + 1.2 * clin[:, 0] + 1.2 * rad[:, 0] + 0.8 * rad[:, 1] + 1.2 * deep[:, 0] + 0.8 * deep[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    cols = {"clin:age": clin[:, 0], "clin:size": clin[:, 1], "clin:other": clin[:, 2]}
    cols.update({f"rad:arterial:f{j:03d}": rad[:, j] for j in range(40)})
    cols.update({f"deep:box:f{j:04d}": deep[:, j] for j in range(30)})
    return pd.DataFrame(cols, index=ids), pd.Series(y, index=ids)


def main() -> None:
    """Run the benchmark and write the JSON result."""
    from scipy import stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from rccgrade.models.arms import fit_arms
    from rccgrade.models.settings import ModelSettings
    from rccgrade.models.split import make_split, train_test_ids
    from rccgrade.stats.roc import auc_ci

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "models.json")
    args = parser.parse_args()

    settings = ModelSettings(
        arms=["radiomics"], param_grids={"logistic": {"C": [0.1, 1.0]}}, cv_folds=5, selection={"lasso_cs": 10}
    )
    leakage = []
    for seed in range(args.seeds):
        table, y = _noise(seed)
        train, test = train_test_ids(make_split(y, seed=seed))
        t0 = time.perf_counter()
        res = fit_arms(table, y, train, settings, seed=seed)
        seconds = time.perf_counter() - t0
        ci = auc_ci(y.loc[test].to_numpy(), res.test_proba["radiomics"].to_numpy())
        X, yy = table.to_numpy(), y.to_numpy()
        top = np.argsort(stats.mannwhitneyu(X[yy == 1], X[yy == 0], axis=0).pvalue)[:20]
        tr, te = table.index.get_indexer(train), table.index.get_indexer(test)
        naive = LogisticRegression(max_iter=5000).fit(X[tr][:, top], yy[tr])
        leakage.append(
            {
                "seed": seed,
                "honest_auc": ci.auc,
                "honest_ci": [ci.lower, ci.upper],
                "ci_contains_0.5": bool(ci.lower <= 0.5 <= ci.upper),
                "naive_auc": float(roc_auc_score(yy[te], naive.predict_proba(X[te][:, top])[:, 1])),
                "fit_seconds": seconds,
            }
        )
        print(leakage[-1])

    fusion = []
    fsettings = ModelSettings(param_grids={"logistic": {"C": [0.1, 1.0]}}, cv_folds=5, selection={"lasso_cs": 10})
    for seed in range(args.seeds):
        table, y = _signal(seed)
        train, test = train_test_ids(make_split(y, seed=seed))
        t0 = time.perf_counter()
        res = fit_arms(table, y, train, fsettings, seed=seed)
        row = {a: float(roc_auc_score(y.loc[test], res.test_proba[a])) for a in res.arms}
        row.update(seed=seed, fit_seconds=time.perf_counter() - t0)
        fusion.append(row)
        print(row)

    out = {
        "leakage": leakage,
        "fusion": fusion,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
