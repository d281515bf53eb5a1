"""Gated against budgeted ``combined`` on a demo study's own feature tables (radiomics, random-weight deep, clinical).

The issue-14 benchmark (bench/grade_signal.py) has no weak-but-wide source; a demo run offline has one: the
deep features of a randomly initialised ResNet50. On ``N`` paired stratified 7:3 splits (seeds 1000…) of a
finished demo run's cached feature tables (``RUN/cache/radiomics-*``, ``RUN/cache/deep-*``, the run's cohort
manifest), this fits the single-source arms and ``combined`` with ``combined_selection: budgets`` and ``gated``
(``configs/default.yaml``'s other model settings, nested OOF off), and ``stacked`` (non-negative weights on the
single-source arms' out-of-fold probabilities), and writes the test AUCs to
``bench/results/fusion_demo_tables.json``.

The committed JSON also holds ``budgets3:combined`` (the budgets chosen on a 3-times repeated inner CV), written
by this script at commit 4a758f8, when ``models.combined_budget_repeats`` existed (built, measured, removed:
docs/fusion.md).

Usage::

    .venv/bin/python bench/fusion_demo_tables.py RUN_DIR 10
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench.grade_signal import make_splits  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.config import load_config
    from rccgrade.features.clinical import clinical_table
    from rccgrade.features.table import load_table
    from rccgrade.models.arms import fit_arms

    warnings.simplefilter("ignore")
    run, n_splits = Path(sys.argv[1]), int(sys.argv[2])
    rad, _ = load_table(next(run.glob("cache/radiomics-*/features.parquet")))
    deep, _ = load_table(next(run.glob("cache/deep-*/features.parquet")))
    cohort = load_cohort(run / "cohort" / "manifest.csv")
    x = rad.join(deep, how="inner").join(clinical_table(cohort), how="inner")
    y = pd.Series(cohort.labels()).reindex(x.index).astype(int)
    base = load_config(ROOT / "configs/default.yaml").models.model_copy(update={"nested_oof": False})
    singles = ["clinical", "radiomics", "deep:dilated5mm"]
    out: dict[str, list[float]] = {}
    for split in make_splits(y, n_splits, 1000):
        for sel in ("gated", "budgets"):
            arms = [*singles, "combined", "stacked"] if sel == "budgets" else ["combined"]
            settings = base.model_copy(update={"combined_selection": sel, "arms": arms})
            res = fit_arms(x, y, split["train"], settings=settings, seed=split["seed"], test_ids=split["test"])
            for arm in res.arms:
                auc = roc_auc_score(y.loc[split["test"]], res.test_proba[arm])
                out.setdefault(f"{sel}:{arm}" if arm == "combined" else arm, []).append(float(auc))
        print(split["k"], {m: round(v[-1], 3) for m, v in out.items()}, flush=True)
    g, b, r = (np.asarray(out[k]) for k in ("gated:combined", "budgets:combined", "radiomics"))
    st = np.asarray(out["stacked"])
    summary = {
        "gated_minus_budgets": float((g - b).mean()),
        "gated_lost_to_budgets": int((g < b).sum()),
        "gated_minus_radiomics": float((g - r).mean()),
        "budgets_minus_radiomics": float((b - r).mean()),
        "stacked_minus_radiomics": float((st - r).mean()),
        "stacked_minus_budgets": float((st - b).mean()),
        "stacked_minus_gated": float((st - g).mean()),
        "stacked_lost_to_radiomics": int((st < r).sum()),
    }
    result = {
        "run": str(run),
        "splits": len(g),
        "split_seed": 1000,
        "combined_gate_repeats": base.combined_gate_repeats,
        "combined_gate_alpha": base.combined_gate_alpha,
        "test_auc": out,
        "summary": summary,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    (ROOT / "bench/results/fusion_demo_tables.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
