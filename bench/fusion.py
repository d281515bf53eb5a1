"""Quick dev benchmark of fusion (issue 14 items 3–4): does adding a source ever lower the fused arm?

On the demo feature tables (``rccgrade synth`` 200 patients: arterial radiomics 200×107, random-weight deep
features of three ROIs 200×6144 — by default only the ``tumour`` ROI's 2,048, ``--rois`` for more —,
the manifest's clinical columns; ``grade >= 3`` = high grade), over
repeated stratified 7:3 splits (identical for every model, so differences are paired), test ROC AUC of:

* ``clinical``, ``radiomics`` (single-source arms) and the oracle (the generator's ``p_high``);
* ``combined``: old (``combined_selection: union``) vs new (per-source budgets learnt on training folds),
  on clinical + radiomics + deep;
* ``stacked``: old (unconstrained logistic meta-model) vs new (non-negative weights), same base arms
  (clinical, radiomics, deep:<roi>; the base arms and their OOF probabilities are shared);
* the fusion of clinical + radiomics with and without an added pure-noise source (``deep:noise``, 500
  Gaussian columns), old and new, for both fusion arms;
* optionally (``--auto``) the radiomics arm with ``classifier: auto``.

Settings: package defaults except ``nested_oof: false``, logistic ``C = 1`` (no tuning) and a 10-value
LASSO path, to keep it quick (selection is still refitted in every fold).
The full multi-cohort benchmark is ``bench/grade_signal.py``.

Usage::

    nice -n 10 .venv/bin/python bench/fusion.py --data /work/bench_cache/demo200 --splits 10

Writes ``bench/results/fusion.json`` (per-split AUCs, paired differences, machine, timing).

Every test AUC goes through :func:`paired_auc`, which pairs labels and probabilities **by patient id**. (Until
2026-11-30 the script compared ``y.loc[test]`` — in the shuffled order of ``StratifiedShuffleSplit`` — with
``fit_arms``'s test probabilities — in feature-table order — position by position: every arm's AUC was that of
a random permutation, ≈ 0.5, while the oracle, aligned by ``.loc``, looked right.)
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

GRID = {"logistic": {"C": [1.0]}}
"""One logistic candidate (no tuning): the comparison is between fusion rules, and it keeps the run short."""

CLINICAL = ["age", "sex", "bmi", "symptoms", "haemoglobin", "platelets", "crp", "size_cm"]


def load(data: Path, rois: list[str] | None = None) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Feature table (clin + rad + deep of ``rois``, all when None), labels and the oracle probability."""
    rad = pd.read_parquet(data / "radiomics.parquet")
    deep = pd.read_parquet(data / "deep.parquet")
    if rois is not None:
        deep = deep[[c for c in deep.columns if c.split(":")[1] in rois]]
    man = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    truth = pd.read_csv(data / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
    clin = pd.DataFrame(index=man.index)
    for c in CLINICAL:
        clin[f"clin:{c}"] = pd.Categorical(man[c].astype(str)) if c == "sex" else pd.to_numeric(man[c])
    table = clin.join(rad).join(deep)
    table.index.name = "patient_id"
    y = (man["grade"] >= 3).astype(int).reindex(table.index)
    return table, y, truth["p_high"].reindex(table.index)


def noise_block(index: pd.Index, n_cols: int = 500, seed: int = 12345) -> pd.DataFrame:
    """A pure-noise source named like a deep ROI."""
    rng = np.random.default_rng(seed)
    cols = [f"deep:noise:f{j:04d}" for j in range(n_cols)]
    return pd.DataFrame(rng.normal(size=(len(index), n_cols)), index=index, columns=cols)


def paired_auc(y: pd.Series, proba: pd.Series) -> float:
    """ROC AUC of ``proba`` against ``y``, paired by patient id (the index), never by position.

    Args:
        y: 0/1 labels indexed by ``patient_id`` (any order; may hold more patients than ``proba``).
        proba: Probabilities of the test patients, indexed by ``patient_id``.

    Raises:
        TypeError: ``proba`` is not a Series (an array carries no ids to pair with).
        ValueError: duplicated ids, or a patient of ``proba`` without a label.
    """
    from sklearn.metrics import roc_auc_score

    if not isinstance(proba, pd.Series):
        raise TypeError(f"paired_auc needs probabilities indexed by patient id, got {type(proba).__name__}")
    if proba.index.has_duplicates or y.index.has_duplicates:
        raise ValueError("duplicated patient ids in the labels or the probabilities")
    missing = proba.index.difference(y.index)
    if len(missing):
        raise ValueError(f"{len(missing)} patient(s) with a probability but no label: {list(missing[:5])}")
    return float(roc_auc_score(y.loc[proba.index].to_numpy(), proba.to_numpy(dtype=float)))


def stack(res: Any, base: list[str], kind: str) -> pd.Series:
    """Test probabilities of a stacked meta-model fitted on the base arms' OOF logits (as fit_arms does)."""
    from rccgrade.models.stacking import logit, make_meta

    y_train = res.y_train.loc[res.oof_proba.index]
    meta = make_meta(kind, 1.0).fit(logit(res.oof_proba[base].to_numpy()), y_train.to_numpy())
    return pd.Series(meta.predict_proba(logit(res.test_proba[base].to_numpy()))[:, 1], index=res.test_proba.index)


def one_split(table: pd.DataFrame, y: pd.Series, train: list[str], test: list[str], seed: int, auto: bool) -> dict:
    """Every model of the comparison on one split: test AUCs and what the fusion learnt."""
    from rccgrade.models.arms import fit_arms
    from rccgrade.models.settings import ModelSettings

    def settings(**kw: Any) -> ModelSettings:
        return ModelSettings(nested_oof=False, param_grids=GRID, selection={"lasso_cs": 10}, **kw)

    auc: dict[str, float] = {}
    info: dict[str, Any] = {}
    base_table = table[[c for c in table.columns if not c.startswith("deep:noise:")]]
    clin_rad = table[[c for c in table.columns if c.startswith(("clin:", "rad:"))]]
    with_noise = table[[c for c in table.columns if c.startswith(("clin:", "rad:", "deep:noise:"))]]
    t0 = time.perf_counter()
    a = fit_arms(
        base_table,
        y,
        train,
        settings(arms=["clinical", "radiomics", "deep:*", "combined", "stacked"]),
        seed,
        test_ids=test,
    )
    for arm in ("clinical", "radiomics"):
        auc[arm] = paired_auc(y, a.test_proba[arm])
    auc["combined_new"] = paired_auc(y, a.test_proba["combined"])
    auc["stacked_new"] = paired_auc(y, a.test_proba["stacked"])
    deep_arms = [x for x in a.arms if x.startswith("deep:")]
    auc["stacked_old"] = paired_auc(y, stack(a, ["clinical", "radiomics", *deep_arms], "logistic"))
    info["budgets"] = a.fusion["combined"].get("budgets")
    info["stacking_weights"] = a.fusion["stacked"]["stacking_weights"]
    b = fit_arms(base_table, y, train, settings(arms=["combined"], combined_selection="union"), seed, test_ids=test)
    auc["combined_old"] = paired_auc(y, b.test_proba["combined"])
    # clinical + radiomics, with and without a pure-noise source
    cr = ["clinical", "radiomics"]
    two = settings(arms=["combined"], combined_sources=cr)
    auc["combined_new_cr"] = paired_auc(
        y, fit_arms(clin_rad, y, train, two, seed, test_ids=test).test_proba["combined"]
    )
    two_old = settings(arms=["combined"], combined_sources=cr, combined_selection="union")
    auc["combined_old_cr"] = paired_auc(
        y, fit_arms(clin_rad, y, train, two_old, seed, test_ids=test).test_proba["combined"]
    )
    noisy = settings(arms=["deep:*", "combined"], combined_sources=[*cr, "deep:*"])
    c = fit_arms(with_noise, y, train, noisy, seed, test_ids=test)
    auc["combined_new_cr_noise"] = paired_auc(y, c.test_proba["combined"])
    info["budgets_noise"] = c.fusion["combined"].get("budgets")
    noisy_old = settings(arms=["combined"], combined_sources=[*cr, "deep:*"], combined_selection="union")
    auc["combined_old_cr_noise"] = paired_auc(
        y, fit_arms(with_noise, y, train, noisy_old, seed, test_ids=test).test_proba["combined"]
    )
    merged = a
    merged.oof_proba = a.oof_proba.join(c.oof_proba[["deep:noise"]])
    merged.test_proba = a.test_proba.join(c.test_proba[["deep:noise"]])
    for kind, tag in (("nonnegative", "new"), ("logistic", "old")):
        auc[f"stacked_{tag}_cr"] = paired_auc(y, stack(merged, cr, kind))
        auc[f"stacked_{tag}_cr_noise"] = paired_auc(y, stack(merged, [*cr, "deep:noise"], kind))
    if auto:
        d = fit_arms(clin_rad, y, train, settings(arms=["radiomics"], classifier="auto"), seed, test_ids=test)
        auc["radiomics_auto"] = paired_auc(y, d.test_proba["radiomics"])
        info["auto"] = d.fusion["radiomics"]["auto"]
    info["seconds"] = time.perf_counter() - t0
    return {"auc": auc, "info": info}


PAIRS = [
    ("combined_new", "combined_old"),
    ("stacked_new", "stacked_old"),
    ("combined_new", "radiomics"),
    ("combined_old", "radiomics"),
    ("stacked_new", "radiomics"),
    ("combined_new_cr_noise", "combined_new_cr"),
    ("combined_old_cr_noise", "combined_old_cr"),
    ("stacked_new_cr_noise", "stacked_new_cr"),
    ("stacked_old_cr_noise", "stacked_old_cr"),
    ("combined_new_cr", "radiomics"),
    ("radiomics_auto", "radiomics"),
]


def main() -> None:
    """Run the splits and write the JSON result."""
    from sklearn.model_selection import StratifiedShuffleSplit

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("/work/bench_cache/demo200"))
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--rois", nargs="*", default=["tumour"], help="deep ROIs to use (none given: all)")
    parser.add_argument("--auto", action="store_true", help="also the radiomics arm with classifier: auto")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fusion.json")
    args = parser.parse_args()

    table, y, oracle = load(args.data, args.rois or None)
    table = table.join(noise_block(table.index))
    sss = StratifiedShuffleSplit(n_splits=args.splits, test_size=0.3, random_state=0)
    rows = []
    for i, (tr, te) in enumerate(sss.split(np.zeros(len(y)), y.to_numpy())):
        train, test = [table.index[j] for j in tr], [table.index[j] for j in te]
        out = one_split(table, y, train, test, seed=i, auto=args.auto)
        out["auc"]["oracle"] = paired_auc(y, oracle.loc[test])
        rows.append(out)
        print(i, {k: round(v, 3) for k, v in out["auc"].items()}, out["info"], flush=True)
        write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    """Summarise the splits done so far (paired differences) and write the JSON."""
    aucs = pd.DataFrame([r["auc"] for r in rows])
    paired = {}
    for a, b in PAIRS:
        if a in aucs and b in aucs:
            d = aucs[a] - aucs[b]
            paired[f"{a} - {b}"] = {
                "mean": float(d.mean()),
                "sd": float(d.std(ddof=1)) if len(d) > 1 else None,
                "min": float(d.min()),
                "n_worse_by_0.01": int((d < -0.01).sum()),
            }
    result = {
        "data": str(args.data),
        "deep_rois": args.rois or "all",
        "splits": len(rows),
        "settings": "defaults; nested_oof false, logistic C=1, lasso_cs 10; noise: 500 Gaussian columns 'deep:noise'",
        "mean_auc": {k: float(v) for k, v in aucs.mean().items()},
        "sd_auc": {k: float(v) for k, v in aucs.std(ddof=1).items()} if len(rows) > 1 else {},
        "paired": paired,
        "per_split": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({"mean_auc": result["mean_auc"], "paired": paired}, indent=1), flush=True)


if __name__ == "__main__":
    main()
