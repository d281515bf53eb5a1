"""Issue 14's benchmark: how much of the grade signal each method finds, paired on identical repeated splits.

For every cohort (feature tables from ``bench/signal_features.py``, computed once per cohort) and each of
``--splits`` stratified 7:3 splits (split ``k`` uses ``random_state = split_seed + k``; identical for every
method), every method is fitted on the training patients only and scored by its test AUC:

* ``plain`` / ``plain+clin``: the hand-written chain of :mod:`signal_chain` on the arterial radiomics
  (``rad:arterial:*`` columns only) without / with the clinical columns (the anchor of the paired table);
* ``paper:<arm>``: rccgrade's ``fit_arms`` with the model settings of ``--config`` (default
  ``configs/paper.yaml``: the reference study's union fusion and unconstrained logistic stacking), arms
  ``clinical, radiomics, combined, stacked`` on the paper's features (the arterial tumour ``rad:arterial:``
  columns and the clinical columns; no deep features: see ``signal_features.py``);
* ``rcc:<arm>``: the same features with the model settings of ``--extended-config`` (rccgrade's own fusion:
  per-source budgets and non-negative stacking), so the fusion's effect is measured apart from the features';
* ``ext:<arm>``: the model settings of ``--extended-config`` on every feature of the extended tables (every
  phase, the peritumoural rings, the kinetic source), arms ``clinical, radiomics, kinetic, combined, stacked``;
* ``noise:<arm>`` / ``extnoise:<arm>``: ``paper`` / ``ext`` plus a pure-noise source ``deep:noise``
  (``--noise-width`` standard Gaussian columns, the width of one ResNet50 ROI; drawn once per cohort from
  ``noise_seed``) fused by ``combined`` and ``stacked`` — what random-weight deep features do to a fusion,
  with known zero signal;
* ``rccg:<arm>``, ``extg:<arm>``, ``extgnoise:<arm>``: ``rcc``, ``ext`` and ``extnoise`` with the gated
  ``combined`` (``models.combined_selection: gated``, :mod:`rccgrade.models.source_gate`) instead of the
  budgets (no ``stacked``: it does not depend on the combined arm);
* ``rccdense:<arm>``: the same on the paper's features;
* ``extdense:<arm>``: ``extg`` without feature selection (near-constant filter only) and the logistic grid
  ``DENSE_CS``: every arm is an L2 (ridge) logistic regression on all its source's features;
* ``--combat``: every rccgrade method above with ``models.selection.combat: true`` (ComBat per source, fitted on
  the training patients, centres from the manifest's ``center`` column, stored as ``truth:center``); ``plain``,
  ``oracle`` and ``truth-lr`` are unchanged, so ``signal_compare.py`` against a run without it pairs the methods
  and checks the splits;
* ``oracle``: the generator's own ``p_high`` (no fitting); ``truth-lr``: a plain logistic regression on the
  generator's true phenotype (the eight ``z_*`` factors), fitted on the training split — the ceiling of a
  perfect feature extractor; ``factor-route`` (method ``route``): what the features hold when the learner knows
  what to look for — a ridge per true factor from every feature (the extended tables' when given), fitted on the
  training split, then a plain logistic regression on the training patients' out-of-fold predicted factors
  (``bench.signal_factors.fit_predict_factor_route``; test patients' factors are never used).

Reported per cohort and method: mean and SD of the test AUC over the splits, the paired difference against
``plain`` (and ``plain+clin`` for arms that use clinical data): mean ± SD and the number of splits it loses,
the gap to the oracle and to ``truth-lr``, the wall time per split; and the issue's goals as pass/fail lines.
Writes ``bench/results/signal.json`` (with machine, load average, versions, git commit) and the markdown table
``bench/results/signal.md`` generated from it (``--table-only`` regenerates the table from the JSON).

Usage::

    nice -n 10 .venv/bin/python bench/grade_signal.py --cache /work/bench_cache/h12-signal --splits 10 --workers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named signal.py: drop its folder from the import path before anything imports the standard
# library's ``signal`` module (subprocess, multiprocessing), and import the bench helpers as ``bench.*``.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from bench.signal_chain import fit_plain_chain, fit_predict_lr, predict_plain_chain  # noqa: E402
from bench.signal_report import goals, summarise, write_markdown  # noqa: E402

COHORTS = ("c1_seed1", "c2_seed2", "c3_seed3_mix")
ARMS = ["clinical", "radiomics", "combined", "stacked"]
EXT_ARMS = ["clinical", "radiomics", "kinetic", "combined", "stacked"]
DENSE_CS = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 1.0]
"""``extdense``'s logistic grid: an L2 logistic regression on every feature needs stronger penalties than the
default grid (0.01 … 10), which is made for a few selected features."""
NOISE_WIDTH = 2048


def _dense(settings: Any) -> Any:
    """``rccdense``/``extdense``: the gated combined without selection (near-constant filter only), grid DENSE_CS."""
    steps = settings.selection.model_copy(update={"steps": ["near_constant"]})
    return settings.model_copy(
        update={"combined_selection": "gated", "selection": steps, "param_grids": {"logistic": {"C": DENSE_CS}}}
    )


def load_cohort(cache: Path, cohort: str, tag: str) -> pd.DataFrame | None:
    """Concatenate a cohort's feature chunks ``<cache>/features/<cohort>_<tag>_NNN.parquet`` (None: none)."""
    parts = sorted((cache / "features").glob(f"{cohort}_{tag}_[0-9][0-9][0-9].parquet"))
    if not parts:
        return None
    table = pd.concat([pd.read_parquet(p) for p in parts])
    if table.index.has_duplicates:
        raise ValueError(f"{cohort}: a patient appears in two chunks")
    return table.sort_index()


