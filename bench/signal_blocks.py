"""Per-block sources: does gating each phase × region block of the extended radiomics separately help?

``configs/extended.yaml``'s gated ``combined`` treats all 879 ``rad:`` columns (3 phases × tumour, 5 mm and
10 mm rings) as one source with one selection chain. Here each block (``rad:arterial``,
``rad:nephrographic@ring5mm``, …) is its own source with its own chain and its own gate, next to ``clinical``
and ``kinetic``. rccgrade has no per-block radiomics source, so the blocks are relabelled ``deep:<block>:…``
(the deep sources are per-ROI prefixes with the same selection settings as radiomics). Same cohorts, feature
tables and splits (seeds 1000…) as ``bench/grade_signal.py``; the paired comparison is against the records of
``bench/results/signal.json``.

Usage::

    .venv/bin/python bench/signal_blocks.py --cache CACHE [--cohorts c1_seed1,c2_seed2,c3_seed3_mix]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench.grade_signal import COHORTS, _auc, _model_settings, load_cohort, machine_info, make_splits  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def block_column(column: str) -> str:
    """``rad:nephrographic@ring5mm:firstorder_Mean`` → ``deep:nephrographicring5mm:firstorder_Mean``; others kept."""
    if not column.startswith("rad:"):
        return column
    block, feature = column[4:].rsplit(":", 1)
    return f"deep:{re.sub('[^a-z0-9]', '', block)}:{feature}"


def fit_split(table: pd.DataFrame, split: dict[str, Any], settings: Any) -> dict[str, Any]:
    from rccgrade.models.arms import fit_arms

    warnings.simplefilter("ignore")
    y = table["label"].astype(int)
    x = table[[c for c in table.columns if c.split(":", 1)[0] in ("deep", "clin", "kin")]]
    t0 = time.perf_counter()
    res = fit_arms(x, y, split["train"], settings=settings, seed=split["seed"], test_ids=split["test"])
    gate = res.fusion["combined"].get("gate", {})
    return {
        "split": split["k"],
        "auc": _auc(y.loc[split["test"]], res.test_proba["combined"]),
        "kept": sorted(k for k, v in gate.items() if v.get("kept")),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--tag", default="extdemo")
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/signal_blocks.json")
    args = parser.parse_args()
    reference = json.loads((ROOT / "bench/results/signal.json").read_text())["cohorts"]
    settings = _model_settings(ROOT / "configs/extended.yaml", ["combined"], ["clinical", "kinetic", "deep:*"], False)
    settings = settings.model_copy(update={"combined_selection": "gated"})
    result: dict[str, Any] = {"benchmark": "signal_blocks", "cohorts": {}, "pooled": {}}
    pooled: dict[str, list[float]] = defaultdict(list)
    for cohort in args.cohorts.split(","):
        table = load_cohort(args.cache, cohort, args.tag)
        if table is None:
            print(f"{cohort}: no feature tables, left out", flush=True)
            continue
        table = table.rename(columns=block_column)
        splits = make_splits(table["label"].astype(int), args.splits, 1000)
        records = Parallel(n_jobs=args.workers)(delayed(fit_split)(table, s, settings) for s in splits)
        ref: dict[str, dict[int, float]] = defaultdict(dict)
        for r in reference[cohort]["records"]:
            ref[r["method"]][r["split"]] = r["auc"]
        auc = np.array([r["auc"] for r in records])
        paired = {}
        for method in ("plain", "extg:combined", "ext:stacked", "extdense:combined"):
            d = auc - np.array([ref[method][r["split"]] for r in records])
            pooled[method] += d.tolist()
            paired[method] = {"mean": float(d.mean()), "sd": float(d.std(ddof=1)), "lost": int((d < 0).sum())}
        result["cohorts"][cohort] = {"test_auc": float(auc.mean()), "paired": paired, "records": records}
        vs = {m: f"{p['mean']:+.3f} ({p['lost']}/{len(records)})" for m, p in paired.items()}
        print(cohort, f"{auc.mean():.3f}", vs, flush=True)
    for method, d in pooled.items():
        a = np.asarray(d)
        result["pooled"][method] = {"mean": float(a.mean()), "sd": float(a.std(ddof=1)), "lost": int((a < 0).sum())}
    result["machine"] = machine_info()
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["pooled"], indent=1))


if __name__ == "__main__":
    main()
