"""Do per-source budgets (``combined_selection: budgets``) change when a tree, not logistic regression, scores them?

``rccgrade.models.fusion.choose_budgets`` scores budget vectors with an L2 logistic regression for every arm
(a deliberate, cheap proxy; see that module's docstring). This script measures how often a random forest or
LightGBM scorer would choose other budgets, on the demo feature tables: sources ``clinical``, ``radiomics``
(arterial, 107 features) and a pure-noise ``deep:noise`` block (200 Gaussian columns), the package's default
per-source chains (10-value LASSO path), on the training parts (70 %) of ``--splits`` stratified splits.
For each split and scorer: the chosen budgets, the inner-CV AUC and the CPU seconds of the choice.

Usage::

    nice -n 19 .venv/bin/python bench/budget_scorer.py --data /work/bench_cache/demo200 --splits 5

Writes ``bench/results/budget_scorer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def scorers(seed: int) -> dict[str, Any]:
    """The scorers compared (None: the package's logistic proxy)."""
    from sklearn.ensemble import RandomForestClassifier

    from rccgrade.models.classifiers import make_classifier

    forest = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", min_samples_leaf=2, random_state=seed, n_jobs=1
    )
    return {"logistic": None, "random_forest": forest, "lightgbm": make_classifier("lightgbm", seed)}


def main() -> None:
    """Run the splits and write the JSON."""
    from bench.fusion import load, noise_block
    from sklearn.model_selection import StratifiedShuffleSplit

    from rccgrade.models.chain import source_chain
    from rccgrade.models.fusion import choose_budgets
    from rccgrade.models.settings import ModelSettings

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/bench_cache/demo200"))
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "budget_scorer.json")
    args = parser.parse_args()

    table, y, _ = load(args.data, rois=[])
    table = table.join(noise_block(table.index, n_cols=200))
    settings = ModelSettings(selection={"lasso_cs": 10})
    prefixes = {"clinical": "clin:", "radiomics": "rad:", "deep:noise": "deep:noise:"}
    sss = StratifiedShuffleSplit(n_splits=args.splits, test_size=0.3, random_state=0)
    rows = []
    for i, (tr, _) in enumerate(sss.split(np.zeros(len(y)), y.to_numpy())):
        X, lab = table.iloc[tr], y.iloc[tr].to_numpy()
        blocks = [
            (name, source_chain(name, settings, i), X[[c for c in X.columns if c.startswith(pre)]])
            for name, pre in prefixes.items()
        ]
        row: dict[str, Any] = {"split": i}
        for tag, scorer in scorers(i).items():
            t0 = time.process_time()
            budgets, trace = choose_budgets(
                blocks, lab, settings.combined_budgets, cv=settings.combined_budget_cv, random_state=i, scorer=scorer
            )
            row[tag] = {"budgets": budgets, "cv_auc": trace["score"], "cpu_s": time.process_time() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)
        write(rows, args)


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Agreement of each tree scorer with the logistic proxy, per split and overall."""
    summary: dict[str, Any] = {}
    for tag in ("random_forest", "lightgbm"):
        same = [r[tag]["budgets"] == r["logistic"]["budgets"] for r in rows]
        on = [
            {s for s, b in r[tag]["budgets"].items() if b} == {s for s, b in r["logistic"]["budgets"].items() if b}
            for r in rows
        ]
        summary[tag] = {
            "identical_budgets": f"{sum(same)}/{len(rows)}",
            "same_sources_on": f"{sum(on)}/{len(rows)}",
            "noise_source_kept": sum(bool(r[tag]["budgets"]["deep:noise"]) for r in rows),
            "mean_cpu_s": float(np.mean([r[tag]["cpu_s"] for r in rows])),
        }
    summary["logistic"] = {
        "noise_source_kept": sum(bool(r["logistic"]["budgets"]["deep:noise"]) for r in rows),
        "mean_cpu_s": float(np.mean([r["logistic"]["cpu_s"] for r in rows])),
    }
    result = {
        "data": str(args.data),
        "splits": len(rows),
        "sources": "clinical (8), radiomics arterial (107), deep:noise (200 Gaussian columns)",
        "settings": "package defaults, lasso_cs 10; random forest 100 trees (the arm's has 300), LightGBM as the arm's",
        "summary": summary,
        "per_split": rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared 2-core VM, loaded by other jobs; CPU seconds (process_time), not wall",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