def add_table_args(parser: Any, out: str, cache: str = "/work/bench_cache/s5") -> None:
    """The options of the scripts that read the cached feature tables: ``--cache``, ``--tag``, ``--cohorts``
    (comma-separated) and ``--out`` (default ``bench/results/<out>``)."""
    parser.add_argument("--cache", type=Path, default=Path(cache))
    parser.add_argument("--tag", default="extdemo")
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results" / out)


def cohort_tables(cache: Path, cohorts: str, tag: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(cohort, table)`` for each comma-separated cohort whose feature tables exist (:func:`load_cohort`); a
    cohort without tables is left out, and says so."""
    for cohort in cohorts.split(","):
        table = load_cohort(cache, cohort, tag)
        if table is None:
            print(f"{cohort}: no feature tables, left out", flush=True)
            continue
        yield cohort, table


def feature_costs(cache: Path, cohort: str, tag: str) -> list[dict[str, Any]]:
    """The cost records ``signal_features.py`` wrote beside a cohort's chunks (parameters, seconds per stage)."""
    parts = sorted((cache / "features").glob(f"{cohort}_{tag}_[0-9][0-9][0-9].parquet.cost.json"))
    return [json.loads(p.read_text()) for p in parts]


def paper_view(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's features inside an extended table: the arterial tumour radiomics (``rad:arterial:``, no ring)
    and the clinical columns, with the label and the truth columns.

    Identical to a paper-configuration extraction: the arterial phase is the registration reference and the
    PyRadiomics settings are the same, so its tumour features do not depend on the other phases (checked value
    for value on 8 patients of ``c1_seed1``).
    """
    keep = [c for c in table.columns if c.startswith(("rad:arterial:", "clin:", "truth:")) or c == "label"]
    return table[keep]


def make_splits(y: pd.Series, n: int, seed: int, test_size: float = 0.3) -> list[dict[str, Any]]:
    """``n`` stratified splits (split ``k``: ``train_test_split(random_state=seed + k)``)."""
    from sklearn.model_selection import train_test_split

    out = []
    for k in range(n):
        tr, te = train_test_split(list(y.index), test_size=test_size, stratify=y.to_numpy(), random_state=seed + k)
        out.append({"k": k, "seed": seed + k, "train": sorted(tr), "test": sorted(te)})
    return out


def _auc(y: pd.Series, p: np.ndarray | pd.Series) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y.to_numpy(), np.asarray(p, dtype=float)))


def _model_settings(config: Path, arms: list[str], sources: list[str], nested_oof: bool | None) -> Any:
    import yaml

    from rccgrade.models.settings import ModelSettings

    raw = yaml.safe_load(config.read_text()).get("models", {})
    raw["arms"] = arms
    raw["combined_sources"] = sources
    raw.pop("stacked_arms", None)
    if nested_oof is not None:
        raw["nested_oof"] = nested_oof
    return ModelSettings(**raw)


def run_split(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every method on one split; returns one record per (method, AUC, seconds)."""
    from rccgrade.models.arms import fit_arms

    table: pd.DataFrame = job["table"]
    split = job["split"]
    y = table["label"].astype(int)
    tr, te = split["train"], split["test"]
    yt = y.loc[te]
    clin = table[[c for c in table.columns if c.startswith("clin:")]]
    art = table[[c for c in table.columns if c.startswith("rad:arterial:")]]
    rec: list[dict[str, Any]] = []

    def add(method: str, p: np.ndarray | pd.Series, t0: float) -> None:
        rec.append({"split": split["k"], "method": method, "auc": _auc(yt, p), "seconds": time.perf_counter() - t0})

    methods = job["methods"]
    if "plain" in methods:
        t0 = time.perf_counter()
        fit = fit_plain_chain(art.loc[tr], y.loc[tr], split["seed"])
        add("plain", predict_plain_chain(fit, art.loc[te]), t0)
        t0 = time.perf_counter()
        fit = fit_plain_chain(art.loc[tr], y.loc[tr], split["seed"], clinical=clin.loc[tr])
        add("plain+clin", predict_plain_chain(fit, art.loc[te], clinical=clin.loc[te]), t0)
    if "truth" in methods:
        add("oracle", table.loc[te, "truth:p_high"], time.perf_counter())
        t0 = time.perf_counter()
        z = table[[c for c in table.columns if c.startswith("truth:z_")]]
        add("truth-lr", fit_predict_lr(z.loc[tr], y.loc[tr], z.loc[te]), t0)
    features = table[[c for c in table.columns if c.split(":", 1)[0] in ("rad", "clin", "kin")]]
    if "route" in methods:
        from bench.signal_factors import fit_predict_factor_route

        t0 = time.perf_counter()
        z = table[[c for c in table.columns if c.startswith("truth:z_")]]
        add("factor-route", fit_predict_factor_route(features.loc[tr], z.loc[tr], y.loc[tr], features.loc[te]), t0)
    for tag, settings, extra in job["arm_runs"]:
        x = features if extra is None else features.join(extra)
        centers = table["truth:center"] if settings.selection.combat else None  # --combat
        t0 = time.perf_counter()
        res = fit_arms(x, y, tr, settings=settings, seed=split["seed"], test_ids=te, centers=centers)
        seconds = time.perf_counter() - t0
        for arm in res.arms:
            rec.append(
                {
                    "split": split["k"],
                    "method": f"{tag}:{arm}",
                    "auc": _auc(yt, res.test_proba[arm]),
                    "seconds": seconds,
                }
            )
    return rec


def machine_info() -> dict[str, Any]:
    """Platform, CPUs, load average, library versions and the git commit of the working tree."""
    import sklearn

    import rccgrade

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", True
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
        "rccgrade": rccgrade.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/work/bench_cache/h12-signal"))
    parser.add_argument("--cohorts", default=",".join(COHORTS))
    parser.add_argument("--tag", default="paper", help="feature tables of the paper configuration")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/paper.yaml")
    parser.add_argument("--extended-config", type=Path, default=None)
    parser.add_argument("--extended-tag", default="extended")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--split-seed", type=int, default=1000)
    parser.add_argument("--noise-seed", type=int, default=77)
    parser.add_argument("--noise-width", type=int, default=NOISE_WIDTH)
    parser.add_argument("--methods", default="plain,truth,paper,rcc,rccg,ext,extg,noise,extnoise,extgnoise")
    parser.add_argument(
        "--paper-from-extended",
        action="store_true",
        help="take the paper's features from the extended tables (paper_view) instead of separate --tag tables",
    )
    parser.add_argument(
        "--nested-oof",
        choices=["config", "on", "off"],
        default="config",
        help="override models.nested_oof (off: the OOF probabilities stacking learns from use the tuned "
        "parameters instead of re-tuning per fold; the other arms' test AUCs do not depend on it)",
    )
    parser.add_argument(
        "--combat",
        action="store_true",
        help="ComBat-harmonise every rccgrade method's sources by centre (models.selection.combat: true)",
    )
    parser.add_argument("--workers", type=int, default=1, help="splits fitted in parallel (processes)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/signal.json")
    parser.add_argument("--table-only", action="store_true", help="regenerate signal.md from signal.json")
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the cohorts already in --out (run one cohort at a time as its features become ready); the "
        "settings must match",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON (scale, what was merged)")
    args = parser.parse_args()
    md = args.out.with_suffix(".md")
    if args.table_only:
        write_markdown(json.loads(args.out.read_text()), md)
        return
    from joblib import Parallel, delayed

    # worker processes import bench.signal_chain: give them the repository root (not bench/, whose radiomics.py
    # would shadow PyRadiomics)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

    methods = set(args.methods.split(","))
    nested = {"config": None, "on": True, "off": False}[args.nested_oof]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = list(os.getloadavg())
    result: dict[str, Any] = {"benchmark": "signal", "started_utc": started, "note": args.note, "cohorts": {}}
    settings = {
        "splits": args.splits,
        "split_seed": args.split_seed,
        "test_size": 0.3,
        "noise_seed": args.noise_seed,
        "noise_width": args.noise_width,
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "extended_config": None if args.extended_config is None else str(args.extended_config),
        "methods": sorted(methods),
        "workers": args.workers,
        "nested_oof": args.nested_oof,
        "combat": args.combat,
    }
    result["settings"] = settings
    if args.append and args.out.exists():
        previous = json.loads(args.out.read_text())
        free = ("methods", "workers")  # a later run may add methods to a cohort's splits (its records join)
        since = {"combat": False}  # settings added later, at the value runs written before them had
        old = {k: v for k, v in {**since, **previous.get("settings", {})}.items() if k not in free}
        if old != {k: v for k, v in settings.items() if k not in free}:
            raise SystemExit(f"--append: {args.out} was written with other settings: {previous.get('settings')}")
        settings["methods"] = sorted(set(previous["settings"]["methods"]) | methods)
        result = previous | {"note": args.note or previous.get("note", ""), "settings": settings}
        load_before = previous.get("machine", {}).get("load_average_before", load_before)
    for spec in args.cohorts.split(","):
        cohort, _, own_tag = spec.partition("@")  # ``name@tag``: this cohort's tables carry another tag
        ext_table = load_cohort(args.cache, cohort, args.extended_tag) if args.extended_config else None
        if args.paper_from_extended:
            table = None if ext_table is None else paper_view(ext_table)
        else:
            table = load_cohort(args.cache, cohort, own_tag or args.tag)
        if table is None:
            print(f"{cohort}: no feature tables, left out", flush=True)
            continue
        y = table["label"].astype(int)
        splits = make_splits(y, args.splits, args.split_seed)
        rng = np.random.default_rng([args.noise_seed, len(table)])
        noise = pd.DataFrame(
            rng.standard_normal((len(table), args.noise_width)),
            index=table.index,
            columns=[f"deep:noise:f{i:04d}" for i in range(args.noise_width)],
        )
        # (tag, settings, extra columns, table); the noise runs add their base arms so stacked can use them
        arm_runs: list[tuple[str, Any, pd.DataFrame | None, pd.DataFrame]] = []

        def with_noise(settings: Any, singles: list[str]) -> Any:
            return settings.model_copy(
                update={
                    "arms": [*singles, "deep:noise", "combined", "stacked"],
                    "combined_sources": [*singles, "deep:noise"],
                    "stacked_arms": [*singles, "deep:noise"],
                }
            )

        if "paper" in methods or "noise" in methods:
            paper = _model_settings(args.config, ARMS, ["clinical", "radiomics"], nested)
            if "paper" in methods:
                arm_runs.append(("paper", paper, None, table))
            if "noise" in methods:
                arm_runs.append(("noise", with_noise(paper, ["clinical", "radiomics"]), noise, table))
        # rcc/ext/extnoise: the budgeted combined (the package default); rccg/extg/extgnoise: the gated one
        # (configs/extended.yaml's), pinned either way so the runs mean the same whatever the default is
        gated = {"combined_selection": "gated"}
        budgets = {"combined_selection": "budgets"}

        if args.extended_config is not None:
            if "rccg" in methods:  # the gated combined (models/source_gate.py) on the paper's features
                rccg = _model_settings(args.extended_config, ["clinical", "radiomics", "combined"], [], nested)
                rccg = rccg.model_copy(update={**gated, "combined_sources": ["clinical", "radiomics"]})
                arm_runs.append(("rccg", rccg, None, table))
            if "rccdense" in methods:  # the paper's features, no selection, ridge (see extdense)
                rccd = _model_settings(args.extended_config, ARMS, ["clinical", "radiomics"], nested)
                arm_runs.append(("rccdense", _dense(rccd), None, table))
            if "rcc" in methods:
                rcc = _model_settings(args.extended_config, ARMS, ["clinical", "radiomics"], nested)
                rcc = rcc.model_copy(update=budgets)
                arm_runs.append(("rcc", rcc, None, table))
            if {"ext", "extnoise", "extg", "extgnoise", "extdense"} & methods and ext_table is not None:
                missing = sorted(set(table.index) - set(ext_table.index))
                if missing:
                    print(f"{cohort}: extended tables miss {len(missing)} patients; ext left out", flush=True)
                else:
                    ext = _model_settings(args.extended_config, EXT_ARMS, ["clinical", "radiomics", "kinetic"], nested)
                    ext = ext.model_copy(update=budgets)
                    ext_rows = ext_table.loc[table.index]
                    if "ext" in methods:
                        arm_runs.append(("ext", ext, None, ext_rows))
                    if "extnoise" in methods:
                        singles = ["clinical", "radiomics", "kinetic"]
                        arm_runs.append(("extnoise", with_noise(ext, singles), noise, ext_rows))
                    if "extdense" in methods:  # ext without selection (near-constant filter only): a ridge
                        arm_runs.append(("extdense", _dense(ext), None, ext_rows))
                    if "extg" in methods:
                        extg = ext.model_copy(
                            update={**gated, "arms": ["clinical", "radiomics", "kinetic", "combined"]}
                        )
                        arm_runs.append(("extg", extg, None, ext_rows))
                    if "extgnoise" in methods:
                        singles = ["clinical", "radiomics", "kinetic"]
                        extgn = with_noise(ext.model_copy(update=gated), singles)
                        extgn = extgn.model_copy(update={"arms": [*singles, "deep:noise", "combined"]})
                        arm_runs.append(("extgnoise", extgn, noise, ext_rows))
        route_table = None  # factor-route: every feature of the extended tables (the paper's without them)
        if "route" in methods:
            whole = ext_table is not None and set(table.index) <= set(ext_table.index)
            route_table = ext_table.loc[table.index] if whole else table  # never imputes a missing patient
        if args.combat:
            arm_runs = [
                (tag, s.model_copy(update={"selection": s.selection.model_copy(update={"combat": True})}), extra, t)
                for tag, s, extra, t in arm_runs
            ]
        print(f"{cohort}: {len(table)} patients, {args.splits} splits, runs {[r[0] for r in arm_runs]}", flush=True)
        t0 = time.perf_counter()
        # one job per (split, method group), split by split (every method of split k before split k + 1), so a run
        # stopped by a deadline holds fewer splits but every method on each of them: the comparisons stay paired
        jobs: list[dict[str, Any]] = []
        for s in splits:
            if methods & {"plain", "truth"}:
                jobs.append({"table": table, "split": s, "methods": methods & {"plain", "truth"}, "arm_runs": []})
            if "route" in methods and route_table is not None:
                jobs.append({"table": route_table, "split": s, "methods": {"route"}, "arm_runs": []})
            jobs += [
                {"table": run_table, "split": s, "methods": set(), "arm_runs": [(tag, run_settings, extra)]}
                for tag, run_settings, extra, run_table in arm_runs
            ]
        records: list[dict[str, Any]] = []
        if cohort in result["cohorts"]:  # --append to a cohort measured before: same splits, other methods
            earlier = result["cohorts"][cohort]
            if earlier["split_seeds"] != [s["seed"] for s in splits]:
                raise SystemExit(f"--append: {cohort} was measured on other splits")
            rerun = {f"{tag}:" for tag, *_ in arm_runs} | {m for m in ("plain", "truth", "route") if m in methods}
            records = [
                r
                for r in earlier["records"]
                if not any(r["method"].startswith(t) for t in rerun if t.endswith(":"))
                and not ({"plain", "plain+clin"} & {r["method"]} and "plain" in rerun)
                and not ({"oracle", "truth-lr"} & {r["method"]} and "truth" in rerun)
                and not (r["method"] == "factor-route" and "route" in rerun)
            ]
        # ordered generator: the JSON and table are rewritten after every finished split (a run stopped by a
        # deadline keeps what it measured; ``n_splits`` per method says how many)
        for rs in Parallel(n_jobs=args.workers, return_as="generator")(delayed(run_split)(j) for j in jobs):
            records.extend(rs)
            result["cohorts"][cohort] = {
                "n_patients": len(table),
                "prevalence": float(y.mean()),
                "n_radiomics_features": sum(c.startswith("rad:") for c in table.columns),
                "n_extended_features": None
                if ext_table is None
                else sum(c.startswith(("rad:", "kin:")) for c in ext_table.columns),
                "centres": {str(k): int(v) for k, v in table["truth:center"].value_counts().sort_index().items()},
                "split_seeds": [s["seed"] for s in splits],
                "feature_extraction": feature_costs(
                    args.cache, cohort, args.extended_tag if args.paper_from_extended else (own_tag or args.tag)
                ),
                "wall_s": time.perf_counter() - t0,
                "records": records,
                "summary": summarise(records),
            }
            _write(result, args.out, md, load_before)
        print(md.read_text(), flush=True)


def _write(result: dict[str, Any], out: Path, md: Path, load_before: list[float]) -> None:
    result["goals"] = goals(result)
    result["machine"] = machine_info() | {"load_average_before": load_before}
    result["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    write_markdown(result, md)


if __name__ == "__main__":
    main()
