"""Benchmark / acceptance of preprocessing on a synthetic cohort: residual misalignment vs truth.csv.

Usage::

    .venv/bin/python bench/preprocess.py --n 20 --size small --workers 2
    .venv/bin/python bench/preprocess.py --cohort /path/cohort/manifest.csv --size realistic --workers 1

``--cohort`` reuses a synthetic cohort written earlier (its first ``--n`` patients), so runs before and after
a change see the same cases. Besides wall time it records CPU seconds (user + system of this process and
its finished workers) and the one-minute load average, since the machine may be shared.

Writes ``bench/results/preprocess_<size>.json`` (numbers + machine) and prints a summary. The
acceptance criteria of issue 4: residual < 1 voxel for ≥ 95 % of cases, and smaller than before for all
but flagged ones. "Voxel" is the smallest spacing (in-plane; strict); the largest is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from rccgrade.cohort.manifest import load_cohort
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess import PreprocessSettings, run_preprocess
from rccgrade.preprocess.qc import registration_residuals
from rccgrade.synth import write_cohort


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--size", default="small", choices=["small", "realistic"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="Folder for the cohort and outputs (default: temp).")
    parser.add_argument("--cohort", type=Path, default=None, help="Reuse this synthetic cohort's manifest.csv.")
    parser.add_argument("--out", type=Path, default=None, help="Result JSON (default results/preprocess_<size>.json).")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="rccgrade-bench-pre-"))
    parallel = ParallelSettings(backend="serial" if args.workers == 1 else "processes", workers=args.workers)
    t0 = time.perf_counter()
    if args.cohort is not None:
        full = pd.read_csv(args.cohort, dtype=str)
        manifest = work / "manifest.csv"
        full.head(args.n).assign(
            **{
                c: [
                    str((args.cohort.parent / v).resolve()) if isinstance(v, str) and v else v
                    for v in full[c].head(args.n)
                ]
                for c in ("arterial", "nephrographic", "excretory", "mask")
                if c in full
            }
        ).to_csv(manifest, index=False)
        shutil.copy(args.cohort.parent / "truth.csv", work / "truth.csv")
        t_synth = float("nan")
    else:
        manifest = write_cohort(work / "cohort", n=args.n, seed=args.seed, size=args.size, parallel=parallel)
        t_synth = time.perf_counter() - t0
    cohort = load_cohort(manifest)
    if (work / "pre").exists():
        shutil.rmtree(work / "pre")
    load0 = os.getloadavg()[0]
    c0 = _cpu()
    t0 = time.perf_counter()
    result = run_preprocess(cohort, work / "pre", PreprocessSettings(), parallel)
    t_pre = time.perf_counter() - t0
    cpu_pre = _cpu() - c0
    truth = pd.read_csv(manifest.parent / "truth.csv", dtype={"patient_id": str})
    truth = truth[truth["patient_id"].isin([c.patient_id for c in cohort])]
    res = registration_residuals(work / "pre", truth)
    res.to_csv(work / "residuals.csv", index=False)

    ok = res.dropna(subset=["after_mm"])
    flagged = ok["status"].isin(["failed", "worsened", "implausible"])
    summary = {
        "n_cases": args.n,
        "size": args.size,
        "seed": args.seed,
        "cases_ok": len(result.ok_ids),
        "cases_failed": result.failed_ids,
        "cases_flagged": result.flagged_ids,
        "phase_registrations": len(ok),
        "before_mm_mean": float(ok["before_mm"].mean()),
        "before_mm_max": float(ok["before_mm"].max()),
        "after_mm_mean": float(ok["after_mm"].mean()),
        "after_mm_median": float(ok["after_mm"].median()),
        "after_mm_max": float(ok["after_mm"].max()),
        "voxel_mm_min": float(ok["voxel_mm"].min()),
        "voxel_max_mm_max": float(ok["voxel_max_mm"].max()),
        "frac_below_1_voxel_inplane": float((ok["after_mm"] < ok["voxel_mm"]).mean()),
        "frac_below_1_voxel_max": float((ok["after_mm"] < ok["voxel_max_mm"]).mean()),
        "frac_cases_all_phases_below_1_voxel_inplane": float(
            ok.assign(below=ok["after_mm"] < ok["voxel_mm"]).groupby("patient_id")["below"].all().mean()
        ),
        "n_not_improved_unflagged": int(((ok["after_mm"] >= ok["before_mm"]) & ~flagged).sum()),
        "status_counts": ok["status"].value_counts().to_dict(),
        "seconds_synth": None if args.cohort is not None else round(t_synth, 1),
        "seconds_preprocess": round(t_pre, 1),
        "seconds_per_case": round(t_pre / args.n, 2),
        "cpu_seconds_preprocess": round(cpu_pre, 1),
        "cpu_seconds_per_case": round(cpu_pre / args.n, 2),
        "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "workers": args.workers,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "work_dir": str(work),
    }
    out = args.out or Path(__file__).parent / "results" / f"preprocess_{args.size}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(res.to_string())


if __name__ == "__main__":
    main()
