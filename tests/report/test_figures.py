"""Report figures: files written (SVG + 300-dpi PNG), consistent arm colours, legends with AUC and CI,
no pyplot global state."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from rccgrade.report.figures import (
    arm_colors,
    arm_label,
    plot_calibration,
    plot_dca,
    plot_nomogram,
    plot_roc,
    save_evaluation_figures,
    save_figure,
)
from rccgrade.stats import EvaluationSettings, build_nomogram, evaluate_arms


@pytest.fixture(scope="module")
def results() -> dict:
    def cohort(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        r = np.random.default_rng(seed)
        x = r.normal(size=n)
        y = (r.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
        arms = {
            "clinical": 1 / (1 + np.exp(-(0.5 * x + r.normal(size=n)))),
            "deep:dilated5mm": 1 / (1 + np.exp(-(1.3 * x + 0.5 * r.normal(size=n)))),
            "combined": 1 / (1 + np.exp(-(1.6 * x + 0.4 * r.normal(size=n)))),
        }
        return y, arms

    yt, pt = cohort(80, 1)
    yv, pv = cohort(50, 2)
    return evaluate_arms(yt, pt, yv, pv, EvaluationSettings(roc_band_bootstrap=30, n_bootstrap=100), seed=0)


def test_arm_colors_consistent_and_distinct() -> None:
    a = arm_colors(["clinical", "radiomics", "deep:box", "combined", "my_arm", "other"])
    b = arm_colors(["combined", "clinical"])
    assert a["clinical"] == b["clinical"] and a["combined"] == b["combined"]
    assert len(set(a.values())) == len(a)
    assert arm_colors(["x", "y"]) == arm_colors(["x", "y"])
    assert arm_label("deep:dilated5mm") == "Deep (dilated 5 mm)" and arm_label("clinical") == "Clinical"


def test_roc_figure_legend_and_colours(results: dict) -> None:
    arms = results["arms"]
    colors = arm_colors(list(arms))
    fig = plot_roc(arms, colors)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["Training cohort", "Test cohort"]
    m = results["metrics"]
    for ax, cohort in zip(axes, ("train", "test"), strict=True):
        assert ax.get_xlabel() == "1 − specificity" and ax.get_ylabel() == "Sensitivity"
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        for arm in arms:
            row = m[(m.arm == arm) & (m.cohort == cohort) & (m.metric == "auc")].iloc[0]
            expected = f"{arm_label(arm)}: {row.value:.3f} ({row.ci_lower:.3f}–{row.ci_upper:.3f})"
            assert expected in texts
        lines = {ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines()}
        for arm in arms:
            assert any(lab.startswith(arm_label(arm)) and col == to_hex(colors[arm]) for lab, col in lines.items())
        assert "_chance" in lines  # the diagonal


def test_dca_and_calibration_figures(results: dict) -> None:
    arms = results["arms"]
    colors = arm_colors(list(arms))
    fig = plot_dca(results["decision_curves"]["test"], colors)
    ax = fig.get_axes()[0]
    lines = {ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines()}
    assert lines["Combined"] == to_hex(colors["combined"]) and "Treat all" in lines and "Treat none" in lines
    assert ax.get_xlabel() == "Threshold probability of high grade" and ax.get_ylabel() == "Net benefit"
    cal = plot_calibration(arms, "test", colors)
    main = cal.get_axes()[0]
    assert main.get_ylabel() == "Observed proportion of high grade"
    labels = [t.get_text() for t in main.get_legend().get_texts()]
    assert labels[0] == "Ideal" and any(t.startswith("Combined: intercept") for t in labels)


def test_save_writes_svg_and_300dpi_png(tmp_path: Path) -> None:
    nomo = build_nomogram(
        [0.05, 0.6, 0.4], -5.0, ["age", "size", "male"], {"age": (30, 85), "size": (1, 12), "male": [0, 1]}
    )
    fig = plot_nomogram(nomo)
    paths = save_figure(fig, tmp_path, "nomogram")
    svg = paths["svg"].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "Probability of high grade" in svg  # text kept as text (editable vector)
    img = matplotlib.image.imread(paths["png"])
    w, h = fig.get_size_inches()
    assert img.shape[1] == pytest.approx(w * 300, abs=2) and img.shape[0] == pytest.approx(h * 300, abs=2)
    again = save_figure(fig, tmp_path / "again", "nomogram", dpi=40)
    assert again["svg"].read_bytes() == paths["svg"].read_bytes()  # deterministic SVG


def test_save_all_without_pyplot_state(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = {"clinical": np.clip(0.3 + 0.4 * y * rng.random(60), 0, 1), "radiomics": rng.random(60)}
    res = evaluate_arms(y, p, settings=EvaluationSettings(roc_band_bootstrap=20, n_bootstrap=100))
    nomo = build_nomogram([0.5, -1.0], 0.0, ["a", "b"], {"a": (0, 10), "b": (0, 1)})
    out = save_evaluation_figures(res["arms"], tmp_path, decision_curves=res["decision_curves"], nomogram=nomo, dpi=40)
    assert set(out) == {"roc", "calibration_train", "dca_train", "nomogram"}
    for paths in out.values():
        assert paths["svg"].stat().st_size > 1000 and paths["png"].stat().st_size > 1000
    assert plt.get_fignums() == before
