"""Benchmark of the synthetic cohort generator: seconds per case for both sizes, and writing a cohort.

Measures, per size, wall-clock and CPU seconds of :func:`rccgrade.synth.generate_case` (in this
process, one SimpleITK thread so CPU time is comparable across machines), and the wall-clock time of
:func:`rccgrade.synth.write_cohort` (generation + writing NIfTI, serial). Records the machine
(platform, CPU count, load average, Python/NumPy/SciPy/SimpleITK versions) because wall-clock time on
a shared machine depends on its load.

Usage::

    .venv/bin/python bench/synth.py --n-small 10 --n-realistic 2

Writes ``bench/results/synth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def _case_times(size: str, n: int, seed: int) -> dict[str, float]:
    from rccgrade.synth import generate_case

    generate_case(0, seed, "small")  # warm-up (imports, caches)
    wall, cpu, voxels = [], [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        case = generate_case(i, seed, size)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        sx, sy, sz = case.images["arterial"].GetSize()
        voxels.append(sx * sy * sz)
    return {
        "n": n,
        "wall_s_per_case_mean": sum(wall) / n,
        "wall_s_per_case_max": max(wall),
        "cpu_s_per_case_mean": sum(cpu) / n,
        "voxels_per_phase_mean": sum(voxels) / n,
    }


def _cohort_time(size: str, n: int, seed: int) -> float:
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth import write_cohort

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_cohort(Path(tmp), n=n, seed=seed, size=size, parallel=ParallelSettings(backend="serial"))
        return (time.perf_counter() - t0) / n


def main() -> None:
    """Run the benchmark and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-small", type=int, default=10)
    parser.add_argument("--n-realistic", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "synth.json")
    args = parser.parse_args()

    import numpy as np
    import scipy
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    load_before = os.getloadavg()
    results = {
        "small": _case_times("small", args.n_small, args.seed),
        "realistic": _case_times("realistic", args.n_realistic, args.seed),
    }
    results["small"]["write_nifti_wall_s_per_case"] = _cohort_time("small", args.n_small, args.seed)
    results["realistic"]["write_nifti_wall_s_per_case"] = _cohort_time("realistic", 1, args.seed)
    report = {
        "benchmark": "synth",
        "results": results,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "simpleitk": sitk.Version_VersionString(),
        },
        "seed": args.seed,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
