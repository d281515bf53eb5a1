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
    python bench/study.py --sizes 25 50 --cohort /work/cohort/manifest.csv --profile   # reuse a cohort, profile

Per stage it records wall seconds, CPU seconds (this process and its finished worker processes: user +
system, from ``os.times``), peak RSS, and the one-minute load average at its start and end (on a shared
machine wall time says little without it). ``--profile`` runs each stage under cProfile and keeps its top
functions (with ``--workers 1`` everything runs serially in this process and is profiled; with more workers
only this process's share is); a linear fit ``seconds = a + b·N`` per stage (wall and CPU) over the sizes run and
its projection to N = 496 are added.

Writes ``bench/results/study_<size>.json`` (or ``--out``) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
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


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, its finished children and its live children (loky workers live
    across stages, so finished children alone would miss the models stage's parallel work)."""
    import psutil

    t = os.times()
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            c = child.cpu_times()
            live += c.user + c.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return t.user + t.system + t.children_user + t.children_system + live


def _profile_summary(profile: cProfile.Profile, top: int = 15) -> list[str]:
    """The ``top`` functions by cumulative time, one line each (calls, cumulative s, own s, function)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
    out = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(f"{nc:>7} calls  {ct:8.2f} s cum  {tt:8.2f} s own  {func} ({where})")
    return out


class StageMeter:
    """Per stage: CPU seconds, load average at start and end, and (optionally) a cProfile summary."""

    def __init__(self, profile: bool) -> None:
        self.profile = profile
        self.cpu: dict[str, float] = {}
        self.load: dict[str, tuple[float, float]] = {}
        self.profiles: dict[str, list[str]] = {}
        self._cpu0 = 0.0
        self._load0 = 0.0
        self._prof: cProfile.Profile | None = None

    def start(self, name: str) -> None:
        self._cpu0 = _cpu_seconds()
        self._load0 = os.getloadavg()[0]
        if self.profile:
            self._prof = cProfile.Profile()
            self._prof.enable()

    def stop(self, name: str) -> None:
        if self._prof is not None:
            self._prof.disable()
            self.profiles[name] = _profile_summary(self._prof)
            self._prof = None
        self.cpu[name] = _cpu_seconds() - self._cpu0
        self.load[name] = (round(self._load0, 2), round(os.getloadavg()[0], 2))


def case_summary(pairs: list[tuple[str, float | None]]) -> dict[str, Any] | None:
    """Per-case wall seconds of one stage (as run on its worker): count, median, p90, and the slowest case."""
    import numpy as np

    timed = [(k, s) for k, s in pairs if s is not None]
    if not timed:
        return None
    secs = np.array([s for _, s in timed])
    worst = max(timed, key=lambda kv: kv[1])
    return {
        "n_items": len(timed),
        "median_s": round(float(np.median(secs)), 3),
        "p90_s": round(float(np.percentile(secs, 90)), 3),
        "max_s": round(float(worst[1]), 3),
        "slowest_item": worst[0],
    }


def _observer(sampler: RssSampler, meter: StageMeter, cases: dict[str, dict[str, Any] | None]) -> Any:
    from rccgrade.parallel import collect_case_seconds
    from rccgrade.study import StudyObserver

    class Obs(StudyObserver):
        _ctx: Any = None
        _sink: list[tuple[str, float | None]] = []  # noqa: RUF012 - replaced at every stage start

        def stage_started(self, name: str, description: str) -> None:
            sampler.current = name
            meter.start(name)
            self._ctx = collect_case_seconds()
            self._sink = self._ctx.__enter__()
            print(f"  {name} …", flush=True)

        def stage_finished(self, record: Any) -> None:
            meter.stop(record.name)
            if self._ctx is not None:
                self._ctx.__exit__(None, None, None)
                self._ctx = None
            cases[record.name] = case_summary(self._sink)
            if meter.profiles.get(record.name):
                print("\n".join("      " + line for line in meter.profiles[record.name][:8]), flush=True)
            cpu = meter.cpu.get(record.name, float("nan"))
            print(
                f"  {record.name:<10} {record.status:<7} {record.seconds:8.1f} s  cpu {cpu:8.1f} s  "
                f"rss {sampler.peaks.get(record.name, float('nan')):7.0f} MiB  load {meter.load[record.name]}  "
                f"{record.detail}",
                flush=True,
            )

    return Obs()


def linear_fit(ns: list[int], values: list[float], at: int = 496) -> dict[str, float] | None:
    """Least-squares ``value = a + b·N`` over the sizes run and its value at ``at``; None with < 2 sizes.

    With exactly two sizes the line passes through both points (no residual to judge the fit by).
    """
    import numpy as np

    if len(set(ns)) < 2:
        return None
    b, a = np.polyfit(np.asarray(ns, dtype=float), np.asarray(values, dtype=float), 1)
    return {"intercept": round(float(a), 3), "per_case": round(float(b), 4), f"at_{at}": round(float(a + b * at), 1)}


def fits(results: list[dict[str, Any]], at: int = 496) -> dict[str, Any]:
    """Per stage, the linear fits of wall and CPU seconds and of peak RSS (MiB) in N, projected to ``at``."""
    ns = [r["n"] for r in results]
    names = [s["name"] for s in results[0]["stages"]] if results else []
    out: dict[str, Any] = {}
    for name in names:
        rows = [next((s for s in r["stages"] if s["name"] == name), None) for r in results]
        if any(row is None for row in rows):
            continue
        entry: dict[str, Any] = {}
        for key in ("seconds", "cpu_seconds", "peak_rss_mib"):
            vals = [row[key] for row in rows]  # type: ignore[index]
            if all(v is not None for v in vals):
                entry[key] = linear_fit(ns, vals, at)
        out[name] = entry
    total = {key: linear_fit(ns, [r[key] for r in results], at) for key in ("wall_s", "cpu_s", "peak_rss_mib")}
    out["total"] = total
    return out


PER_CASE_STAGES = ("cohort", "preprocess", "deep")


def projection(
    results: list[dict[str, Any]], at: int = 496, cores: int = 2, copies: int = 4, max_patients: int = 50
) -> dict[str, Any]:
    """CPU seconds per stage projected to ``at`` patients from the largest size run, and wall ≈ CPU ÷ ``cores``.

    Per-case stages scale with N. Radiomics scales with its PyRadiomics extractions: one per patient plus
    ``copies`` per stability patient (at most ``max_patients`` training patients, 70 % of N), so its cost per
    extraction is measured and multiplied by the extractions at ``at``. The other stages (models, evaluate,
    report) take the linear fit of their CPU seconds over the sizes run, and at least the largest size's
    (bench/models.py measures the models stage at 496 directly). Wall ≈ CPU ÷ cores assumes the cores are kept
    busy (true for the per-case stages).
    """
    big = max(results, key=lambda r: r["n"])
    n = big["n"]

    def extractions(m: int) -> int:
        return m + min(round(0.7 * m), max_patients) * copies

    fit = fits(results, at)
    out: dict[str, Any] = {}
    for stage in big["stages"]:
        name, cpu = stage["name"], stage["cpu_seconds"]
        if cpu is None:
            continue
        if name in PER_CASE_STAGES:
            per, proj, how = cpu / n, cpu / n * at, f"{cpu / n:.3f} CPU s a case at N = {n}, × {at}"
        elif name == "radiomics":
            per = cpu / extractions(n)
            proj = per * extractions(at)
            how = (
                f"{per:.2f} CPU s an extraction at N = {n} ({extractions(n)} extractions), "
                f"× {extractions(at)} extractions"
            )
        else:
            lin = (fit.get(name) or {}).get("cpu_seconds") or {}
            proj = max(lin.get(f"at_{at}", cpu), cpu)
            per, how = None, f"linear fit of CPU seconds over N = {[r['n'] for r in results]}, at least N = {n}'s"
        out[name] = {"cpu_s": round(proj, 1), "wall_s_on_cores": round(proj / cores, 1), "how": how}
    total = sum(v["cpu_s"] for v in out.values())
    out["total"] = {"cpu_s": round(total, 1), "wall_s_on_cores": round(total / cores, 1), "cores": cores}
    return out


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
    ap.add_argument("--cohort", type=Path, default=None, help="reuse this synthetic cohort's manifest.csv (≥ max N)")
    ap.add_argument("--profile", action="store_true", help="profile each stage (cProfile) and keep its top functions")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/study_<size>.json)")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / f"study_{args.size}.json"
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)

    n_max = max(args.sizes)
    t0 = time.perf_counter()
    if args.cohort is not None:
        manifest = args.cohort.resolve()
        synth_s = float("nan")
    else:
        print(f"generating {n_max} synthetic patients ({args.size}) …", flush=True)
        manifest = write_cohort(
            args.work / "cohort", n=n_max, seed=0, size=args.size, parallel=ParallelSettings(workers=args.workers)
        )
        synth_s = time.perf_counter() - t0
    full = pd.read_csv(manifest, dtype=str)
    if len(full) < n_max:
        raise SystemExit(f"{manifest} has {len(full)} patients, fewer than N = {n_max}")
    results: list[dict[str, Any]] = []
    for n in sorted(args.sizes):
        sub = manifest.parent / f"manifest_{n}.csv"
        full.head(n).to_csv(sub, index=False)
        cfg = bench_config(
            sub, args.work / "runs", f"n{n}", args.workers, args.stability, args.image_size, args.radiomics_params
        )
        if args.workers == 1:
            cfg = cfg.model_copy(update={"parallel": ParallelSettings(backend="serial", workers=1)})
        print(f"study N = {n}", flush=True)
        meter = StageMeter(args.profile)
        cases: dict[str, dict[str, Any] | None] = {}
        with RssSampler() as sampler:
            t1 = time.perf_counter()
            c1 = _cpu_seconds()
            load0 = os.getloadavg()[0]
            res = run_study(cfg, observer=_observer(sampler, meter, cases), fallback_weights="none")
            wall = time.perf_counter() - t1
            cpu = _cpu_seconds() - c1
        metrics = res.metrics.get("arms", {})
        results.append(
            {
                "n": n,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
                "stages": [
                    {
                        "name": r.name,
                        "status": r.status,
                        "seconds": round(r.seconds, 2),
                        "seconds_per_case": round(r.seconds / n, 3),
                        "cpu_seconds": round(meter.cpu[r.name], 2) if r.name in meter.cpu else None,
                        "cpu_seconds_per_case": round(meter.cpu[r.name] / n, 3) if r.name in meter.cpu else None,
                        "loadavg_1min_start_end": list(meter.load.get(r.name, ())),
                        "peak_rss_mib": round(sampler.peaks[r.name], 1) if r.name in sampler.peaks else None,
                        "n_failures": r.n_failures,
                        "per_case": cases.get(r.name),
                        "profile_top": meter.profiles.get(r.name, []),
                    }
                    for r in res.records
                ],
                "peak_rss_mib": round(max(sampler.peaks.values()), 1),
                "test_auc": {a: m.get("test.auc") for a, m in metrics.items()},
                "warnings": res.warnings,
            }
        )
        print(f"  total {wall:.1f} s, peak RSS {results[-1]['peak_rss_mib']:.0f} MiB", flush=True)
        # the models stage's loky workers outlive the study; left alive they would count in the next N's RSS
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
        _write(out, args, synth_s, n_max, manifest, results)
    return 0


def _write(
    out: Path, args: argparse.Namespace, synth_s: float, n_max: int, manifest: Path, results: list[dict[str, Any]]
) -> None:
    """The JSON so far (rewritten after every N, so a run stopped early keeps the sizes it finished)."""
    from rccgrade.provenance import package_versions, platform_info

    payload = {
        "benchmark": "study",
        "description": "whole study end to end (configs/paper.yaml settings) on a synthetic cohort, fresh run folders",
        "image_size": args.size,
        "synth_seconds": None if args.cohort is not None else round(synth_s, 2),
        "synth_seconds_per_case": None if args.cohort is not None else round(synth_s / n_max, 3),
        "settings": {
            "workers": args.workers,
            "stability_perturbations": args.stability,
            "stability_max_patients": "package default (radiomics.stability.max_patients)",
            "slice_px": args.image_size,
            "radiomics_params": args.radiomics_params or "ct_default",
        },
        "sizes_requested": sorted(args.sizes),
        "sizes_done": [r["n"] for r in results],
        "results": results,
        "fits_in_n": fits(results),
        "projection_496": projection(results) if results else None,
        "cohort": str(manifest) if args.cohort is not None else "generated (seed 0)",
        "profiled": args.profile,
        "profiled_serially": args.profile and args.workers == 1,
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


if __name__ == "__main__":
    sys.exit(main())
