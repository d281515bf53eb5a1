"""Publication figures of the evaluation: ROC curves with CI bands, calibration, decision curves, nomogram.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global figure state,
nothing left open) and :func:`save_figure` writes it as vector SVG plus a 300-dpi PNG. One colour per arm
comes from :func:`arm_colors` and is used in every figure, so a reader can follow an arm across them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rccgrade.errors import RccgradeError
from rccgrade.features.naming import arm_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from rccgrade.stats.evaluate import ArmEvaluation
    from rccgrade.stats.nomogram import Nomogram

__all__ = [
    "arm_colors",
    "arm_label",
    "plot_calibration",
    "plot_dca",
    "plot_nomogram",
    "plot_roc",
    "save_evaluation_figures",
    "save_figure",
]

# Okabe–Ito colour-blind-safe palette (black reserved for "treat none" / reference lines).
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#882255", "#44AA99")
_KNOWN = {
    "clinical": "#E69F00",
    "radiomics": "#009E73",
    "deep:box": "#56B4E9",
    "deep:tumour": "#0072B2",
    "deep:dilated5mm": "#CC79A7",
    "combined": "#D55E00",
    "stacked": "#882255",
}
_COHORT_TITLE = {"train": "Training cohort", "test": "Test cohort"}
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
    "svg.hashsalt": "rccgrade",
}


def arm_colors(arms: Sequence[str]) -> dict[str, str]:
    """One fixed colour per arm (hex), the same in every figure.

    The study's standard arms (``clinical``, ``radiomics``, ``deep:box``, ``deep:tumour``,
    ``deep:dilated5mm``, ``combined``, ``stacked``) always get the same colour; other arms take the
    remaining colours of the Okabe–Ito palette in the order given (then cycle).
    """
    out: dict[str, str] = {}
    used = {_KNOWN[a] for a in arms if a in _KNOWN}
    free = [c for c in _PALETTE if c not in used] or list(_PALETTE)
    k = 0
    for a in arms:
        if a in out:
            continue
        if a in _KNOWN:
            out[a] = _KNOWN[a]
        else:
            out[a] = free[k % len(free)]
            k += 1
    return out


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 300) -> dict[str, Path]:
    """Write ``<stem>.svg`` (vector, text kept as text) and ``<stem>.png`` (``dpi``) into ``out_dir``.

    The figure's constrained layout is computed once and then frozen (its layout engine set to none), so
    the SVG and PNG agree and re-saving gives byte-identical SVG.

    Returns:
        ``{"svg": path, "png": path}``.
    """
    import matplotlib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"svg": out / f"{stem}.svg", "png": out / f"{stem}.png"}
    if fig.get_layout_engine() is not None:
        # run the constrained layout once and freeze it, so the SVG, the PNG and any re-save agree exactly
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rccgrade"}):
        fig.savefig(paths["svg"], format="svg", metadata={"Date": None})
        fig.savefig(paths["png"], format="png", dpi=dpi, facecolor="white")
    return paths


def _finish_unit_axes(ax: Axes, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.92", linewidth=0.6)
    ax.set_axisbelow(True)


def _metric(ev: ArmEvaluation, cohort: str, metric: str) -> tuple[float, float, float]:
    m = ev.metrics
    row = m[(m["cohort"] == cohort) & (m["metric"] == metric)]
    if row.empty:
        return (np.nan, np.nan, np.nan)
    r = row.iloc[0]
    return float(r["value"]), float(r["ci_lower"]), float(r["ci_upper"])


def _cohorts(evaluations: Mapping[str, ArmEvaluation], cohorts: Sequence[str] | None) -> list[str]:
    if not evaluations:
        raise RccgradeError("no model arm to plot; evaluate at least one arm first")
    if cohorts is not None:
        return list(cohorts)
    seen: list[str] = []
    for ev in evaluations.values():
        seen += [c for c in ev.roc if c not in seen]
    return seen


def plot_roc(
    evaluations: Mapping[str, ArmEvaluation],
    colors: Mapping[str, str] | None = None,
    cohorts: Sequence[str] | None = None,
) -> Figure:
    """ROC curves of every arm, one panel per cohort (training, test), with pointwise 95% bootstrap bands.

    The legend gives each arm's AUC with its CI; the diagonal marks chance.
    """
    cohorts = _cohorts(evaluations, cohorts)
    colors = dict(colors or arm_colors(list(evaluations)))
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(3.6 * len(cohorts), 3.9)
        axes = fig.subplots(1, len(cohorts), squeeze=False)[0]
        for ax, cohort in zip(axes, cohorts, strict=True):
            ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=0.8, label="_chance")
            for arm, ev in evaluations.items():
                if cohort not in ev.roc:
                    continue
                col = colors[arm]
                band = ev.roc_band.get(cohort)
                if band is not None and len(band):
                    ax.fill_between(
                        band["fpr"],
                        band["tpr_lower"],
                        band["tpr_upper"],
                        color=col,
                        alpha=0.10,
                        linewidth=0,
                    )
                pts = ev.roc[cohort]
                a, lo, hi = _metric(ev, cohort, "auc")
                ax.plot(
                    pts["fpr"],
                    pts["tpr"],
                    color=col,
                    linewidth=1.5,
                    label=f"{arm_label(arm)}: {a:.3f} ({lo:.3f}–{hi:.3f})",
                )
            _finish_unit_axes(ax, "1 − specificity", "Sensitivity")
            ax.set_title(_COHORT_TITLE.get(cohort, cohort))
            # inside the empty lower-right corner of ROC space: a legend outside the axes is clipped by the
            # constrained layout once there are more than a few arms
            ax.legend(
                loc="lower right",
                title="AUC (95% CI)",
                title_fontsize=6.5,
                fontsize=6.0,
                frameon=True,
                framealpha=0.9,
                edgecolor="0.85",
                borderpad=0.4,
                handlelength=1.4,
            )
    return fig


def plot_calibration(
    evaluations: Mapping[str, ArmEvaluation],
    cohort: str = "test",
    colors: Mapping[str, str] | None = None,
    error_bars: bool | None = None,
) -> Figure:
    """Calibration plot of every arm on one cohort: LOWESS curves, binned observed proportions (quantile
    bins), the ideal diagonal, and a strip of each arm's predicted-probability distribution below.

    The legend reports each arm's calibration intercept (ideal 0) and slope (ideal 1). Wilson 95% CIs of
    the binned proportions are drawn when ``error_bars`` is True (default: only for one or two arms, where
    they stay readable).
    """
    colors = dict(colors or arm_colors(list(evaluations)))
    import matplotlib

    arms = [a for a, ev in evaluations.items() if cohort in ev.calibration]
    if not arms:
        raise RccgradeError(f"no arm has calibration results for the {cohort!r} cohort")
    if error_bars is None:
        error_bars = len(arms) <= 2
    n = len(arms)
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(4.0, 4.9 + 0.16 * n)
        gs = fig.add_gridspec(2, 1, height_ratios=[4, 0.35 + 0.25 * n])
        ax = fig.add_subplot(gs[0])
        hx = fig.add_subplot(gs[1], sharex=ax)
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=0.8, label="Ideal")
        for k, arm in enumerate(arms):
            ev = evaluations[arm]
            col = colors[arm]
            it = _metric(ev, cohort, "calibration_intercept")[0]
            sl = _metric(ev, cohort, "calibration_slope")[0]
            sm = ev.smoothed_calibration.get(cohort)
            lab = f"{arm_label(arm)}: intercept {it:.2f}, slope {sl:.2f}"
            if sm is not None and len(sm):
                ax.plot(sm["predicted"], sm["observed"], color=col, linewidth=1.5, label=lab)
                lab = "_nolegend_"
            cc = ev.calibration[cohort]
            if error_bars:
                yerr = np.vstack([cc["observed"] - cc["ci_lower"], cc["ci_upper"] - cc["observed"]])
                ax.errorbar(
                    cc["mean_predicted"],
                    cc["observed"],
                    yerr=np.clip(yerr, 0.0, None),
                    fmt="o",
                    markersize=3.5,
                    color=col,
                    elinewidth=0.7,
                    capsize=1.5,
                    alpha=0.85,
                    label=lab,
                )
            else:
                ax.plot(cc["mean_predicted"], cc["observed"], "o", markersize=3.5, color=col, alpha=0.8, label=lab)
            bins = np.linspace(0, 1, 26)
            pr = ev.predictions[cohort]["p"].to_numpy() if cohort in ev.predictions else np.array([])
            if pr.size:
                h, _ = np.histogram(pr, bins=bins)
                h = h / max(h.max(), 1) * 0.85
                base = n - 1 - k
                hx.bar(bins[:-1], h, width=np.diff(bins), bottom=base, align="edge", color=col, linewidth=0)
        _finish_unit_axes(ax, "", "Observed proportion of high grade")
        ax.set_aspect("auto")
        ax.tick_params(labelbottom=False)
        ax.set_title(f"Calibration — {_COHORT_TITLE.get(cohort, cohort).lower()}")
        ax.legend(loc="upper left", frameon=True, framealpha=0.92, edgecolor="0.85", fontsize=7)
        hx.set_ylim(0, n)
        hx.set_yticks(np.arange(n) + 0.4, [arm_label(a) for a in reversed(arms)], fontsize=6.5)
        hx.tick_params(axis="y", length=0)
        hx.spines["left"].set_visible(False)
        hx.set_xlabel("Predicted probability of high grade")
    return fig


def plot_dca(
    curves: pd.DataFrame,
    colors: Mapping[str, str] | None = None,
    title: str = "Decision curves",
    threshold_max: float | None = None,
) -> Figure:
    """Net benefit against threshold probability for every model, Treat All (grey) and Treat None (black).

    Args:
        curves: Long table from :func:`rccgrade.stats.dca.decision_curve` (or ``evaluate_arms``).
        colors: Arm colours (default :func:`arm_colors` of the models in the table).
        title: Panel title.
        threshold_max: Right end of the x-axis (default: the largest threshold in the table).
    """
    models = [v for v in dict.fromkeys(curves["variable"]) if v not in ("all", "none")]
    colors = dict(colors or arm_colors(models))
    import matplotlib

    prev = float(curves["pos_rate"].iloc[0])
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(4.6, 3.6)
        ax = fig.add_subplot()
        for var in [*models, "all", "none"]:
            d = curves[curves["variable"] == var]
            if var == "all":
                kw: dict[str, Any] = {"color": "0.55", "linewidth": 1.2, "label": "Treat all"}
            elif var == "none":
                kw = {"color": "black", "linewidth": 1.0, "linestyle": "--", "label": "Treat none"}
            else:
                kw = {"color": colors[var], "linewidth": 1.5, "label": arm_label(var)}
            ax.plot(d["threshold"], d["net_benefit"], **kw)
        xmax = float(curves["threshold"].max()) if threshold_max is None else threshold_max
        ax.set_xlim(0, xmax)
        top = max(prev, 0.05) * 1.1
        ax.set_ylim(-0.15 * top, top)
        ax.set_xlabel("Threshold probability of high grade")
        ax.set_ylabel("Net benefit")
        ax.set_title(title)
        ax.grid(True, color="0.92", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.legend(loc="upper right", frameon=True, framealpha=0.9, edgecolor="0.85")
    return fig


def plot_nomogram(nomo: Nomogram, n_ticks: int = 6, title: str = "Nomogram") -> Figure:
    """The nomogram: a Points ruler (0–100), one scale per predictor, Total points and the probability of
    high grade. Read down: each predictor's value gives points on the top ruler; their sum on the Total
    points ruler sits above the predicted probability.
    """
    import matplotlib

    from rccgrade.stats.nomogram import nice_ticks, nomogram_table

    tab = nomogram_table(nomo, n_ticks=n_ticks)
    preds = list(dict.fromkeys(tab.loc[tab["axis"] != "probability", "axis"]))
    total_max = float(nomo.max_points.sum())
    rows = ["Points", *preds, "Total points", "Probability"]
    with matplotlib.rc_context(_STYLE):
        fig = _new_figure(7.0, 0.5 * len(rows) + 0.7)
        ax = fig.add_subplot()
        ax.set_xlim(-2, 103)
        ax.set_ylim(len(rows) - 0.6, -0.75)
        ax.axis("off")

        def ruler(y: float, pos: np.ndarray, labels: Sequence[str], name: str, span: tuple[float, float]) -> None:
            ax.plot(list(span), [y, y], color="black", linewidth=0.9, solid_capstyle="butt")
            last = {"above": -np.inf, "below": -np.inf}
            for k in np.argsort(pos, kind="stable"):
                # labels that would collide go below the line; if both sides are taken the tick is skipped
                side = next((sd for sd in ("above", "below") if pos[k] - last[sd] >= 4.5), None)
                if side is None:
                    continue
                last[side] = pos[k]
                sign = 1.0 if side == "above" else -1.0
                ax.plot([pos[k], pos[k]], [y, y - 0.12 * sign], color="black", linewidth=0.8)
                ax.text(
                    pos[k],
                    y - 0.17 * sign,
                    labels[k],
                    ha="center",
                    va="bottom" if side == "above" else "top",
                    fontsize=7.5,
                )
            ax.text(-4, y, name, ha="right", va="center", fontsize=8.5, fontweight="bold", clip_on=False)

        for p in nice_ticks(0, 100, 11):
            ax.plot([p, p], [0, len(rows) - 1], color="0.9", linewidth=0.4, zorder=0)
        top = nice_ticks(0, 100, 11)
        ruler(0, top, [f"{t:g}" for t in top], "Points", (0.0, 100.0))
        for p in np.arange(0, 101, 2.0):
            ax.plot([p, p], [0, -0.06], color="black", linewidth=0.5)
        for i, f in enumerate(preds, start=1):
            d = tab[tab["axis"] == f]
            j = nomo.feature_names.index(f)
            ends = (np.array([nomo.lows[j], nomo.highs[j]]) * nomo.coef[j] - nomo.min_effect[j]) / nomo.lp_per_point
            ruler(
                i,
                d["points"].to_numpy(),
                [f"{v:g}" for v in d["value"]],
                nomo.labels[j],
                (float(ends.min()), float(ends.max())),
            )
        scale = 100.0 / total_max if total_max > 0 else 1.0
        tt = nice_ticks(0, total_max, 9)
        ruler(len(preds) + 1, tt * scale, [f"{t:g}" for t in tt], "Total points", (0.0, 100.0))
        pr = tab[tab["axis"] == "probability"]
        if len(pr):
            pos = pr["points"].to_numpy() * scale
            ruler(
                len(preds) + 2,
                pos,
                [f"{v:g}" for v in pr["value"]],
                "Probability of high grade",
                (float(pos.min()), float(pos.max())),
            )
        ax.set_title(title, loc="left")
    return fig


def save_evaluation_figures(
    evaluations: Mapping[str, ArmEvaluation],
    out_dir: str | Path,
    *,
    decision_curves: Mapping[str, pd.DataFrame] | None = None,
    nomogram: Nomogram | None = None,
    colors: Mapping[str, str] | None = None,
    dpi: int = 300,
) -> dict[str, dict[str, Path]]:
    """Write every evaluation figure (SVG + 300-dpi PNG) and return their paths by name.

    Names: ``roc``, ``calibration_<cohort>``, ``dca_<cohort>`` (when ``decision_curves`` is given, e.g.
    ``evaluate_arms(...)["decision_curves"]``), ``nomogram``. ``dpi`` is the PNG resolution.
    """
    colors = dict(colors or arm_colors(list(evaluations)))
    out: dict[str, dict[str, Path]] = {"roc": save_figure(plot_roc(evaluations, colors), out_dir, "roc", dpi)}
    for cohort in _cohorts(evaluations, None):
        out[f"calibration_{cohort}"] = save_figure(
            plot_calibration(evaluations, cohort, colors), out_dir, f"calibration_{cohort}", dpi
        )
    for cohort, curves in (decision_curves or {}).items():
        title = f"Decision curves — {_COHORT_TITLE.get(cohort, cohort).lower()}"
        out[f"dca_{cohort}"] = save_figure(plot_dca(curves, colors, title), out_dir, f"dca_{cohort}", dpi)
    if nomogram is not None:
        out["nomogram"] = save_figure(plot_nomogram(nomogram), out_dir, "nomogram", dpi)
    return out
