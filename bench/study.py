"""Benchmark: the whole study end to end at the reference study's scale, per stage wall time and peak RSS.

Generates one synthetic cohort (``realistic`` size by default: in-plane 256–512 px, 40–100 slices) of the
largest N, then runs the full study (configs/paper.yaml's settings: registration, three ROI settings,
PyRadiomics ct_default on the arterial phase with stability, frozen ResNet50 at 224², every model arm,
statistics, report) on the first N patients for each N (default 100, 200, 496), each in a fresh run folder,
so no stage is cached. Peak RSS is sampled (every 0.2 s) over the study process and all its worker
processes together, per stage.

    python bench/study.py                              # N = 100, 200, 496, realistic images (hours on 2 cores)
    python bench/study.py --sizes 20 --size small --stability 0 \
        --radiomics-params configs/radiomics_demo.yaml --out bench/results/study_smoke_n20.json   # smoke run

Writes ``bench/results/study_<size>.json`` (or ``--out``) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# bench/radiomics.py would shadow the PyRadiomics package for a script run from bench/ (and for its
# spawned workers, which inherit sys.path): drop this folder from the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


class RssSampler:
    """Peak resident memory of this process plus its children, per named stage (MiB)."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.current = "setup"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._rss()
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), rss)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _observer(sampler: RssSampler) -> Any:
    from rccgrade.study import StudyObserver

    class Obs(StudyObserver):
        def stage_started(self, name: str, description: str) -> None:
            sampler.current = name
            print(f"  {name} …", flush=True)

        def stage_finished(self, record: Any) -> None:
            print(f"  {record.name:<10} {record.status:<7} {record.seconds:8.1f} s  {record.detail}", flush=True)

    return Obs()


def bench_config(
    manifest: Path, runs_dir: Path, name: str, workers: int, stability: int, image_size: int, params: str | None
) -> Any:
    """configs/paper.yaml's settings on ``manifest`` (deep weights fall back to none offline).

    ``stability`` 0 disables the ICC analysis; ``params`` replaces the radiomics parameter file.
    """
    import yaml

    from rccgrade.config import config_from_dict

    data = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    data["name"] = name
    data["runs_dir"] = str(runs_dir)
    data["cohort"]["manifest"] = str(manifest)
    data["parallel"]["workers"] = workers
    if stability >= 2:
        data["radiomics"]["stability"]["n_perturbations"] = stability
    else:
        data["radiomics"]["stability"]["enabled"] = False
    if params:
        data["radiomics"]["params"] = str(Path(params).resolve())
    data["preprocess"]["image_size"] = image_size
    return config_from_dict(data, source="bench", base_dir=ROOT / "configs")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON."""
    from rccgrade.parallel import ParallelSettings
    from rccgrade.provenance import package_versions, platform_info
    from rccgrade.study import run_study
    from rccgrade.synth.writer import write_cohort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 496], help="cohort sizes N")
    ap.add_argument("--size", choices=["small", "realistic"], default="realistic", help="synthetic image size")
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0: all cores)")
    ap.add_argument("--stability", type=int, default=4, help="perturbed copies per case for the ICC (0: off)")
    ap.add_argument("--radiomics-params", default=None, help="radiomics params file (default: paper's ct_default)")
    ap.add_argument("--image-size", type=int, default=224, help="slice image side (px)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-study", help="work folder (deleted first)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/study_<size>.json)")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / f"study_{args.size}.json"
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)

    n_max = max(args.sizes)
    print(f"generating {n_max} synthetic patients ({args.size}) …", flush=True)
    t0 = time.perf_counter()
    manifest = write_cohort(
        args.work / "cohort", n=n_max, seed=0, size=args.size, parallel=ParallelSettings(workers=args.workers)
    )
    synth_s = time.perf_counter() - t0
    full = pd.read_csv(manifest, dtype=str)
    results: list[dict[str, Any]] = []
    for n in sorted(args.sizes):
        sub = manifest.parent / f"manifest_{n}.csv"
        full.head(n).to_csv(sub, index=False)
        cfg = bench_config(
            sub, args.work / "runs", f"n{n}", args.workers, args.stability, args.image_size, args.radiomics_params
        )
        print(f"study N = {n}", flush=True)
        with RssSampler() as sampler:
            t1 = time.perf_counter()
            res = run_study(cfg, observer=_observer(sampler), fallback_weights="none")
            wall = time.perf_counter() - t1
        metrics = res.metrics.get("arms", {})
        results.append(
            {
                "n": n,
                "wall_s": round(wall, 2),
                "stages": [
                    {
                        "name": r.name,
                        "status": r.status,
                        "seconds": round(r.seconds, 2),
                        "seconds_per_case": round(r.seconds / n, 3),
                        "peak_rss_mib": round(sampler.peaks[r.name], 1) if r.name in sampler.peaks else None,
                        "n_failures": r.n_failures,
                    }
                    for r in res.records
                ],
                "peak_rss_mib": round(max(sampler.peaks.values()), 1),
                "test_auc": {a: m.get("test.auc") for a, m in metrics.items()},
                "warnings": res.warnings,
            }
        )
        print(f"  total {wall:.1f} s, peak RSS {results[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    payload = {
        "benchmark": "study",
        "description": "whole study end to end (configs/paper.yaml settings) on a synthetic cohort, fresh run folders",
        "image_size": args.size,
        "synth_seconds": round(synth_s, 2),
        "synth_seconds_per_case": round(synth_s / n_max, 3),
        "settings": {
            "workers": args.workers,
            "stability_perturbations": args.stability,
            "slice_px": args.image_size,
            "radiomics_params": args.radiomics_params or "ct_default",
        },
        "results": results,
        "machine": platform_info(),
        "packages": {
            k: v
            for k, v in package_versions().items()
            if k in ("rccgrade", "torch", "pyradiomics", "SimpleITK", "scikit-learn")
        },
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
