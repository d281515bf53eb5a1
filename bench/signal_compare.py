"""Paired comparison of two bench/grade_signal.py results of one cohort: the same methods on other feature tables.

Two runs of ``grade_signal.py`` on the same cohort and the same splits (checked: equal ``split_seeds``) but on
feature tables extracted with other PyRadiomics parameters (e.g. ``ct_default``, 1 mm with LoG and wavelet
filters, against ``radiomics_demo.yaml``, 2 mm original image) are compared method by method: the test-AUC
difference ``new − base`` per split, its mean ± SD and the number of splits the new tables lose. A method
whose inputs do not change between the runs (e.g. ``paper:clinical``) must give identical AUCs: that checks
that the splits and patients are the same.

Usage::

    .venv/bin/python bench/signal_compare.py bench/results/signal_combat.json bench/results/signal.json \
        --cohort c1_seed1 --out /tmp/combat_c1.json

With several cohorts (``--cohort c1_seed1,c2_seed2,c3_seed3_mix``) each gets its table and a pooled table pairs
every split of every cohort (a method must be in both runs on every cohort to be pooled). ``new`` may list one
run per cohort, separated by commas::

    .venv/bin/python bench/signal_compare.py \
        bench/results/signal_ct_c1.json,bench/results/signal_ct_c2.json,bench/results/signal_ct_c3.json \
        bench/results/signal.json --cohort c1_seed1,c2_seed2,c3_seed3_mix --out bench/results/signal_ct_compare.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from bench.signal_report import paired  # noqa: E402


def compare(new: dict[str, Any], base: dict[str, Any], cohort: str) -> dict[str, Any]:
    """Per method present in both runs: ``new − base`` paired on the splits (see :func:`paired`).

    Raises:
        SystemExit: the cohort is missing from a run, or the runs used other splits.
    """
    return {m: paired(recs, f"new:{m}", f"base:{m}") for m, recs in _records(new, base, cohort).items()}


def compare_pooled(new: dict[str, Any], base: dict[str, Any], cohorts: list[str]) -> dict[str, Any]:
    """Per method present in both runs on every cohort: ``new − base`` over all the cohorts' splits together
    (each split one paired difference; a cohort's splits are not averaged first)."""
    per = [_records(new, base, c) for c in cohorts]
    methods = sorted(set.intersection(*(set(p) for p in per))) if per else []
    out = {}
    for m in methods:
        recs = [{**r, "split": f"{c}:{r['split']}"} for c, p in zip(cohorts, per, strict=True) for r in p[m]]
        out[m] = paired(recs, f"new:{m}", f"base:{m}")
    return out


def _records(new: dict[str, Any], base: dict[str, Any], cohort: str) -> dict[str, list[dict[str, Any]]]:
    """Per method of both runs: its records of ``new`` (renamed ``new:<m>``) and ``base`` (``base:<m>``)."""
    try:
        a, b = new["cohorts"][cohort], base["cohorts"][cohort]
    except KeyError:
        raise SystemExit(f"{cohort}: not in both results") from None
    if a["split_seeds"] != b["split_seeds"]:
        raise SystemExit(f"{cohort}: the two runs used other splits")
    methods = sorted({r["method"] for r in a["records"]} & {r["method"] for r in b["records"]})
    return {
        m: [{**r, "method": f"new:{m}"} for r in a["records"] if r["method"] == m]
        + [{**r, "method": f"base:{m}"} for r in b["records"] if r["method"] == m]
        for m in methods
    }


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The cohorts of several runs as one run (e.g. one run per cohort).

    Raises:
        SystemExit: a cohort is in two of the runs.
    """
    cohorts: dict[str, Any] = {}
    for run in runs:
        for name, cohort in run["cohorts"].items():
            if name in cohorts:
                raise SystemExit(f"{name}: in two of the runs")
            cohorts[name] = cohort
    return {"cohorts": cohorts}


def _table(diffs: dict[str, Any]) -> list[str]:
    lines = ["| method | new − base | splits lost | splits |", "|---|---|---|---|"]
    for m, d in diffs.items():
        if d is not None:
            lines.append(f"| {m} | {d['mean']:+.3f} ± {d['sd']:.3f} | {d['lost']} | {d['n']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("new", help="a grade_signal JSON, or several (one cohort each) separated by commas")
    parser.add_argument("base", type=Path)
    parser.add_argument("--cohort", required=True, help="one cohort, or several separated by commas (then pooled)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    new_paths = [Path(p) for p in args.new.split(",")]
    new = merge_runs([json.loads(p.read_text()) for p in new_paths])
    base = json.loads(args.base.read_text())
    cohorts = args.cohort.split(",")
    diffs = {c: compare(new, base, c) for c in cohorts}
    result: dict[str, Any] = {"new": args.new, "base": str(args.base), "cohorts": cohorts}
    result["new_minus_base"] = diffs
    names = " + ".join(p.name for p in new_paths)
    lines = [f"# {names} − {args.base.name}: paired test-AUC differences on the same splits", ""]
    if len(cohorts) > 1:
        result["pooled"] = compare_pooled(new, base, cohorts)
        heading = f"## pooled over {', '.join(cohorts)} (every split one difference)"
        lines += [heading, "", *_table(result["pooled"]), ""]
    for c in cohorts:
        lines += [f"## {c}", "", *_table(diffs[c]), ""]
    args.out.write_text(json.dumps(result, indent=1))
    text = "\n".join(lines)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
