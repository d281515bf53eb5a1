"""Benchmark of the models stage: leakage (honest vs naive select-then-split) over seeds, fusion gain, timing.

* Leakage: 200 patients, 1,000 noise features, permuted labels. The honest radiomics arm (selection inside
  the pipeline, fitted on training patients only) should score test AUC ≈ 0.5 with a 95% DeLong CI that
  contains 0.5; the naive pipeline (top-20 Mann–Whitney features chosen on ALL patients, then split) scores
  far higher. Reported per seed: both AUCs, the honest CI, and the fit time.
* Fusion: 400 patients with signal split across clinical, radiomics and deep features; test AUC per arm.
* Speed (``--speed DIR``): the models stage (``fit_arms`` at the ``configs/paper.yaml`` model settings: every
  arm, nested OOF) on the demo tables of ``DIR`` (``radiomics.parquet`` 107 features widened with
  noise-perturbed copies to the paper's 1,316, ``deep.parquet`` 6,144 float32 features, ``manifest.csv``
  with clinical columns and ``grade``) at N = 200, and at N = 496 resampled from them with noise; wall time,
  CPU seconds of the process and its worker processes, and the load average, for 1 and 2 workers; a
  cProfile summary of the first size with 1 worker (``bench/results/models_profile.txt``).

Usage::

    .venv/bin/python bench/models.py --seeds 5
    .venv/bin/python bench/models.py --speed /work/bench_cache/demo200 --sizes 200 496
    .venv/bin/python bench/models.py --speed /work/bench_cache/demo200 --sizes 496 --workers 2

Writes ``bench/results/models.json`` (numbers + machine).
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


CLINICAL = ("age", "sex", "bmi", "symptoms", "haemoglobin", "platelets", "crp", "size_cm")


def demo_tables(folder: Path, n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Demo FeatureTable (clinical + radiomics + deep) with ``n`` rows (resampled with 5 % noise above 200)."""
    rad = pd.read_parquet(folder / "radiomics.parquet")
    deep = pd.read_parquet(folder / "deep.parquet")
    man = pd.read_csv(folder / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    clin = pd.DataFrame(index=man.index)
    for c in CLINICAL:
        if c in man.columns:
            clin[f"clin:{c}"] = man[c].astype("category") if man[c].dtype == object else man[c].astype(float)
    table = clin.join(rad).join(deep)
    y = (man["grade"] >= 3).astype(int).reindex(table.index)
    if n > len(table):
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(table), size=n, replace=True)
        table, y = table.iloc[rows].copy(), y.iloc[rows].copy()
        num = [c for c in table.columns if not c.startswith("clin:")]
        sd = table[num].std().to_numpy()
        noise = rng.normal(size=(n, len(num))) * sd * 0.05
        table[num] = (table[num].to_numpy() + noise).astype(np.float32 if deep.dtypes.iloc[0] == np.float32 else float)
        table[[c for c in num if c.startswith("rad:")]] = table[[c for c in num if c.startswith("rad:")]].astype(float)
    else:
        table, y = table.iloc[:n], y.iloc[:n]
    ids = pd.Index([f"p{i:04d}" for i in range(len(table))], name="patient_id")
    table.index, y.index = ids, ids
    return table, y


PAPER_RADIOMICS = 1316
"""Radiomics features of the paper configuration (arterial phase, original + LoG + wavelet); the demo has 107."""


def widen_radiomics(table: pd.DataFrame, width: int = PAPER_RADIOMICS, seed: int = 1) -> pd.DataFrame:
    """Add noise-perturbed copies of the ``rad:`` columns until there are ``width`` of them.

    Copy k of feature j is ``x_j + 0.3 · SD(x_j) · N(0, 1)`` (r ≈ 0.96 with its original), so the widened
    block is as redundant as a real filter bank (LoG/wavelet variants of one feature) and the selection
    steps (univariate test, correlation filter, LASSO) do representative work.
    """
    rad = [c for c in table.columns if c.startswith("rad:")]
    if len(rad) >= width:
        return table
    rng = np.random.default_rng(seed)
    base = table[rad].to_numpy(dtype=np.float64)
    sd = base.std(axis=0)
    extra = {}
    for k in range(width - len(rad)):
        j = k % len(rad)
        extra[f"{rad[j]}_copy{k + 1}"] = base[:, j] + rng.normal(size=len(base)) * sd[j] * 0.3
    return pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)


