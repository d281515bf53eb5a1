"""Calibration and power of the gated ``combined``'s source test (models/source_gate.py).

The gate keeps a source when its inner-CV fold AUCs beat 0.5. This measures, on the same fold AUCs, how often
each candidate test lets a source in at several significance levels:

* ``naive1``: one-sample t-test of the fold AUCs of one 5-fold CV (4 degrees of freedom; the first gate);
* ``naive3``: the same on 3 repeats (15 correlated fold AUCs treated as independent);
* ``corr3`` / ``corr5``: the Nadeau–Bengio corrected resampled t-test on 3 / 5 repeats (the gate now).

Two kinds of source:

* **null**: fresh pure-noise sources (``--width`` standard Gaussian columns, a new draw each time) with the
  labels of ``--n`` patients drawn from a cohort, through the deep-feature chain of ``configs/default.yaml``
  (``--n 140``, the demo's training size) or of ``configs/extended.yaml`` (other ``--n``);
* **real**: every source of the issue-14 cohorts (``clinical``, ``radiomics``, ``kinetic``, and the benchmark's
  ``deep:noise``) on the training patients of each benchmark split (``--cohorts``), and of a demo run's tables
  (``--demo RUN_DIR``: clinical, radiomics, random-weight deep features).

Each source's fold AUCs come from :func:`rccgrade.models.source_gate.source_signal` with ``repeats=5`` (the
tests on fewer repeats use its first repeats). Writes ``bench/results/gate_calibration.json``.

Usage::

    .venv/bin/python bench/gate_calibration.py --null 140:100,347:80 --cache /work/bench_cache/s5 \\
        --cohorts c1_seed1,c2_seed2,c3_seed3_mix --demo /tmp/demo/runs/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench.grade_signal import EXT_ARMS, _model_settings, make_splits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 5
FOLDS = 5
LEVELS = (0.001, 0.005, 0.01, 0.05)


def tests(fold_aucs: list[float]) -> dict[str, float]:
    """p-values of the candidate tests from one source's ``REPEATS × FOLDS`` fold AUCs (repeat-major order)."""
    from rccgrade.stats.resampled import corrected_resampled_ttest

    a = np.asarray(fold_aucs, dtype=float).reshape(REPEATS, FOLDS)

    def naive(v: np.ndarray) -> float:  # ratio 0: the plain one-sample t-test
        return corrected_resampled_ttest(v.ravel(), 0.0).p_value

    def corrected(v: np.ndarray) -> float:
        return corrected_resampled_ttest(v.ravel(), 1 / (FOLDS - 1)).p_value

    return {"naive1": naive(a[:1]), "naive3": naive(a[:3]), "corr3": corrected(a[:3]), "corr5": corrected(a)}


def _signal(chain: Any, x: pd.DataFrame, y: np.ndarray, seed: int) -> list[float]:
    from rccgrade.models.source_gate import source_signal

    return source_signal(chain, x, y, cv=FOLDS, repeats=REPEATS, random_state=seed)["fold_aucs"]


def null_sources(cache: Path, n: int, draws: int, width: int) -> list[dict[str, Any]]:
    """Fold AUCs of ``draws`` fresh pure-noise sources with ``n`` patients' labels from ``c1_seed1``."""
    from rccgrade.config import load_config
    from rccgrade.models.arms import build_arm

    labels = pd.read_parquet(cache / "features/c1_seed1_extdemo_000.parquet", columns=["label"])["label"]
    if n == 140:
        settings = load_config(ROOT / "configs/default.yaml").models
    else:
        settings = _model_settings(ROOT / "configs/extended.yaml", EXT_ARMS, ["deep:noise"], False)
    settings = settings.model_copy(update={"combined_selection": "gated", "combined_sources": ["deep:noise"]})
    columns = [f"deep:noise:f{j:04d}" for j in range(width)]
    out = []
    for i in range(draws):
        rng = np.random.default_rng([5150, n, i])
        y = labels.to_numpy().astype(int)[rng.choice(len(labels), n, replace=False)]
        x = pd.DataFrame(rng.standard_normal((n, width)), columns=columns)
        chain = build_arm("combined", columns, settings, i).named_steps["features"].transformers[0][2]
        aucs = _signal(chain, x, y, i)
        out.append({"n": n, "draw": i, "fold_aucs": aucs, "p": tests(aucs)})
        print(f"null n={n} draw {i}: mean fold AUC {np.mean(aucs):.3f}", flush=True)
    return out


