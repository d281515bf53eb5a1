"""Paired comparison of two bench/grade_signal.py results of one cohort: the same methods on other feature tables.

Two runs of ``grade_signal.py`` on the same cohort and the same splits (checked: equal ``split_seeds``) but on
feature tables extracted with other PyRadiomics parameters (e.g. ``ct_default``, 1 mm with LoG and wavelet
filters, against ``radiomics_demo.yaml``, 2 mm original image) are compared method by method: the test-AUC
difference ``new − base`` per split, its mean ± SD and the number of splits the new tables lose. A method
whose inputs do not change between the runs (e.g. ``paper:clinical``) must give identical AUCs: that checks
that the splits and patients are the same.

Usage::

    .venv/bin/python bench/signal_compare.py bench/results/signal_ct_c1.json bench/results/signal.json \
        --cohort c1_seed1 --out bench/results/signal_ct_c1_compare.json
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
    try:
        a, b = new["cohorts"][cohort], base["cohorts"][cohort]
    except KeyError:
        raise SystemExit(f"{cohort}: not in both results") from None
    if a["split_seeds"] != b["split_seeds"]:
        raise SystemExit(f"{cohort}: the two runs used other splits")
    methods = sorted({r["method"] for r in a["records"]} & {r["method"] for r in b["records"]})
    records = [{**r, "method": f"new:{r['method']}"} for r in a["records"]]
    records += [{**r, "method": f"base:{r['method']}"} for r in b["records"]]
    return {m: paired(records, f"new:{m}", f"base:{m}") for m in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("new", type=Path)
    parser.add_argument("base", type=Path)
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    new, base = json.loads(args.new.read_text()), json.loads(args.base.read_text())
    diffs = compare(new, base, args.cohort)
    result = {"new": str(args.new), "base": str(args.base), "cohort": args.cohort, "new_minus_base": diffs}
    args.out.write_text(json.dumps(result, indent=1))
    lines = [
        f"# {args.new.name} − {args.base.name}, {args.cohort}: paired test-AUC differences on the same splits",
        "",
        "| method | new − base | splits lost | splits |",
        "|---|---|---|---|",
    ]
    for m, d in diffs.items():
        if d is not None:
            lines.append(f"| {m} | {d['mean']:+.3f} ± {d['sd']:.3f} | {d['lost']} | {d['n']} |")
    text = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
