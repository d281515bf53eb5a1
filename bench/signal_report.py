"""Summaries, goals and the markdown table of bench/grade_signal.py (pure functions of the records / the JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CLINICAL_METHODS = ("clinical", "combined", "stacked")


def _uses_clinical(method: str) -> bool:
    return method == "plain+clin" or method.split(":")[-1] in CLINICAL_METHODS


def paired(records: list[dict[str, Any]], a: str, b: str) -> dict[str, Any] | None:
    """``auc(a) − auc(b)`` on the splits both have: mean, SD, number of splits ``a`` loses (None: no overlap)."""
    df = pd.DataFrame(records)
    if df.empty:
        return None
    wide = df.pivot_table(index="split", columns="method", values="auc", aggfunc="first")
    if a not in wide or b not in wide:
        return None
    d = (wide[a] - wide[b]).dropna()
    if d.empty:
        return None
    return {**diff_stats(d), "min": float(d.min())}


def diff_stats(diffs: Any) -> dict[str, Any]:
    """Paired differences (one per split, any 1-D sequence): mean, SD (ddof 1; 0 for one split), splits lost
    (difference < 0) and the number of splits."""
    d = np.asarray(diffs, dtype=float)
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"mean": float(d.mean()), "sd": sd, "lost": int((d < 0).sum()), "n": len(d)}


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: AUC mean/SD, seconds per split, paired differences vs the anchors, the oracle and truth-lr."""
    df = pd.DataFrame(records)
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    for method, g in df.groupby("method", sort=False):
        m = str(method)
        row: dict[str, Any] = {
            "n_splits": len(g),
            "auc_mean": float(g["auc"].mean()),
            "auc_sd": float(g["auc"].std(ddof=1)) if len(g) > 1 else 0.0,
            "seconds_per_split": float(g["seconds"].mean()),
        }
        for ref, key in (("plain", "vs_plain"), ("oracle", "vs_oracle"), ("truth-lr", "vs_truth_lr")):
            if m != ref:
                row[key] = paired(records, m, ref)
        if _uses_clinical(m) and m != "plain+clin":
            row["vs_plain_clin"] = paired(records, m, "plain+clin")
        out[m] = row
    return out


def _goal(name: str, value: float | None, ok: bool | None, detail: str) -> dict[str, Any]:
    status = "not measured" if ok is None else ("pass" if ok else "FAIL")
    return {"goal": name, "value": value, "status": status, "detail": detail}


