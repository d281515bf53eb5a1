"""The HTML report: self-contained, every figure decodes, and it renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rccgrade.report.html import (
    ChecklistItem,
    Figure,
    ReportContext,
    default_checklist,
    external_urls,
    image_data_uri,
    inline_svg,
    render_report,
)
from rccgrade.report.settings import ReportSettings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _plot(path: Path, fmt: str, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(4, 3), dpi=80)
    ax = fig.subplots()
    rng = np.random.default_rng(seed)
    ax.plot(np.sort(rng.random(20)), np.sort(rng.random(20)), color="C1")
    ax.set_title(f"figure {seed}")
    fig.savefig(path, format=fmt)
    return path


def _context(tmp_path: Path) -> ReportContext:
    figs = {
        "roc_train": Figure("ROC", png=_plot(tmp_path / "roc_train.png", "png", 1)),
        "roc_test": Figure("ROC", png=_plot(tmp_path / "roc_test.png", "png", 2)),
        "calibration": Figure("Calibration plot.", svg=_plot(tmp_path / "cal.svg", "svg", 3)),
        "dca": Figure(
            "Decision curves.", png=_plot(tmp_path / "dca.png", "png", 4), svg=_plot(tmp_path / "dca.svg", "svg", 4)
        ),
        "nomogram": Figure("Nomogram.", png=_plot(tmp_path / "nomo.png", "png", 5)),
        "gradcam_0": Figure("cam", png=_plot(tmp_path / "cam.png", "png", 6)),
    }
    ctx = ReportContext(
        title="Test report",
        run_name="unit",
        version="0.0",
        summary=["Forty patients were analysed."],
        warnings=["Deep features come from a randomly initialised network."],
        cohort={
            "n_total": 42,
            "n_usable": 40,
            "n_excluded": 2,
            "n_high": 14,
            "prevalence": 35.0,
            "n_train": 28,
            "n_test": 12,
            "n_train_high": 10,
            "n_test_high": 4,
            "split_source": "stratified random",
        },
        table1=[
            {
                "cohorts": [
                    {"title": "Training cohort", "n_low": 18, "n_high": 10},
                    {"title": "Test cohort", "n_low": 8, "n_high": 4},
                ],
                "rows": [
                    {
                        "variable": "age, mean ± SD",
                        "level": "",
                        "test": "Welch t-test",
                        "missing": 1,
                        "cells": [
                            {"low": "60.1 ± 9.0", "high": "64.2 ± 8.1", "p": 0.21},
                            {"low": "61.0 ± 7.0", "high": "66.0 ± 5.0", "p": 0.11},
                        ],
                    },
                    {
                        "variable": "sex, n (%)",
                        "level": "",
                        "test": "χ² test",
                        "missing": 0,
                        "cells": [{"low": "", "high": "", "p": 0.0004}, {"low": "", "high": "", "p": 0.5}],
                    },
                    {
                        "variable": "",
                        "level": "F",
                        "test": "",
                        "missing": 0,
                        "cells": [
                            {"low": "8 (44.4)", "high": "2 (20.0)", "p": None},
                            {"low": "4 (50.0)", "high": "1 (25.0)", "p": None},
                        ],
                    },
                ],
            }
        ],
        qc={
            "text": "All cases usable.",
            "issues": [{"stage": "validation", "check": "hu_range", "severity": "warning", "n": 1, "example": "p1: …"}],
        },
        metrics=[
            {
                "arm": a,
                "label": a.capitalize(),
                "color": "#1b9e77",
                "cohort": c,
                "n": 28 if c == "Training (OOF)" else 12,
                "auc": 0.8,
                "auc_lo": 0.7,
                "auc_hi": 0.9,
                "brier": 0.2,
                "cal_slope": 1.1,
                "cal_intercept": 0.0,
                "hl_p": 0.5,
                "first": c == "Training (OOF)",
                "best": a == "combined",
                **{k: 0.75 for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv")},
                **{f"{k}_lo": 0.6 for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv")},
                **{f"{k}_hi": 0.9 for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv")},
            }
            for a in ("clinical", "combined")
            for c in ("Training (OOF)", "Test")
        ],
        delong=[
            {
                "cohort": "Test cohort",
                "arms": ["Clinical", "Combined"],
                "diff": [[None, -0.1], [0.1, None]],
                "p": [[None, 0.03], [0.03, None]],
                "adjusted": True,
            }
        ],
        figures=figs,
        features=[
            {
                "arm": "combined",
                "label": "Combined",
                "n_selected": 2,
                "n_candidates": 100,
                "classifier": "logistic",
                "value_name": "Coefficient (per SD)",
                "rows": [
                    {"feature": "rad:arterial:original_glcm_Contrast", "value": 0.8},
                    {"feature": "clin:age", "value": -0.2},
                ],
                "truncated": False,
            }
        ],
        stability={
            "text": "80 of 100 features stable.",
            "by_class": [{"cls": "original glcm", "n": 24, "stable": 20, "pct": 83.3, "median": 0.88}],
            "icc_model": "ICC(2,1)",
            "threshold": 0.75,
        },
        gradcam=[{"key": "gradcam_0", "caption": "p1: high grade", "arm": "Deep (dilated 5 mm)"}],
        methods=["Outcome: ISUP 3–4."],
        provenance={
            "seed": 0,
            "source_revision": None,
            "platform_text": "test",
            "total_s": 1.0,
            "packages": {"numpy": "2"},
            "checksums": {"manifest.csv": "0" * 64},
            "n_checksums": 1,
            "checksums_truncated": False,
            "config_yaml": "seed: 0\n",
            "stages": [{"name": "cohort", "status": "ran", "key": None, "seconds": 1.0, "n_failures": 0}],
        },
    )
    ctx.checklist = default_checklist(ctx)
    return ctx


def _img_sources(text: str) -> list[str]:
    return re.findall(r'<img[^>]+src="([^"]+)"', text)


def test_report_is_self_contained_and_every_png_decodes(tmp_path: Path) -> None:
    from PIL import Image

    path = render_report(_context(tmp_path), tmp_path / "report.html")
    text = path.read_text()
    assert external_urls(text) == []
    srcs = _img_sources(text)
    assert len(srcs) == 5  # roc ×2, dca (png), nomogram, gradcam; calibration exists only as SVG → inlined
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.size[0] > 10 and img.size[1] > 10
    assert text.count("<svg") == 1
    for needle in (
        "Table 1.",
        "Figure 1.",
        "Warning",
        "Clinical characteristics",
        "TRIPOD+AI",
        "ICC(2,1)",
        "p1: high grade",
    ):
        assert needle in text, needle
    assert "&lt;0.001" in text  # p-values formatted the way papers print them


def test_svg_embedding_prefixes_ids(tmp_path: Path) -> None:
    svg = tmp_path / "a.svg"
    svg.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg><defs><clipPath id="p1"><rect/></clipPath></defs>'
        '<g clip-path="url(#p1)"/><use href="#p1"/></svg>'
    )
    out = inline_svg(svg, "fig-")
    assert out.startswith("<svg")
    assert 'id="fig-p1"' in out and "url(#fig-p1)" in out and 'href="#fig-p1"' in out
    ctx = _context(tmp_path)
    text = render_report(ctx, tmp_path / "r.html", ReportSettings(embed="svg")).read_text()
    assert text.count("<svg") == 2  # calibration (svg only) and dca (svg preferred)
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_missing_figure_and_bad_type_are_reported(tmp_path: Path) -> None:
    from rccgrade.errors import RccgradeError

    ctx = _context(tmp_path)
    ctx.figures.pop("calibration")
    text = render_report(ctx, tmp_path / "r.html").read_text()
    assert "Calibration figure not available in this run." in text
    with pytest.raises(RccgradeError, match="cannot embed"):
        image_data_uri(tmp_path / "x.bmp")
    with pytest.raises(RccgradeError, match="not found"):
        image_data_uri(tmp_path / "missing.png")


def test_checklist_reflects_content(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    items = {(c.item, c.topic): c for c in default_checklist(ctx)}
    assert items[("23a", "Calibration")].status == "covered"
    assert all(isinstance(c, ChecklistItem) for c in items.values())
    ctx.figures.pop("calibration")
    ctx.external = []
    items = {(c.item, c.topic): c for c in default_checklist(ctx)}
    assert items[("23a", "Calibration")].status == "partial"
    assert items[("12g / 16", "External evaluation")].status == "author"


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot_report(html: Path, png: Path, tmp_path: Path, height: int = 4000) -> Path:
    """Render ``html`` in headless Chromium to ``png`` (1280 px wide)."""
    res = _chromium([f"--screenshot={png}", f"--window-size=1280,{height}", html.resolve().as_uri()], tmp_path)
    assert png.is_file(), res.stderr[-2000:]
    return png


def images_loaded(html: Path, tmp_path: Path) -> tuple[int, int]:
    """(images whose naturalWidth > 0, all images) after Chromium loaded the page."""
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load',()=>{const im=[...document.images];"
        "document.body.setAttribute('data-loaded', im.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+im.length);});"
        "</script></body>"
    )
    probe.write_text(html.read_text().replace("</body>", script))
    res = _chromium(["--dump-dom", "--virtual-time-budget=10000", probe.resolve().as_uri()], tmp_path)
    m = re.search(r'data-loaded="(\d+)/(\d+)"', res.stdout)
    assert m, res.stderr[-2000:]
    return int(m.group(1)), int(m.group(2))


def assert_not_blank(png: Path) -> None:
    """The screenshot shows something: several colours and real contrast, not an empty white page."""
    from PIL import Image

    arr = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert arr.std() > 10.0
    assert (arr < 128).mean() > 0.005  # some dark pixels (text, lines)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium); CI installs it")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    html = render_report(_context(tmp_path), tmp_path / "report.html")
    png = screenshot_report(html, tmp_path / "shot.png", tmp_path)
    assert_not_blank(png)
    loaded, total = images_loaded(html, tmp_path)
    assert total == 5 and loaded == total
