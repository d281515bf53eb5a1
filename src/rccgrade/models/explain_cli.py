"""``rccgrade explain BUNDLE``: what a model reads and how, in words (terminal + JSON + Markdown + HTML).

Lists the sources, every selected feature with its meaning (a PyRadiomics name such as
``rad:arterial:wavelet-LLH_glcm_Contrast`` → arterial phase, wavelet LLH filter, GLCM class, Contrast), its
coefficient or importance, the decision threshold and the training cohort summary.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rccgrade.models.arms import StackedClassifier, describe_model
from rccgrade.models.bundle import ModelBundle, load_bundle

_CLASSES = {
    "firstorder": "first-order intensity statistics",
    "shape": "3-D shape",
    "shape2D": "2-D shape",
    "glcm": "grey-level co-occurrence matrix (GLCM)",
    "glrlm": "grey-level run-length matrix (GLRLM)",
    "glszm": "grey-level size-zone matrix (GLSZM)",
    "gldm": "grey-level dependence matrix (GLDM)",
    "ngtdm": "neighbouring grey-tone difference matrix (NGTDM)",
}
_PASS = {"L": "low-pass", "H": "high-pass"}


def _image_type(text: str) -> str:
    if text == "original":
        return "original image (no filter)"
    if m := re.fullmatch(r"wavelet-([LH]{3})", text):
        bands = ", ".join(f"{_PASS[c]} in {ax}" for c, ax in zip(m.group(1), "xyz", strict=True))
        return f"wavelet {m.group(1)} ({bands})"
    if m := re.fullmatch(r"log-sigma-(\d+)-(\d+)-mm-3D", text):
        return f"Laplacian of Gaussian, sigma {m.group(1)}.{m.group(2)} mm"
    known = {
        "square": "square filter",
        "squareroot": "square-root filter",
        "logarithm": "logarithm filter",
        "exponential": "exponential filter",
        "gradient": "gradient magnitude",
    }
    if text in known:
        return known[text]
    if m := re.fullmatch(r"lbp-(2D|3D)(?:-(.+))?", text):
        return f"local binary pattern ({m.group(1)}{', ' + m.group(2) if m.group(2) else ''})"
    return f"image type {text}"


def describe_feature(name: str) -> str:
    """A FeatureTable column name in words.

    ``rad:<phase>:<imagetype>_<class>_<feature>`` (PyRadiomics), ``deep:<roi>:fNNNN`` / ``deep:<roi>:pcNNN``,
    ``clin:<variable>`` and ``clin:<variable>=<level>`` (one-hot level). Anything else is returned as is.
    """
    if name.startswith("rad:"):
        parts = name.split(":", 2)
        if len(parts) == 3:
            phase, rest = parts[1], parts[2]
            bits = rest.split("_")
            if len(bits) >= 3:
                image, cls, feat = bits[0], bits[1], "_".join(bits[2:])
                cls_words = _CLASSES.get(cls, f"class {cls}")
                return f"radiomics, {phase} phase: {_image_type(image)}; {cls_words}; feature {feat}"
            return f"radiomics, {phase} phase: {rest}"
    if name.startswith("deep:"):
        parts = name.split(":")
        if len(parts) == 3:
            roi, feat = parts[1], parts[2]
            if m := re.fullmatch(r"pc(\d+)", feat):
                return f"deep features of ROI '{roi}': principal component {int(m.group(1))} (PCA fitted on training)"
            if m := re.fullmatch(r"f(\d+)", feat):
                return f"deep features of ROI '{roi}': CNN embedding dimension {int(m.group(1))}"
    if name.startswith("clin:"):
        var = name[len("clin:") :]
        if "=" in var:
            col, level = var.split("=", 1)
            return f"clinical variable '{col}' equal to '{level}' (vs the reference level)"
        return f"clinical variable '{var}'"
    if m := re.fullmatch(r"\[(.+)\] (.+)", name):
        return f"via arm {m.group(1)}: {describe_feature(m.group(2))}"
    return name


@dataclass(frozen=True)
class BundleExplanation:
    """What ``rccgrade explain`` reports about a bundle."""

    arm: str
    classifier: str
    sources: list[str]
    threshold: float
    threshold_method: str
    n_train: int
    n_train_high_grade: int
    created: str
    features: list[dict[str, Any]]
    inputs: list[str]


def explain_bundle(bundle: ModelBundle) -> BundleExplanation:
    """Selected features (meaning, coefficient, importance, training mean/SD), sources, threshold, cohort."""
    model = bundle.model
    desc = describe_model(model)
    if isinstance(model, StackedClassifier):
        classifier, sources = "stacked (logistic meta-model)", [n for n, _ in model.estimators_]
    else:
        clf = model.named_steps["clf"]
        classifier = type(clf).__name__
        sources = [name for name, _, _ in model.named_steps["features"].transformers_]
    rows = []
    for rec in desc.to_dict(orient="records"):
        feat = str(rec["feature"])
        rows.append(
            {
                "feature": feat,
                "meaning": "model intercept" if feat == "(intercept)" else describe_feature(feat),
                **{
                    k: (None if pd.isna(rec.get(k)) else float(rec[k]))
                    for k in ("coefficient", "importance", "mean", "sd")
                },
            }
        )
    meta = bundle.meta
    return BundleExplanation(
        arm=bundle.arm,
        classifier=classifier,
        sources=sources,
        threshold=bundle.threshold,
        threshold_method=str(meta.get("threshold_method", "")),
        n_train=int(meta.get("n_train", 0)),
        n_train_high_grade=int(meta.get("n_train_high_grade", 0)),
        created=str(meta.get("created", "")),
        features=rows,
        inputs=bundle.feature_names,
    )


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def to_markdown(ex: BundleExplanation) -> str:
    """The explanation as Markdown."""
    lines = [
        f"# Model bundle: arm `{ex.arm}`",
        "",
        f"- classifier: {ex.classifier}",
        f"- sources: {', '.join(ex.sources)}",
        f"- decision threshold: {ex.threshold:.4f} ({ex.threshold_method}) on P(ISUP 3–4)",
        f"- training cohort: {ex.n_train} patients, {ex.n_train_high_grade} high grade",
        f"- input columns read: {len(ex.inputs)}; selected model features: {len(ex.features)}",
        f"- created: {ex.created}",
        "",
        "| feature | meaning | coefficient (per SD) | importance |",
        "|---|---|---:|---:|",
    ]
    for f in ex.features:
        feat = f["feature"].replace("|", "\\|")
        lines.append(f"| `{feat}` | {f['meaning']} | {_num(f['coefficient'])} | {_num(f['importance'])} |")
    return "\n".join(lines) + "\n"


def to_html(ex: BundleExplanation) -> str:
    """The explanation as a self-contained HTML page."""
    e = html.escape
    rows = "".join(
        f"<tr><td><code>{e(f['feature'])}</code></td><td>{e(f['meaning'])}</td>"
        f"<td style='text-align:right'>{_num(f['coefficient'])}</td>"
        f"<td style='text-align:right'>{_num(f['importance'])}</td></tr>"
        for f in ex.features
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>rccgrade model {e(ex.arm)}</title><style>body{{font-family:system-ui,sans-serif;max-width:70em;"
        "margin:2em auto}td,th{padding:.2em .6em;border-bottom:1px solid #ddd}table{border-collapse:collapse}"
        f"</style></head><body><h1>Model bundle: arm {e(ex.arm)}</h1><ul>"
        f"<li>classifier: {e(ex.classifier)}</li><li>sources: {e(', '.join(ex.sources))}</li>"
        f"<li>decision threshold: {ex.threshold:.4f} ({e(ex.threshold_method)})</li>"
        f"<li>training cohort: {ex.n_train} patients, {ex.n_train_high_grade} high grade</li>"
        f"<li>created: {e(ex.created)}</li></ul><table><tr><th>feature</th><th>meaning</th>"
        f"<th>coefficient (per SD)</th><th>importance</th></tr>{rows}</table></body></html>"
    )


def explain_command(
    bundle: Path = typer.Argument(..., help="Model bundle folder (holds bundle.json and model.skops)."),
    out: Path = typer.Option(
        Path("explain"), "--out", "-o", help="Folder for explain.json, explain.md and explain.html."
    ),
) -> None:
    """Describe a model bundle: sources, selected features in words, coefficients/importances, threshold, cohort."""
    ex = explain_bundle(load_bundle(bundle))
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain.json").write_text(json.dumps(asdict(ex), indent=2, allow_nan=False), encoding="utf-8")
    (out / "explain.md").write_text(to_markdown(ex), encoding="utf-8")
    (out / "explain.html").write_text(to_html(ex), encoding="utf-8")
    console = Console()
    console.print(
        escape(
            f"arm {ex.arm} — {ex.classifier}; sources {', '.join(ex.sources)}; threshold {ex.threshold:.4f}; "
            f"trained on {ex.n_train} patients ({ex.n_train_high_grade} high grade)"
        ),
        highlight=False,
    )
    view = Table()
    for col in ("feature", "meaning", "coefficient", "importance"):
        view.add_column(col, overflow="fold")
    for f in ex.features:
        view.add_row(escape(f["feature"]), escape(f["meaning"]), _num(f["coefficient"]), _num(f["importance"]))
    console.print(view)
    console.print(f"wrote {out / 'explain.json'}, explain.md, explain.html", highlight=False)