def _paired_goal(name: str, d: dict[str, Any] | None, least: float) -> dict[str, Any]:
    """A goal on a paired difference ``d`` (:func:`paired`): met when its mean is at least ``least``."""
    if d is None:
        return _goal(name, None, None, "")
    detail = f"{d['mean']:+.3f} ± {d['sd']:.3f}, loses {d['lost']}/{d['n']}"
    return _goal(name, d["mean"], d["mean"] >= least, detail)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals as pass/fail lines per cohort (``not measured`` where the method did not run).

    * ``<tag>:combined`` beats ``plain`` by ≥ 0.04 and lies within 0.05 of the oracle (tags ``ext``, ``rcc``,
      ``paper``: the extended configuration, rccgrade's fusion on the paper's features, the paper's fusion;
      ``extg``, ``rccg``: the same with the gated combined);
    * each added source never lowers a fusion by more than 0.01: every fusion against each of its single-source
      arms, ``ext`` against ``rcc`` (the extended sources added to the paper's), and a pure-noise source added
      (``noise`` against ``paper``, ``extnoise`` against ``ext``).
    """
    lines = []
    for cohort, c in result.get("cohorts", {}).items():
        rec = c["records"]
        for tag in ("ext", "extg", "extdense", "rcc", "rccg", "rccdense", "paper"):
            d = paired(rec, f"{tag}:combined", "plain")
            lines.append(_paired_goal(f"{cohort}: {tag}:combined beats plain by ≥ 0.04 (paired mean)", d, 0.04))
            d = paired(rec, "oracle", f"{tag}:combined")
            lines.append(
                _goal(
                    f"{cohort}: {tag}:combined within 0.05 of the oracle",
                    None if d is None else d["mean"],
                    None if d is None else d["mean"] <= 0.05,
                    "" if d is None else f"oracle − combined = {d['mean']:.3f}",
                )
            )
            singles = ("clinical", "radiomics", "kinetic") if tag.startswith("ext") else ("clinical", "radiomics")
            for fusion in ("combined",) if tag in ("extg", "rccg") else ("combined", "stacked"):
                for single in singles:
                    d = paired(rec, f"{tag}:{fusion}", f"{tag}:{single}")
                    name = f"{cohort}: {tag}:{fusion} not below {tag}:{single} by > 0.01 (the other sources added)"
                    lines.append(_paired_goal(name, d, -0.01))
        for fusion in ("combined", "stacked"):
            pairs = [
                ("ext", "rcc", "the extended sources (phases, rings, kinetic) cost"),
                ("noise", "paper", "a pure-noise source costs paper's"),
                ("extnoise", "ext", "a pure-noise source costs ext's"),
            ]
            if fusion == "combined":
                pairs += [
                    ("extdense", "rccdense", "the extended sources (phases, rings, kinetic) cost dense"),
                    ("extg", "rccg", "the extended sources (phases, rings, kinetic) cost gated"),
                    ("extgnoise", "extg", "a pure-noise source costs extg's"),
                ]
            for with_, without, what in pairs:
                d = paired(rec, f"{with_}:{fusion}", f"{without}:{fusion}")
                lines.append(_paired_goal(f"{cohort}: {what} {fusion} ≤ 0.01 AUC", d, -0.01))
    return lines


POOLED = (
    ("extdense:combined", "plain"),
    ("extdense:combined", "oracle"),
    ("extdense:combined", "extg:combined"),
    ("extdense:stacked", "plain"),
    ("extdense:radiomics", "ext:radiomics"),
    ("rccdense:combined", "plain"),
    ("extdense:combined", "rccdense:combined"),
    ("extg:combined", "plain"),
    ("extg:combined", "oracle"),
    ("extg:combined", "ext:combined"),
    ("extg:combined", "ext:stacked"),
    ("extg:combined", "extg:radiomics"),
    ("extg:combined", "rccg:combined"),
    ("extgnoise:combined", "extg:combined"),
    ("ext:radiomics", "paper:radiomics"),
    ("ext:stacked", "plain"),
    ("paper:combined", "plain"),
    ("paper:radiomics", "plain"),
    ("noise:combined", "paper:combined"),
    ("extnoise:stacked", "ext:stacked"),
    ("factor-route", "extdense:combined"),
    ("factor-route", "extg:combined"),
    ("factor-route", "plain"),
    ("truth-lr", "factor-route"),
)
"""The comparisons pooled over every cohort (``pooled``)."""


def pooled(result: dict[str, Any], pairs: tuple[tuple[str, str], ...] = POOLED) -> list[dict[str, Any]]:
    """Paired differences ``a − b`` over every cohort's splits together (each split of each cohort counts once):
    mean, SD, splits lost and the number of splits; a pair missing from every cohort is left out."""
    rows = []
    for a, b in pairs:
        diffs: list[float] = []
        for c in result.get("cohorts", {}).values():
            df = pd.DataFrame(c["records"])
            if df.empty:
                continue
            wide = df.pivot_table(index="split", columns="method", values="auc", aggfunc="first")
            if a in wide and b in wide:
                diffs += list((wide[a] - wide[b]).dropna())
        if diffs:
            rows.append({"a": a, "b": b, **diff_stats(diffs)})
    return rows


def format_diff(d: dict[str, Any] | None) -> str:
    """``+0.012 ± 0.034 (3/10 lost)`` for a :func:`diff_stats` record; ``–`` for None."""
    return "–" if not d else f"{d['mean']:+.3f} ± {d['sd']:.3f} ({d['lost']}/{d['n']} lost)"


def write_markdown(result: dict[str, Any], path: Path) -> Path:
    """The paired table (one section per cohort) and the goals, generated from the JSON."""
    s = result.get("settings", {})
    lines = [
        "# bench/grade_signal.py: test AUC on repeated stratified 7:3 splits, paired",
        "",
        f"Generated from `{path.with_suffix('.json').name}` ({result.get('finished_utc', '?')}, commit "
        f"`{result.get('machine', {}).get('git_commit', '?')[:10]}`). {s.get('splits', '?')} splits per cohort "
        f"(seeds {s.get('split_seed', '?')}…), identical for every method. Differences are paired per split: "
        "mean ± SD (splits lost).",
        "",
    ]
    if result.get("note"):
        lines += [f"Note: {result['note']}", ""]
    for cohort, c in result.get("cohorts", {}).items():
        lines += [
            f"## {cohort}: {c['n_patients']} patients, prevalence {c['prevalence']:.2f}, "
            f"{c['n_radiomics_features']} paper radiomics features"
            + (f", {c['n_extended_features']} extended" if c.get("n_extended_features") else "")
            + f", centres {c['centres']}",
            "",
            "| method | test AUC | vs plain | vs plain+clin | vs oracle | vs truth-LR | s/split |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, r in c["summary"].items():
            lines.append(
                f"| {m} | {r['auc_mean']:.3f} ± {r['auc_sd']:.3f} | "
                + " | ".join(format_diff(r.get(k)) for k in ("vs_plain", "vs_plain_clin", "vs_oracle", "vs_truth_lr"))
                + f" | {r['seconds_per_split']:.1f} |"
            )
        lines.append("")
    rows = pooled(result)
    if rows and len(result.get("cohorts", {})) > 1:
        lines += [
            "## All cohorts: paired differences pooled over every cohort's splits",
            "",
            "| comparison | mean ± SD | splits lost |",
            "|---|---|---|",
            *[f"| {r['a']} − {r['b']} | {r['mean']:+.3f} ± {r['sd']:.3f} | {r['lost']}/{r['n']} |" for r in rows],
            "",
        ]
    lines += ["## Goals", "", "| goal | status | detail |", "|---|---|---|"]
    for g in result.get("goals", []):
        lines.append(f"| {g['goal']} | {g['status']} | {g['detail']} |")
    m = result.get("machine", {})
    before = np.round(m.get("load_average_before", []), 1).tolist()
    after = np.round(m.get("load_average", []), 1).tolist()
    lines += [
        "",
        f"Machine: {m.get('platform', '?')}, {m.get('cpu_count', '?')} CPUs, load average before "
        f"{before} / after {after}"
        " (shared machine: wall times are upper bounds).",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
