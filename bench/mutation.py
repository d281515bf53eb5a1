"""Mutation testing (``make mutation``): mutmut on the modules where a silent bug changes reported numbers.

Each module is mutated on its own and run against its own test folder only, in a scratch copy of the
project under ``build/mutation/<module>/`` (mutmut reads its settings from the working directory's
``pyproject.toml``; the copy's ``[tool.mutmut]`` is the project's, plus ``only_mutate`` and the test
folder of that module). Every module gets a wall-clock budget; when it runs out, mutmut is stopped and
the mutants checked so far are counted (the rest are reported as ``not_checked``, never as killed).

The kill rate is ``killed / (checked mutants)``, where a mutant whose function no test of the folder
reaches ("no tests") counts as checked and not killed. The survivors judged equivalent (they cannot
change any output) are listed in ``EQUIVALENT`` below with the reason, and the kill rate *excluding*
them is reported beside the raw one.

Usage::

    python bench/mutation.py [--modules stats/roc.py ...] [--budget-s 900] [--children 2] [--sample N]

``--sample N`` checks a seeded random sample of N mutants (for modules whose test folder is too slow to run
every mutant within the budget, e.g. models/arms.py); the kill rate is then an estimate from the sample.

Writes ``bench/results/mutation.json`` (merging: modules not run keep their previous entry).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mutation.json"
SCRATCH = ROOT / "build" / "mutation"

MODULES: dict[str, str] = {
    "stats/roc.py": "tests/stats",
    "stats/calibration.py": "tests/stats",
    "stats/dca.py": "tests/stats",
    "stats/resampled.py": "tests/stats",
    "models/split.py": "tests/models",
    "models/arms.py": "tests/models",
    "preprocess/roi.py": "tests/preprocess",
    "deep/data.py": "tests/deep",
}
"""Module (under ``src/rccgrade``) → the test folder it is checked against."""

DETECTED = ("killed", "timeout")
"""Statuses that count as a detected mutant: a failing test, or a test run beyond its CPU-time limit (SIGXCPU)."""


NOTES: dict[str, str] = {
    "deep/data.py": (
        "the survivors left are resolve_device's CUDA branch (device='cuda' on a machine with CUDA); the test "
        "machine has none. tests/deep/test_data_contract.py asserts that branch when CUDA is present, so a GPU run "
        "would kill them"
    ),
    "models/arms.py": (
        "tests/models takes about a minute per run, so arms.py is estimated from a seeded random sample of its "
        "mutants (sample_seed, sampled_from); the rest were not run"
    ),
    "preprocess/roi.py": "the pipeline tests make each run slow: see stopped_by_budget for whether every mutant ran",
    "models/split.py": "see stopped_by_budget: mutants not reached within the budget are not_checked, never killed",
}
"""Per-module remarks copied into the results."""


def _status(code: int | None) -> str:
    """mutmut's own exit-code → status table (``mutmut.stats.status_by_exit_code``), with snake_case names."""
    from mutmut.stats import status_by_exit_code

    return "not_checked" if code is None else status_by_exit_code[int(code)].replace(" ", "_")


_NAMES_UNUSED = "the names _prepare returns are discarded by every caller (delong, bootstrap_auc)"
_SIDE_DEFAULT = "side='left' is numpy.searchsorted's default"
_IDX_RANGE = (
    "idx = searchsorted(fpr, grid + 1e-12, 'right') - 1 lies in [0, size - 1] for any grid in [0, 1] (fpr[0] = 0), "
    "so this clip bound never binds"
)
_BY_NAME = "rows are read by field name (row.model_1 …), which itertuples gives with or without the index"
_RNG_LOW = "Generator.integers(h, size) draws the same stream as integers(0, h, size)"
_FLOAT_OUT = "for numeric input the result is the same float array (np.minimum(1.0, …) and out are float)"
_TIES = "tied p-values get the same adjusted value, so the sort's tie order cannot matter"
_GUARD_EDGE = "moves the edge of a divergence/convergence guard by one ulp-scale step; no fit lands on it"
_INV_UNREACHABLE = (
    "unreachable: inv() of the Hessian fails only if it is singular, but the solve of the step before, with a "
    "Hessian less than 1e-10 away in beta, succeeded"
)
_ASTYPE_NONE = "ndarray.astype(None) is float64, the same as astype(float)"
_INTERCEPT_ALWAYS = (
    "unreachable message: with both classes (required) the intercept-only model with an offset always has a "
    "finite MLE and a positive Hessian, so Newton–Raphson converges"
)
_FINAL_COLUMNS = "the last line selects and orders the columns by name, dropping any extra index column"
_TOLERANCE_SCALE = (
    "rescales the 1e-12 relative tolerance of the degenerate-neighbourhood guard: a neighbourhood is either exactly "
    "degenerate (sxx = 0 up to rounding) or many orders of magnitude above the cut-off"
)
_ODDS_FINITE = "thresholds are checked to lie in [0, 1), so t / (1 − t) never divides by zero"
_CPU_DEVICE = "CPU-only test machine: moving a CPU tensor to None/the CPU device is a no-op (a GPU run would tell)"
_FALSY_NONE = "require_both=None is falsy, like False"
_KEYS = "the dict keys only name the models inside delong, which discards names"

