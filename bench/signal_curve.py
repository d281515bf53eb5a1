"""How the learner's share of the oracle gap changes with the number of training patients.

On the splits of ``bench/grade_signal.py`` (10 stratified 7:3 splits per cohort, seeds 1000…), with every
extended feature (``rad:``, ``kin:``, ``clin:``), this fits on the full training split and on a stratified half
of it (seeded by the split), and scores the same test patients:

* ``ridge``: an L2 logistic regression fitted to the labels (median imputation, z-scoring,
  ``LogisticRegressionCV`` over the ``extdense`` grid, 5 folds, AUC): the learner;
* ``route``: :func:`bench.signal_factors.fit_predict_factor_route`, the diagnostic supervised by the
  generator's true factors (a linear model of the same features, learnt from eight continuous targets).

``route − ridge`` is the learner's share. If it shrinks as the training set grows while ``route`` stays, the share
is estimation error that more patients remove. Writes ``bench/results/signal_curve.json``.

Usage::

    .venv/bin/python bench/signal_curve.py --cache /work/bench_cache/s5 --tag extdemo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402
from bench.grade_signal import DENSE_CS, add_table_args, cohort_tables, machine_info, make_splits  # noqa: E402
from bench.signal_factors import fit_predict_factor_route, numeric  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def ridge_lr(*between: Any) -> Any:
    """Median imputation, the ``between`` steps (none: nothing), z-scoring and an L2 logistic regression with C
    chosen by 5-fold CV AUC over the ``extdense`` grid."""
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    cv = LogisticRegressionCV(Cs=DENSE_CS, cv=5, scoring="roc_auc", max_iter=5000)
    return make_pipeline(imputer, *between, StandardScaler(), cv)


def curve(table: pd.DataFrame, splits: int, fractions: tuple[float, ...]) -> list[dict[str, Any]]:
    """One record per (split, training fraction): training size, ``ridge`` and ``route`` test AUC."""
    y = table["label"].astype(int)
    x = numeric(table[[c for c in table.columns if c.startswith(("rad:", "kin:", "clin:"))]])
    z = table[[c for c in table.columns if c.startswith("truth:z_")]]
    rows = []
    for sp in make_splits(y, splits, 1000):
        te = sp["test"]
        for frac in fractions:
            tr = sp["train"]
            if frac < 1:
                tr = sorted(train_test_split(tr, train_size=frac, stratify=y.loc[tr], random_state=sp["seed"])[0])
            p_ridge = ridge_lr().fit(x.loc[tr], y.loc[tr]).predict_proba(x.loc[te])[:, 1]
            p_route = fit_predict_factor_route(x.loc[tr], z.loc[tr], y.loc[tr], x.loc[te])
            rows.append(
                {
                    "split": sp["k"],
                    "fraction": frac,
                    "n_train": len(tr),
                    "ridge": float(roc_auc_score(y.loc[te], p_ridge)),
                    "route": float(roc_auc_score(y.loc[te], p_route)),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_table_args(parser, "signal_curve.json")
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "signal_curve", "tag": args.tag, "cohorts": {}, "summary": {}}
    every = []
    for cohort, table in cohort_tables(args.cache, args.cohorts, args.tag):
        rows = curve(table, args.splits, (0.5, 1.0))
        result["cohorts"][cohort] = rows
        every += [{"cohort": cohort, **r} for r in rows]
        print(cohort, pd.DataFrame(rows).groupby("fraction")[["ridge", "route"]].mean().round(3).to_dict(), flush=True)
    frame = pd.DataFrame(every)
    frame["gap"] = frame["route"] - frame["ridge"]
    for frac, part in frame.groupby("fraction"):
        result["summary"][str(frac)] = {
            "n_train": float(part["n_train"].mean()),
            "ridge": float(part["ridge"].mean()),
            "route": float(part["route"].mean()),
            "gap": float(part["gap"].mean()),
            "gap_sd": float(part["gap"].std(ddof=1)),
            "gap_negative": int((part["gap"] < 0).sum()),
            "n": len(part),
        }
    result["seconds"] = time.perf_counter() - t0
    result["machine"] = machine_info()
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
