"""Why does the selection chain swing against the plain hand-written chain? One candidate cause at a time.

Every variant and the plain chain are fitted on the same training patients of each repeated stratified 7:3
split and scored on the same test patients; the numbers are paired differences of test AUC against the plain
chain (mean and SD over the splits: the SD is the swing).

* ``plain``: Mann–Whitney p < 0.05 (raw) → |r| > 0.9 pruning → L1-LR with CV → plain LR (C = 1).
* ``current``: rccgrade's radiomics chain before issue 14 (near-constant → FDR U-test with at least 10
  survivors → |r| > 0.9 → LASSO CV → LR with C tuned by CV on AUC).
* one factor of ``current`` switched to the plain chain's choice at a time: ``raw_p`` (no FDR, no minimum),
  ``fixed_c`` (final LR C = 1, no tuning), ``lasso_only`` (no univariate filter at all), ``corr_order``
  (correlation filter in column order rather than by relevance);
* the stable candidates: ``stability`` (group near-duplicates → stability selection → LR C = 1) and
  ``stability_enet`` (group → stability selection → elastic-net LR, C and l1_ratio tuned).

Usage::

    .venv/bin/python bench/selection_swing.py --data /work/bench_cache/demo200 --splits 0 1 2 3 4 5 6 7 8 9

Writes ``bench/results/selection_swing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _load(data: Path, source: str) -> tuple[pd.DataFrame, pd.Series]:
    table = pd.read_parquet(data / f"{source}.parquet")
    table.index = table.index.astype(str)
    table.index.name = "patient_id"
    man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    y = (man["grade"].reindex(table.index) >= 3).astype(int)
    return table, y


def _variants(seed: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from rccgrade.features.selection import (
        CorrelationFilter,
        CorrelationGrouper,
        LassoSelector,
        NearConstantFilter,
        StabilitySelector,
        UnivariateFilter,
    )
    from rccgrade.models.classifiers import DEFAULT_GRIDS, make_classifier
    from rccgrade.models.tuning import make_search, stratified_folds

    def chain(*steps: Any, clf: Any = None, grid: dict[str, list[Any]] | None = None) -> Any:
        features = Pipeline([*steps, ("scale", StandardScaler().set_output(transform="pandas"))])
        return Pipeline([("features", features), ("clf", clf)]), grid  # tuning shares the per-fold selection

    def lr() -> Any:
        return LogisticRegression(C=1.0, max_iter=5000)

    nc = ("near_constant", NearConstantFilter())
    fdr = ("univariate", UnivariateFilter(alpha=0.05, fdr=True, min_features=10))
    raw = ("univariate", UnivariateFilter(alpha=0.05, fdr=False, min_features=1))
    corr = ("correlation", CorrelationFilter(threshold=0.9))
    lasso = ("lasso", LassoSelector(Cs=20, cv=5, random_state=seed))
    group = ("group", CorrelationGrouper(threshold=0.95))
    stab = ("stability_selection", StabilitySelector(n_subsamples=50, random_state=seed))
    tuned = {"clf__C": DEFAULT_GRIDS["logistic"]["C"]}
    enet_grid = {f"clf__{k}": v for k, v in DEFAULT_GRIDS["logistic_enet"].items()}
    out = {
        "plain": chain(raw, corr, lasso, clf=lr()),
        "current": chain(nc, fdr, corr, lasso, clf=lr(), grid=tuned),
        "raw_p": chain(nc, raw, corr, lasso, clf=lr(), grid=tuned),
        "fixed_c": chain(nc, fdr, corr, lasso, clf=lr()),
        "lasso_only": chain(nc, corr, lasso, clf=lr(), grid=tuned),
        "stability": chain(nc, group, stab, clf=lr()),
        "stability_enet": chain(nc, group, stab, clf=make_classifier("logistic_enet", seed), grid=enet_grid),
    }
    return {"variants": out, "make_search": make_search, "folds": stratified_folds}


def _corr_in_column_order(seed: int) -> Any:
    """``current`` with the correlation filter walking the columns in table order (relevance ignored)."""
    import numpy as np

    from rccgrade.features.selection import CorrelationFilter

    class ColumnOrderCorrelation(CorrelationFilter):
        def fit(self, X: Any, y: Any) -> Any:
            super().fit(X, y)
            corr = np.abs(np.corrcoef(X.to_numpy(float), rowvar=False))
            kept: list[int] = []
            for j in range(corr.shape[0]):
                if not kept or np.all(corr[j, kept] <= self.threshold):
                    kept.append(j)
            self.support_ = np.zeros(corr.shape[0], dtype=bool)
            self.support_[kept] = True
            return self

    return ColumnOrderCorrelation(threshold=0.9)


def run(data: Path, source: str, splits: list[int], only: list[str] | None) -> list[dict[str, Any]]:
    """Paired test AUCs of every variant on the given repeated stratified 7:3 splits (seed 1000 + split)."""
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score

    from rccgrade.models.split import make_split, train_test_ids

    table, y = _load(data, source)
    rows = []
    for s in splits:
        train, test = train_test_ids(make_split(y, seed=1000 + s))
        built = _variants(s)
        variants = dict(built["variants"])
        pipe, grid = variants["current"]
        order = clone(pipe)
        order.named_steps["features"].steps[2] = ("correlation", _corr_in_column_order(s))
        variants["corr_order"] = (order, grid)
        row: dict[str, Any] = {"split": s}
        for name, (pipe, grid) in variants.items():
            if only and name not in only and name != "plain":
                continue
            est = pipe if not grid else built["make_search"](pipe, grid, built["folds"](y.loc[train], 5, s), seed=s)
            t0 = time.perf_counter()
            fitted = clone(est).fit(table.loc[train], y.loc[train])
            model = getattr(fitted, "best_estimator_", fitted)
            feats = model.named_steps["features"]
            n_feat = int(feats.named_steps["scale"].n_features_in_)
            auc = float(roc_auc_score(y.loc[test], fitted.predict_proba(table.loc[test])[:, 1]))
            row[name] = {"auc": auc, "n_features": n_feat, "seconds": time.perf_counter() - t0}
            if name == "current":
                row["fdr_survivors"] = int((feats.named_steps["univariate"].qvalues_ < 0.05).sum())
        rows.append(row)
        print({k: (round(v["auc"], 3) if isinstance(v, dict) else v) for k, v in row.items()}, flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and SD of each variant's test AUC and of its paired difference to the plain chain."""
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    summary = {}
    for name in names:
        aucs = np.array([r[name]["auc"] for r in rows])
        diff = aucs - np.array([r["plain"]["auc"] for r in rows])
        summary[name] = {
            "mean_auc": float(aucs.mean()),
            "sd_auc": float(aucs.std(ddof=1)),
            "paired_diff_mean": float(diff.mean()),
            "paired_diff_sd": float(diff.std(ddof=1)),
            "paired_diff_min": float(diff.min()),
            "paired_diff_max": float(diff.max()),
            "mean_n_features": float(np.mean([r[name]["n_features"] for r in rows])),
            "mean_seconds": float(np.mean([r[name]["seconds"] for r in rows])),
        }
    return summary