_EQUIVALENT_BY_MODULE: dict[str, list[tuple[str, tuple[int, ...], str]]] = {
    "rccgrade.stats.resampled": [
        (
            "corrected_resampled_ttest",
            (6, 8),
            "for numeric scores (the documented input) np.asarray without dtype gives float64 or an integer array, "
            "and every statistic after it (isfinite, ptp, mean, var) is the same",
        ),
        ("corrected_resampled_ttest", (21,), "only the error message lists 4 instead of 3 of the bad values"),
        ("corrected_resampled_ttest", (63,), "only reached when every score is identical: a[1] equals a[0]"),
    ],
    "rccgrade.stats.roc": [
        ("_fast_delong", (42,), "only np.cov(v_neg) is used: negating every row of v_neg leaves its covariance"),
        ("_fast_delong", (43,), "only np.cov(v_neg) is used: adding a constant leaves the covariance"),
        ("_fast_delong", (54, 55), "with m = 1 a (1, k) or (k, 1) zero array broadcasts to the same (k, k) zeros"),
        ("_normal_ci", (22,), "the lower limit is at most the AUC <= 1: an upper clip at 2 instead of 1 never binds"),
        ("_prepare", (7, 8, 34, 35, 37), _NAMES_UNUSED),
        ("_tpr_at_fpr", (14, 25), _SIDE_DEFAULT),
        (
            "_tpr_at_fpr",
            (41,),
            "'left' and 'right' differ only when grid + 1e-12 equals a vertex fpr = k/n exactly; the 1e-12 shift "
            "exists so that it never does for grid values on or between vertices",
        ),
        ("_tpr_at_fpr", (48, 49, 54), _IDX_RANGE),
        ("roc_curve_points", (28, 39), _SIDE_DEFAULT),
        ("bootstrap_auc", (42, 50, 83), _RNG_LOW),
        (
            "bootstrap_auc",
            (105, 107),
            "no division there has a non-zero numerator and a zero denominator (both vanish together: 0/0 is "
            "'invalid', still silenced), so the 'divide' setting never matters",
        ),
        ("bootstrap_auc", (98,), "astype(None) is float64, like astype(float)"),
        ("bootstrap_auc", (125,), "assigning None into a float array stores NaN"),
        ("bootstrap_auc", (126,), "a replicate without positives or negatives is already 0/0 = NaN before the mask"),
        (
            "_tpr_at_fpr",
            (30,),
            "tpr[0] = 0 either way; the binary search only reaches index 0 for a rate below every vertex, where "
            "both versions return tpr[0] (the clip maps -1 to 0)",
        ),
        ("holm", (3, 5), _FLOAT_OUT),
        ("holm", (12,), "for a single p-value Holm's adjustment is the p-value itself (min(1, 1·p) = p for p <= 1)"),
        ("holm", (20, 22, 24), _TIES),
        ("delong_test", (6, 7), _KEYS),
        ("delong_matrix", (36, 37), _BY_NAME),
    ],
    "rccgrade.stats.calibration": [
        ("_assign", (6,), _SIDE_DEFAULT),
        (
            "_fit_result",
            (1,),
            "every non-converged exit of _newton_logistic returns a NaN covariance, so 'not ok and not finite' "
            "equals 'not ok or not finite'",
        ),
        ("_newton_logistic", (1,), "changes only a fit that converges in exactly its 101st Newton step"),
        (
            "_newton_logistic",
            (24, 29),
            "on a singular Hessian ok is False and the caller's _fit_result never reads the covariance",
        ),
        ("_newton_logistic", (38, 39, 49), _GUARD_EDGE),
        ("_newton_logistic", tuple(range(62, 70)), _INV_UNREACHABLE),
        ("calibration_intercept", (18,), _ASTYPE_NONE),
        ("brier_score", (4,), _FALSY_NONE),
        ("calibration_curve", (8,), _FALSY_NONE),
        ("smoothed_calibration", (5,), _FALSY_NONE),
        (
            "_newton_logistic",
            (33,),
            "a diverging fit (|beta| > 1e6) keeps diverging and still ends not converged with a NaN covariance "
            "(at the singular Hessian or the iteration limit)",
        ),
        (
            "lowess",
            (50,),
            "in practice: numpy's introselect with kth = k − 2 also leaves the k-th order statistic at index k − 1 "
            "(no counterexample in 2,000 random rows of 5–40 distances)",
        ),
        ("calibration_slope", (20,), _ASTYPE_NONE),
        ("calibration_intercept", (21, 22, 23, 24), _INTERCEPT_ALWAYS),
        ("calibration_curve", (93, 94, 101), _FINAL_COLUMNS),
        ("hosmer_lemeshow", (73, 79), "to_numpy() of these count/sum columns gives the same numbers"),
        ("lowess", (3, 5, 8, 10, 14, 16), "for numeric input the arithmetic is float64 either way"),
        ("lowess", (47,), "np.partition's default axis is the last one, axis 1 of the (G, n) distances"),
        ("lowess", (66,), "d / h >= 0, so the lower clip bound never binds"),
        ("lowess", (93, 94, 95, 101, 102, 103), _TOLERANCE_SCALE),
        ("lowess", (109,), "Σw(x + xm)(y − ym) = Σw(x − xm)(y − ym) because Σw(y − ym) = 0"),
        ("lowess", (110,), "Σw(x − xm)(y + ym) = Σw(x − xm)(y − ym) because Σw(x − xm) = 0"),
    ],
    "rccgrade.preprocess.roi": [
        ("dilate_mm", (5,), "a margin of exactly 0 then keeps voxels at distance <= 1e-6: the mask itself, as before"),
        (
            "dilate_mm",
            (18,),
            "a crop one voxel larger still contains the whole mask, so the exact distance transform is unchanged",
        ),
        (
            "dilate_mm",
            (28, 31, 32, 42, 46, 47, 56, 59, 60),
            "lo, pad, mask.shape, start and stop all have mask.ndim entries (checked above)",
        ),
        (
            "dilate_mm",
            (50, 51, 52),
            "a crop reaching to the array edge still contains the whole mask: the distance transform is unchanged",
        ),
        ("dilate_mm", (71,), "no distance between voxel centres equals margin + 1e-6 exactly, so < and <= agree"),
        (
            "grow_box",
            (15, 18, 19),
            "the zip of hi, pad and shape on the next line is strict and raises on the same mismatch",
        ),
    ],
    "rccgrade.models.arms": [
        ("choose_threshold", (11,), "float() of the first score is the same number whatever the array's dtype"),
    ],
    "rccgrade.models.split": [
        ("read_split", (17, 18), "the split column holds 'train'/'test', which pandas reads as strings anyway"),
        ("write_split", (13,), "DataFrame.to_csv treats index=None as falsy: no index column, as with False"),
        (
            "repeated_cv_oof",
            (5,),
            "float 0.0/1.0 labels stratify and fit exactly like int 0/1 labels (classes_ [0., 1.], same column 1)",
        ),
    ],
    "rccgrade.deep.data": [
        ("augment_batch", (99, 101, 159, 171), _CPU_DEVICE),
        ("augment_batch", (140,), "mode='bilinear' is grid_sample's default"),
        (
            "augment_batch",
            (15, 22),
            "torch.rand draws exactly 0.5 with probability ~2^-24 per image; no seed used does",
        ),
        ("mean_by_owner", (3, 5, 13, 15), "numpy's default float dtype (zeros, astype(None)) is float64"),
        (
            "mean_by_owner",
            (19,),
            "every owner 0 … n−1 has at least one slice (stack_slices), so bincount already has length n",
        ),
        ("mean_by_owner", (26,), "reshape(-2, …) infers the dimension like reshape(-1, …) in this numpy"),
        ("prepare_batch", (3, 5, 41, 44, 60, 63), _CPU_DEVICE),
        ("prepare_batch", (6, 11), "non_blocking only changes asynchrony of host-to-device copies"),
        ("prepare_batch", (12,), "x is (N, 3, H, W): x.shape[2:] is x.shape[-2:]"),
        ("prepare_batch", (13,), "resizing to the same size (bilinear, align_corners=False) is the identity"),
        (
            "prepare_batch",
            (19, 24),
            "align_corners=False is F.interpolate's default for bilinear (and it does not warn)",
        ),
        ("prepare_batch", (35, 54), "a (3, 1, 1) tensor broadcasts against (N, 3, H, W) like (1, 3, 1, 1)"),
        ("prepare_batch", (40, 43, 59, 62), "torch.tensor of Python floats is float32 (the default dtype)"),
        ("resolve_device", (15, 16, 17), "on a machine without CUDA the second operand is False either way"),
        ("stack_slices", (12, 15), "np.full with a Python int fills int64 on this platform"),
        ("stack_slices", (21,), "axis=0 is np.concatenate's default"),
        ("validate_slices", (46,), "copy=None vs copy=False only changes whether a float32 input is copied"),
        (
            "validate_slices",
            (60, 62),
            "lo and hi are float32 values: none equals ±1e-3 / 1 + 1e-3 exactly, so < and <= agree",
        ),
        ("validate_slices", (73, 75), "clipping an array whose minimum is 0 (maximum is 1) changes nothing"),
    ],
    "rccgrade.stats.dca": [
        ("_check_thresholds", (4, 6), "for numeric input the thresholds are float64 either way"),
        ("_rates", (26, 36), _SIDE_DEFAULT),
        ("decision_curve", (4,), _FALSY_NONE),
        ("net_benefit", (4,), _FALSY_NONE),
        ("decision_curve", (113, 114), "ones is an array of 1.0: x / ones = x * ones"),
        ("decision_curve", (28,), _ODDS_FINITE),
        ("net_benefit", (29,), _ODDS_FINITE),
    ],
}