def real_sources(name: str, x: pd.DataFrame, y: pd.Series, settings: Any, n_splits: int) -> list[dict[str, Any]]:
    """Fold AUCs of every source of ``settings.combined_sources`` on each benchmark split's training patients."""
    from rccgrade.models.arms import build_arm

    out = []
    for split in make_splits(y, n_splits, 1000):
        union = build_arm("combined", list(x.columns), settings, split["seed"]).named_steps["features"]
        columns = union.source_columns(x)
        lab = y.loc[split["train"]].to_numpy()
        for source, _, chain in union.transformers:
            aucs = _signal(chain, x.loc[split["train"], columns[source]], lab, split["seed"])
            out.append({"data": name, "split": split["k"], "source": source, "fold_aucs": aucs, "p": tests(aucs)})
        print(name, split["k"], {r["source"]: round(float(np.mean(r["fold_aucs"])), 3) for r in out[-4:]}, flush=True)
    return out


def cohort_sources(cache: Path, cohort: str, n_splits: int, width: int) -> list[dict[str, Any]]:
    table = pd.read_parquet(cache / f"features/{cohort}_extdemo_000.parquet")
    y = table["label"].astype(int)
    x = table[[c for c in table.columns if c.split(":", 1)[0] in ("rad", "clin", "kin")]]
    rng = np.random.default_rng([77, len(table)])  # grade_signal.py's noise source
    columns = [f"deep:noise:f{i:04d}" for i in range(width)]
    noise = pd.DataFrame(rng.standard_normal((len(table), width)), index=table.index, columns=columns)
    sources = ["clinical", "radiomics", "kinetic", "deep:noise"]
    settings = _model_settings(ROOT / "configs/extended.yaml", EXT_ARMS, sources, False)
    return real_sources(cohort, x.join(noise), y, settings.model_copy(update={"combined_selection": "gated"}), n_splits)


def demo_sources(run: Path, n_splits: int) -> list[dict[str, Any]]:
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.config import load_config
    from rccgrade.features.clinical import clinical_table
    from rccgrade.features.table import load_table

    rad, _ = load_table(next(run.glob("cache/radiomics-*/features.parquet")))
    deep, _ = load_table(next(run.glob("cache/deep-*/features.parquet")))
    cohort = load_cohort(run / "cohort" / "manifest.csv")
    x = rad.join(deep, how="inner").join(clinical_table(cohort), how="inner")
    y = pd.Series(cohort.labels()).reindex(x.index).astype(int)
    settings = load_config(ROOT / "configs/default.yaml").models.model_copy(update={"combined_selection": "gated"})
    return real_sources("demo", x, y, settings, n_splits)


def pass_rates(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Test → level → fraction of records with ``p < level``."""
    return {
        test: {str(level): float(np.mean([r["p"][test] < level for r in records])) for level in LEVELS}
        for test in records[0]["p"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/work/bench_cache/s5"))
    parser.add_argument("--null", default="140:100,347:80", help="n:draws,… of fresh pure-noise sources")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--cohorts", default="c1_seed1,c2_seed2,c3_seed3_mix")
    parser.add_argument("--demo", type=Path, default=None, help="a finished demo run (its cached feature tables)")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/gate_calibration.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    null: list[dict[str, Any]] = []
    for spec in filter(None, args.null.split(",")):
        n, draws = (int(v) for v in spec.split(":"))
        null += null_sources(args.cache, n, draws, args.width)
    real: list[dict[str, Any]] = []
    for cohort in filter(None, args.cohorts.split(",")):
        real += cohort_sources(args.cache, cohort, args.splits, args.width)
    if args.demo is not None:
        real += demo_sources(args.demo, args.splits)
    summary: dict[str, Any] = {"null": {}, "real": {}}
    for n in sorted({r["n"] for r in null}):
        rows = [r for r in null if r["n"] == n]
        summary["null"][f"n={n}"] = {"draws": len(rows), "pass_rate": pass_rates(rows)}
    for data in dict.fromkeys(r["data"] for r in real):
        for source in dict.fromkeys(r["source"] for r in real if r["data"] == data):
            rows = [r for r in real if r["data"] == data and r["source"] == source]
            summary["real"][f"{data}:{source}"] = {
                "splits": len(rows),
                "mean_fold_auc": float(np.mean([np.mean(r["fold_aucs"]) for r in rows])),
                "pass_rate": pass_rates(rows),
                "max_p": {t: float(max(r["p"][t] for r in rows)) for t in rows[0]["p"]},
            }
    result = {
        "benchmark": "gate_calibration",
        "repeats": REPEATS,
        "folds": FOLDS,
        "levels": list(LEVELS),
        "summary": summary,
        "null": null,
        "real": real,
        "wall_s": time.perf_counter() - t0,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load": list(os.getloadavg())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