def main() -> None:
    """Run the study and write the JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/bench_cache/demo200"))
    parser.add_argument("--source", default="radiomics")
    parser.add_argument("--splits", type=int, nargs="*", default=list(range(10)), help="split numbers to run")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--chunk", type=Path, default=None, help="write these splits' rows here (merge later)")
    parser.add_argument("--merge", type=Path, nargs="*", default=None, help="chunk files to merge and summarise")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "selection_swing.json")
    args = parser.parse_args()
    if args.merge:
        rows = sorted((r for f in args.merge for r in json.loads(f.read_text())), key=lambda r: r["split"])
    else:
        rows = run(args.data, args.source, args.splits, args.only)
        if args.chunk is not None:
            args.chunk.write_text(json.dumps(rows, indent=1))
            return
    _, y = _load(args.data, args.source)
    result = {"source": args.source, "n": len(y), "n_high": int(y.sum()), "splits": rows, "summary": summarise(rows)}
    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing[args.source] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(existing, indent=1))
    for name, s in result["summary"].items():
        print(
            f"{name:15s} AUC {s['mean_auc']:.3f}±{s['sd_auc']:.3f}  vs plain {s['paired_diff_mean']:+.3f}"
            f" ± {s['paired_diff_sd']:.3f} [{s['paired_diff_min']:+.3f}, {s['paired_diff_max']:+.3f}]"
            f"  features {s['mean_n_features']:.1f}  {s['mean_seconds']:.1f}s"
        )


if __name__ == "__main__":
    main()
