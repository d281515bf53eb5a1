"""Benchmark of the radiomics stage against PyRadiomics' own batch command, on the same cases and settings.

Measures, for rccgrade (``extract_radiomics``, local processes) and for ``pyradiomics input.csv --jobs N``:
wall time, seconds per case, features per case, peak RSS of the whole process tree (sampled every
50 ms with psutil, all workers summed), and for rccgrade the parallel speed-up and efficiency
(single-process wall ÷ (workers × parallel wall); 1.0 is perfect scaling). Also checks that both tools
give the same feature values (the synthetic images are written in LPS, so canonical reorientation is a
no-op and the values must agree).

Usage::

    .venv/bin/python bench/radiomics.py --cases 4 --workers 2 [--params ct_default]

Writes ``bench/results/radiomics.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named radiomics.py: drop its folder from the import path so ``import radiomics`` finds PyRadiomics.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
VENV_BIN = Path(sys.executable).parent


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS of the process tree in MiB, exit code)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.returncode != 0:
        print(out[-3000:], file=sys.stderr)
    return wall, peak / 2**20, proc.returncode


def _run_ours(cases_json: Path, out: Path, params: str, workers: int) -> None:
    """Child-process entry point: run extract_radiomics on the cases listed in ``cases_json``."""
    from rccgrade.parallel import ParallelSettings
    from rccgrade.radiomics.extract import RadiomicsInput, extract_radiomics
    from rccgrade.radiomics.settings import RadiomicsSettings, StabilitySettings

    rows = json.loads(cases_json.read_text())
    inputs = [RadiomicsInput(r["patient_id"], {"arterial": Path(r["image"])}, Path(r["mask"])) for r in rows]
    settings = RadiomicsSettings(params=params, phases=["arterial"], stability=StabilitySettings(enabled=False))
    parallel = ParallelSettings(backend="serial" if workers == 1 else "processes", workers=workers)
    result = extract_radiomics(inputs, out, settings, parallel)
    if not result.failures.empty:
        raise SystemExit(f"failures: {result.failures.to_dict('records')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", default="ct_default")
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "radiomics.json")
    parser.add_argument(
        "--ours-child", nargs=4, metavar=("CASES_JSON", "OUT", "PARAMS", "WORKERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.ours_child:
        cases_json, out, params, workers = args.ours_child
        _run_ours(Path(cases_json), Path(out), params, int(workers))
        return

    import numpy as np
    import pandas as pd

    import radiomics
    from rccgrade.radiomics.params import params_path
    from rccgrade.synth import write_cohort

    work = Path(tempfile.mkdtemp(prefix="bench_radiomics_"))
    try:
        manifest = write_cohort(work / "cohort", args.cases, args.seed, size=args.size)
        frame = pd.read_csv(manifest)
        rows = [
            {
                "patient_id": str(r.patient_id),
                "image": str((manifest.parent / r.arterial).resolve()),
                "mask": str((manifest.parent / r.mask).resolve()),
            }
            for r in frame.itertuples()
        ]
        cases_json = work / "cases.json"
        cases_json.write_text(json.dumps(rows))
        pd.DataFrame({"Image": [r["image"] for r in rows], "Mask": [r["mask"] for r in rows]}).to_csv(
            work / "input.csv", index=False
        )
        params_file = params_path(args.params)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

        results: dict[str, dict[str, float]] = {}
        ours_tables = {}
        for workers in sorted({1, args.workers}):
            out = work / f"ours_{workers}"
            cmd = [sys.executable, __file__, "--ours-child", str(cases_json), str(out), args.params, str(workers)]
            wall, rss, rc = _measure(cmd, env)
            if rc != 0:
                raise SystemExit(f"rccgrade run with {workers} worker(s) failed")
            table = pd.read_parquet(out / "features.parquet")
            ours_tables[workers] = table
            results[f"rccgrade_workers{workers}"] = {
                "wall_s": wall,
                "s_per_case": wall / args.cases,
                "features_per_case": int(table.shape[1]),
                "peak_rss_mib": rss,
            }
        pyrad_tables = {}
        for workers in sorted({1, args.workers}):
            out_csv = work / f"pyradiomics_{workers}.csv"
            cmd = [
                str(VENV_BIN / "pyradiomics"),
                str(work / "input.csv"),
                "--param",
                str(params_file),
                "--jobs",
                str(workers),
                "-o",
                str(out_csv),
                "-f",
                "csv",
            ]
            wall, rss, rc = _measure(cmd, env)
            if rc != 0:
                raise SystemExit(f"pyradiomics --jobs {workers} failed")
            table = pd.read_csv(out_csv)
            feats = [c for c in table.columns if c.startswith("original_") or c.startswith(("log-", "wavelet-"))]
            pyrad_tables[workers] = table
            results[f"pyradiomics_jobs{workers}"] = {
                "wall_s": wall,
                "s_per_case": wall / args.cases,
                "features_per_case": len(feats),
                "peak_rss_mib": rss,
            }

        t1 = results["rccgrade_workers1"]["wall_s"]
        tw = results[f"rccgrade_workers{args.workers}"]["wall_s"]
        p1 = results["pyradiomics_jobs1"]["wall_s"]
        pw = results[f"pyradiomics_jobs{args.workers}"]["wall_s"]
        # Agreement of feature values between the two tools (same canonical images, same settings).
        ours = ours_tables[args.workers]
        theirs = pyrad_tables[args.workers]
        names = [c.split(":", 2)[2] for c in ours.columns]
        a = ours.to_numpy(float)
        b = theirs[names].to_numpy(float)
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
        summary = {
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            },
            "pyradiomics_version": radiomics.__version__,
            "cases": args.cases,
            "size": args.size,
            "params": args.params,
            "workers": args.workers,
            "runs": results,
            "rccgrade_speedup": t1 / tw,
            "rccgrade_parallel_efficiency": t1 / (args.workers * tw),
            "pyradiomics_speedup": p1 / pw,
            "pyradiomics_parallel_efficiency": p1 / (args.workers * pw),
            "rccgrade_vs_pyradiomics_wall_ratio": tw / pw,
            "max_relative_difference_vs_pyradiomics": float(np.nanmax(rel)),
            "note": "wall times include interpreter start-up and imports (about 1-2 s per process), which "
            "dominate with few small cases; efficiency = single-process wall / (workers x parallel wall).",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
