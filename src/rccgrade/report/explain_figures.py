"""Cohort-level explanation figures: a beeswarm of per-patient contributions per arm, and source shares.

Like :mod:`rccgrade.report.figures`, every function returns a pyplot-free :class:`~matplotlib.figure.Figure`
(save with :func:`rccgrade.report.figures.save_figure`: SVG + 300-dpi PNG). Inputs are the typed results of
:mod:`rccgrade.models.explain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rccgrade.errors import RccgradeError
from rccgrade.report.figures import _new_figure, arm_colors, arm_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from rccgrade.models.explain import ArmContributionSummary


def beeswarm_positions(values: np.ndarray, width: float = 0.35, bins: int = 40) -> np.ndarray:
    """Vertical offsets that spread points of similar value (deterministic histogram swarm).

    Points are binned along the value axis; the k-th point of a bin goes to offset ±(k // 2 + 1)·step,
    alternating sides, scaled so the fullest bin spans ``±width``. Shape (n,) → (n,).
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.zeros(v.size)
    if v.size == 0:
        return out
    lo, hi = float(np.min(v)), float(np.max(v))
    idx = np.zeros(v.size, dtype=int) if hi == lo else np.minimum(((v - lo) / (hi - lo) * bins).astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    step = width / max(1, int(counts.max()) // 2 + 1)
    seen = np.zeros(bins, dtype=int)
    for i in np.argsort(v, kind="mergesort"):
        k = seen[idx[i]]
        seen[idx[i]] += 1
        out[i] = 0.0 if k == 0 else ((k + 1) // 2) * step * (1 if k % 2 else -1)
    return out


def plot_contribution_beeswarm(summary: ArmContributionSummary, top_n: int = 15, title: str | None = None) -> Figure:
    """Beeswarm of one arm: one row per top feature (by mean |contribution|), one dot per patient.

    The x-axis is the contribution (log-odds, or probability for random forests); colour is the value the
    model saw (z-score, clipped to ±2: blue low, red high), so the direction of an effect is visible.
    """
    contrib = summary.contributions
    feats = list(summary.features["feature"].iloc[:top_n])
    if not feats:
        raise RccgradeError("no contributions to plot")
    fig = _new_figure(7.0, 0.35 * len(feats) + 1.4)
    ax = fig.add_subplot()
    for row, feat in enumerate(reversed(feats)):
        vals = contrib.values[feat].to_numpy(dtype=np.float64)
        colour = np.clip(np.nan_to_num(contrib.inputs[feat].to_numpy(dtype=np.float64)), -2, 2)
        ax.scatter(
            vals,
            row + beeswarm_positions(vals),
            c=colour,
            cmap="coolwarm",
            vmin=-2,
            vmax=2,
            s=8,
            linewidths=0,
        )
    ax.axvline(0.0, color="#444", lw=0.8)
    ax.set_yticks(range(len(feats)), [f if len(f) <= 48 else f[:45] + "…" for f in reversed(feats)], fontsize=7)
    unit = "log-odds" if contrib.scale == "logit" else "probability"
    ax.set_xlabel(f"contribution to P(ISUP 3–4) ({unit})")
    ax.set_title(title or f"{arm_label(contrib.arm or 'arm')}: feature contributions", fontsize=10)
    return fig


def plot_source_shares(table: pd.DataFrame) -> Figure:
    """Stacked horizontal bars: each arm's mean |contribution| split by source (rows of ``table`` sum to 1).

    Args:
        table: :func:`rccgrade.models.explain.source_share_table` (arms × sources).
    """
    if table.empty:
        raise RccgradeError("no source shares to plot")
    colours = arm_colors(list(table.columns))
    fig = _new_figure(6.5, 0.45 * len(table) + 1.4)
    ax = fig.add_subplot()
    left = np.zeros(len(table))
    for src in table.columns:
        w = table[src].to_numpy(dtype=np.float64)
        ax.barh(range(len(table)), w, left=left, color=colours[src], label=arm_label(src))
        left += w
    ax.set_yticks(range(len(table)), [arm_label(a) for a in table.index])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of mean |contribution|")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=max(1, len(table.columns)))
    return fig


def save_explanation_figures(
    summaries: Mapping[str, ArmContributionSummary], out_dir: str, top_n: int = 15
) -> dict[str, dict[str, object]]:
    """Beeswarm per arm plus the source-share figure and CSV; returns ``{name: {"svg", "png"}}`` paths."""
    from pathlib import Path

    from rccgrade.models.explain import source_share_table
    from rccgrade.report.figures import save_figure
    from rccgrade.safepath import safe_filename

    out: dict[str, dict[str, object]] = {}
    for arm, summary in summaries.items():
        out[arm] = dict(
            save_figure(plot_contribution_beeswarm(summary, top_n), out_dir, f"beeswarm_{safe_filename(arm)}")
        )
    table = source_share_table(summaries)
    out["source_shares"] = dict(save_figure(plot_source_shares(table), out_dir, "source_shares"))
    csv = Path(out_dir) / "source_shares.csv"
    table.to_csv(csv)
    out["source_shares"]["csv"] = csv
    return out