def paper_settings() -> Any:
    """The ``models`` section of ``configs/paper.yaml`` (every arm, nested OOF, union fusion, logistic stacking)."""
    import yaml

    from rccgrade.models.settings import ModelSettings

    config = Path(__file__).resolve().parent.parent / "configs" / "paper.yaml"
    return ModelSettings(**yaml.safe_load(config.read_text())["models"])


class CpuMeter:
    """CPU seconds of this process and of its worker processes (loky workers live on between runs).

    Live children are read with psutil (per pid, so a worker reused from an earlier run only adds what it
    did since); children that exited and were reaped come from ``getrusage(RUSAGE_CHILDREN)``.
    """

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.cpu0 = time.process_time()
        self.reaped0 = self._reaped()
        self.live0 = self._live()
        self.wall0 = time.perf_counter()
        self.load0 = os.getloadavg()

    @staticmethod
    def _reaped() -> float:
        import resource

        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def _live(self) -> dict[int, float]:
        import psutil

        out = {}
        for child in self.proc.children(recursive=True):
            try:
                t = child.cpu_times()
                out[child.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out

    def read(self) -> dict[str, Any]:
        """Seconds since construction: wall, CPU of this process, CPU of its children, and the load average."""
        live = self._live()
        children = sum(v - self.live0.get(pid, 0.0) for pid, v in live.items()) + self._reaped() - self.reaped0
        main = time.process_time() - self.cpu0
        return {
            "wall_seconds": time.perf_counter() - self.wall0,
            "cpu_seconds_main": main,
            "cpu_seconds_children": children,
            "cpu_seconds_total": main + children,
            "loadavg_start": list(self.load0),
            "loadavg_end": list(os.getloadavg()),
        }


def speed(folder: Path, sizes: list[int], workers: list[int], profile_out: Path) -> list[dict]:
    """Wall and CPU time of ``fit_arms`` at the paper's model settings on the demo tables, per N and workers.

    Paper settings (``configs/paper.yaml``): every arm (clinical, radiomics, deep per ROI, combined,
    stacked), nested OOF, 5 folds, C tuned over 4 values; 6,144 float32 deep features in three ROI blocks;
    the radiomics block widened to the paper's 1,316 columns (:func:`widen_radiomics`). On a shared machine
    the wall time depends on the load (recorded); the CPU seconds (this process and its workers) are the
    load-independent cost. The first size with one worker also runs under cProfile (CPU clock), whose
    summary goes to ``profile_out``; profiling slows it down, so its times are recorded but flagged.
    """
    import cProfile
    import io
    import pstats

    from sklearn.metrics import roc_auc_score

    from rccgrade.models.arms import fit_arms
    from rccgrade.models.split import make_split, train_test_ids

    settings = paper_settings()
    rows = []
    for n in sizes:
        table, y = demo_tables(folder, n)
        table = widen_radiomics(table)
        train, test = train_test_ids(make_split(y, seed=0))
        for w in workers:
            profiled = w == 1 and n == sizes[0]
            prof = cProfile.Profile(time.process_time) if profiled else None
            meter = CpuMeter()
            if prof is not None:
                prof.enable()
            res = fit_arms(table, y, train, settings, seed=0, n_jobs=w)
            if prof is not None:
                prof.disable()
            row = {"n": n, "workers": w, "profiled": profiled, **meter.read(), "columns": table.shape[1]}
            if prof is not None:
                buf = io.StringIO()
                buf.write(f"fit_arms at N = {n}, 1 worker, paper settings, {table.shape[1]} columns; CPU clock\n")
                pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(50)
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
                profile_out.write_text(buf.getvalue())
            row["arms"] = res.arms
            row["test_auc"] = {a: float(roc_auc_score(y.loc[test], res.test_proba[a])) for a in res.arms}
            rows.append(row)
            print(row, flush=True)
    return rows


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
    parser.add_argument("--speed", type=Path, default=None, help="folder of the demo tables: run the speed part only")
    parser.add_argument("--sizes", type=int, nargs="*", default=[200, 496])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--label", default="after", help="key of this speed run in the JSON (e.g. before/after)")
    args = parser.parse_args()
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    if args.speed is not None:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
        profile = args.out.parent / (
            "models_profile.txt" if args.label == "after" else f"models_profile_{args.label}.txt"
        )
        result.setdefault("speed", {})[args.label] = {
            "rows": speed(args.speed, args.sizes, args.workers, profile),
            "machine": {**machine, "loadavg": os.getloadavg()},
        }
        args.out.write_text(json.dumps(result, indent=1))
        return

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