EQUIVALENT: dict[str, str] = {
    f"{module}.x_{function}__mutmut_{i}": why
    for module, entries in _EQUIVALENT_BY_MODULE.items()
    for function, ids, why in entries
    for i in ids
}
"""mutmut mutant name → why the mutant cannot change any result for valid input (read from each survivor)."""


def _tool_config() -> dict:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data.get("tool", {}).get("mutmut", {}))


def _write_pyproject(dst: Path, module: str, tests: str) -> None:
    """The project's pyproject.toml with a ``[tool.mutmut]`` restricted to one module and its tests."""
    text = (ROOT / "pyproject.toml").read_text()
    head = text.split("[tool.mutmut]")[0]
    cfg = _tool_config()
    cfg["only_mutate"] = [f"src/rccgrade/{module}"]
    cfg["pytest_add_cli_args_test_selection"] = [tests]
    lines = ["[tool.mutmut]"]
    for key, value in cfg.items():
        lines.append(f"{key} = {json.dumps(value)}")
    (dst / "pyproject.toml").write_text(head.rstrip() + "\n\n" + "\n".join(lines) + "\n")


def _prepare(module: str, tests: str) -> Path:
    work = _workdir(module)
    if work.exists():
        shutil.rmtree(work)
    (work / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(ROOT / "tests" / "conftest.py", work / "tests" / "conftest.py")
    shutil.copytree(ROOT / "tests" / "data", work / "tests" / "data")
    shutil.copytree(ROOT / tests, work / tests, ignore=shutil.ignore_patterns("__pycache__"))
    _write_pyproject(work, module, tests)
    return work


def _read_results(work: Path, module: str) -> dict[str, int | None]:
    meta = work / "mutants" / "src" / "rccgrade" / f"{module}.meta"
    if not meta.is_file():
        return {}
    data = json.loads(meta.read_text())
    return dict(data.get("exit_code_by_key", {}))


def _mutant_names(work: Path, module: str, mutmut: str, env: dict[str, str]) -> list[str]:
    """Generate the mutants (the first phase of ``mutmut run``) and return their names, without running any."""
    proc = subprocess.Popen(
        [mutmut, "run", "--max-children", "1"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    names: list[str] = []
    try:
        for _ in range(600):
            time.sleep(0.5)
            names = list(_read_results(work, module))
            if names or proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return sorted(names)


def run_module(module: str, tests: str, budget_s: float, children: int, sample: int = 0, seed: int = 0) -> dict:
    work = _prepare(module, tests)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut puts mutants/src first itself
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    chosen: list[str] = []
    if sample:
        everything = _mutant_names(work, module, mutmut, env)
        chosen = sorted(random.Random(seed).sample(everything, min(sample, len(everything))))
        n_total = len(everything)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [mutmut, "run", "--max-children", str(children), *chosen],
        cwd=work,
        env=env,
        stdout=(work / "mutmut.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.monotonic() - t0
    entry = summarise(work, module, chosen)
    entry.update(
        {
            "tests": tests,
            "sampled_from": n_total if sample else None,
            "sample_seed": seed if sample else None,
            "wall_s": round(elapsed, 1),
            "budget_s": budget_s,
            "stopped_by_budget": timed_out,
            "mutmut_exit_code": proc.returncode,
            "note": NOTES.get(module),
        }
    )
    return entry


def summarise(work: Path, module: str, chosen: list[str]) -> dict:
    """Counts, kill rates, survivors and equivalents from mutmut's results in ``work``."""
    codes = _read_results(work, module)
    if chosen:
        codes = {name: codes.get(name) for name in chosen}
    status = {name: _status(code) for name, code in codes.items()}
    counts: dict[str, int] = {}
    for st in status.values():
        counts[st] = counts.get(st, 0) + 1
    checked = sum(n for st, n in counts.items() if st != "not_checked")
    detected = sum(counts.get(st, 0) for st in DETECTED)
    survivors = sorted(n for n, st in status.items() if st != "not_checked" and st not in DETECTED)
    equivalent = {n: EQUIVALENT[n] for n in survivors if n in EQUIVALENT}
    return {
        "mutants": len(status),
        "checked": checked,
        "counts": counts,
        "kill_rate": round(detected / checked, 4) if checked else None,
        "kill_rate_excluding_equivalent": (
            round(detected / (checked - len(equivalent)), 4) if checked - len(equivalent) > 0 else None
        ),
        "survivors": [n for n in survivors if n not in equivalent],
        "equivalent": equivalent,
    }


def _workdir(module: str) -> Path:
    return SCRATCH / module.replace("/", "_").removesuffix(".py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="modules under src/rccgrade")
    parser.add_argument("--budget-s", type=float, default=900.0, help="wall-clock budget per module")
    parser.add_argument("--children", type=int, default=2, help="parallel mutmut workers (2 cores)")
    parser.add_argument("--sample", type=int, default=0, help="check a seeded random sample of N mutants only")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument(
        "--recount", action="store_true", help="re-read the last run of each module (EQUIVALENT edits) without running"
    )
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.setdefault("modules", {})
    import mutmut

    for module in args.modules:
        if args.recount:
            old = results["modules"].get(module)
            if old is None or not _workdir(module).is_dir():
                continue
            chosen: list[str] = []
            if old.get("sampled_from"):
                everything = sorted(_read_results(_workdir(module), module))
                chosen = sorted(random.Random(old["sample_seed"]).sample(everything, old["mutants"]))
            entry = {**old, **summarise(_workdir(module), module, chosen), "note": NOTES.get(module)}
            results["modules"][module] = entry
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            rates = f"{entry['kill_rate']} ({entry['kill_rate_excluding_equivalent']} excluding equivalent)"
            print(f"  {module}: kill rate {rates}")
            continue
        print(f"mutation: {module} against {MODULES[module]} (budget {args.budget_s:.0f} s)", flush=True)
        entry = run_module(module, MODULES[module], args.budget_s, args.children, args.sample, args.sample_seed)
        results["modules"][module] = entry
        results["tool"] = f"mutmut {mutmut.__version__}" if hasattr(mutmut, "__version__") else "mutmut"
        results["machine"] = {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus_visible": os.cpu_count(),
            "children": args.children,
            "note": "2 cores shared with other jobs: wall times are indicative only; a timeout (test run beyond "
            "its CPU-time limit) counts as detected, as in mutmut's own summary",
        }
        results["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(
            f"  {entry['checked']}/{entry['mutants']} checked, kill rate {entry['kill_rate']}, "
            f"{len(entry['survivors'])} non-equivalent survivor(s), {entry['wall_s']} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
