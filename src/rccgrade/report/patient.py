"""Per-patient prediction pages: one self-contained HTML page per patient, an index page and ``preds.json``.

Every row of the predictions (``ok``, ``failed`` and ``out_of_distribution``) gets a page, so every input
patient is accounted for. A page shows the status and reason, the probability and the class at the
bundle's training threshold (``ok`` only), every warning, and the patient's top feature contributions
(:mod:`rccgrade.models.explain`) as an inline SVG bar chart — no external file, script or font, so the page
opens anywhere and from an e-mail attachment. Page names come from :func:`rccgrade.safepath.child_path`,
so a hostile patient id cannot write outside the report folder.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from rccgrade import __version__
from rccgrade.models.explain import Contributions
from rccgrade.safepath import child_path

TEMPLATE_DIR = Path(__file__).parent / "templates"
TOP_N = 10


@dataclass(frozen=True)
class PatientReports:
    """What :func:`write_patient_reports` wrote.

    Attributes:
        index: The index page.
        pages: Patient id → its page (every row of the predictions).
        json: ``preds.json`` (the same content as the pages).
    """

    index: Path
    pages: dict[str, Path]
    json: Path


@dataclass(frozen=True)
class PagePanels:
    """The optional panels of the patient pages (built by :mod:`rccgrade.models.page_panels`).

    Every panel that is absent carries a note saying why, which the page prints — never an invented number.

    Attributes:
        nomogram: Patients × predictor points and ``total`` (the study nomogram's 0–100 scale), or None.
        nomogram_inputs: Patients × predictor values in original units (what the nomogram reads).
        nomogram_labels: Predictor → display name.
        nomogram_probability: Per patient, the probability the nomogram maps the total points to.
        nomogram_note: Why there is no nomogram (non-logistic or multi-source arm …).
        interval_note: Why an ``ok`` page has no interval, when it has none.
        qc_images: Patient → preprocessing's QC montage (mask outline on each registered phase).
        registration: Patient → phase → registration status (``reference`` for the mask phase).
        qc_note: Why there is no QC strip (precomputed features, QC off, failed preprocessing).
        gradcam_images: Patient → Grad-CAM overlay figure on the three phases.
        gradcam_note: Why there is no Grad-CAM (not a deep arm, no slices, head not foldable …).
    """

    nomogram: pd.DataFrame | None = None
    nomogram_inputs: pd.DataFrame | None = None
    nomogram_labels: Mapping[str, str] = field(default_factory=dict)
    nomogram_probability: pd.Series | None = None
    nomogram_note: str = ""
    interval_note: str = ""
    qc_images: Mapping[str, Path] = field(default_factory=dict)
    registration: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    qc_note: str = ""
    gradcam_images: Mapping[str, Path] = field(default_factory=dict)
    gradcam_note: str = ""


def _panel_records(rec: dict[str, Any], pid: str, panels: PagePanels) -> None:
    """Fill ``nomogram``, ``qc``, ``gradcam`` and the notes of one record (images: paths, copied later)."""
    have = rec["probability"] is not None or rec["status"] != "failed"
    nomo = panels.nomogram
    if nomo is not None and have and pid in nomo.index:
        names = [c for c in nomo.columns if c != "total"]
        inputs = panels.nomogram_inputs
        rec["nomogram"] = {
            "points": [
                {
                    "predictor": n,
                    "label": str(panels.nomogram_labels.get(n, n)),
                    "value": _finite(inputs.loc[pid, n]) if inputs is not None else None,
                    "points": float(nomo.loc[pid, n]),
                }
                for n in names
            ],
            "total": float(nomo.loc[pid, "total"]),
            "probability": _finite(panels.nomogram_probability[pid])
            if panels.nomogram_probability is not None
            else None,
        }
    rec["nomogram_note"] = "" if rec["nomogram"] else panels.nomogram_note
    if rec["interval"] is None and rec["probability"] is not None:
        rec["interval_note"] = panels.interval_note or "no interval: none was computed for this model"
    image = panels.qc_images.get(pid)
    rec["qc"] = {
        "image": str(image) if image is not None else None,
        "registration": dict(panels.registration.get(pid, {})),
        "note": "" if image is not None else panels.qc_note or "no QC image for this patient",
    }
    cam = panels.gradcam_images.get(pid)
    rec["gradcam"] = {
        "image": str(cam) if cam is not None else None,
        "note": "" if cam is not None else panels.gradcam_note or "no Grad-CAM for this patient",
    }


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def contribution_bar_svg(items: Sequence[Mapping[str, Any]], width: int = 640) -> str:
    """Horizontal bar chart of contributions as an inline SVG (red raises, blue lowers the score)."""
    if not items:
        return ""
    row, label_w, pad = 22, 300, 10
    height = row * len(items) + 2 * pad
    vmax = max(abs(float(i["contribution"])) for i in items) or 1.0
    half = (width - label_w - 2 * pad) / 2
    zero = label_w + pad + half
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="feature contributions">',
        f'<line x1="{zero:.1f}" y1="{pad}" x2="{zero:.1f}" y2="{height - pad}" stroke="#444"/>',
    ]
    for k, item in enumerate(items):
        v = float(item["contribution"])
        y = pad + k * row
        w = abs(v) / vmax * half
        x = zero if v >= 0 else zero - w
        color = "#c62828" if v >= 0 else "#1565c0"
        label = html.escape(str(item["feature"]))[:60]
        parts.append(
            f'<text x="{label_w}" y="{y + 15}" text-anchor="end" font-size="12" font-family="sans-serif">{label}</text>'
        )
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)


def roc_svg(roc: Mapping[str, Sequence[float]], points: Sequence[tuple[float, float, str]], size: int = 260) -> str:
    """Inline SVG of the training OOF ROC with marked (sensitivity, specificity, colour) points."""
    fpr, tpr = list(roc.get("fpr") or []), list(roc.get("tpr") or [])
    if not fpr:
        return ""
    pad = 30
    span = size - 2 * pad

    def xy(f: float, t: float) -> str:
        return f"{pad + f * span:.1f},{pad + (1 - t) * span:.1f}"

    path = " ".join(xy(f, t) for f, t in zip(fpr, tpr, strict=True))
    marks = "".join(
        f'<circle cx="{pad + (1 - sp) * span:.1f}" cy="{pad + (1 - se) * span:.1f}" r="5" fill="{c}"/>'
        for se, sp, c in points
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="training ROC"><rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" '
        f'stroke="#888"/><line x1="{pad}" y1="{pad + span}" x2="{pad + span}" y2="{pad}" stroke="#ccc" '
        f'stroke-dasharray="4"/><polyline points="{path}" fill="none" stroke="#333" stroke-width="1.5"/>{marks}'
        f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle" font-size="11" font-family="sans-serif">'
        f'1 − specificity</text><text x="10" y="{size / 2}" font-size="11" font-family="sans-serif" '
        f'transform="rotate(-90 10 {size / 2})" text-anchor="middle">sensitivity</text></svg>'
    )


def patient_records(
    preds: pd.DataFrame,
    contrib: Contributions | None = None,
    *,
    warnings: Mapping[str, Sequence[str]] | None = None,
    banners: Sequence[str] = (),
    top_n: int = TOP_N,
    roc: Mapping[str, Sequence[float]] | None = None,
    intervals: pd.DataFrame | None = None,
    panels: PagePanels | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready record per prediction row (the content of a page and of ``preds.json``).

    ``roc`` is the bundle's training OOF ROC (:func:`rccgrade.models.bundle.training_roc`): an ``ok`` record
    gets ``roc_position`` — the training sensitivity/specificity had the cut-off been this patient's
    probability — and ``roc_threshold``, the same at the model's threshold. ``intervals`` (patients ×
    ``lower``/``upper``, :func:`rccgrade.models.explain.probability_interval`) gives ``ok`` records a 95 %
    interval. ``panels`` adds the nomogram points, the QC strip, Grad-CAM and the notes of what is absent.
    """
    from rccgrade.models.bundle import roc_position

    panels = panels or PagePanels()
    out: list[dict[str, Any]] = []
    for pid, row in preds.iterrows():
        pid = str(pid)
        rec: dict[str, Any] = {
            "patient_id": pid,
            "status": str(row["status"]),
            "reason": str(row.get("reason", "") or ""),
            "arm": str(row.get("arm", "")),
            "probability": _finite(row.get("probability")) if str(row["status"]) == "ok" else None,
            "threshold": _finite(row.get("threshold")),
            "predicted_grade": str(row.get("predicted_grade", "") or ""),
            "warnings": list((warnings or {}).get(pid, [])),
            "banners": list(banners),
            "contributions": [],
            "method": "",
            "scale": "",
            "base": None,
            "roc_position": None,
            "roc_threshold": None,
            "interval": None,
            "interval_note": "",
            "nomogram": None,
            "nomogram_note": "",
            "qc": None,
            "gradcam": None,
        }
        if intervals is not None and rec["probability"] is not None and pid in intervals.index:
            rec["interval"] = {
                "lower": float(intervals.loc[pid, "lower"]),
                "upper": float(intervals.loc[pid, "upper"]),
                "method": intervals.attrs.get(
                    "method",
                    "Wald interval on the logit scale from the logistic model's coefficient covariance "
                    "at export (conditional on the selected features)",
                ),
            }
        if roc and rec["probability"] is not None and rec["threshold"] is not None:
            for key, value in (("roc_position", rec["probability"]), ("roc_threshold", rec["threshold"])):
                pos = roc_position(dict(roc), value)
                if pos is not None:
                    rec[key] = {"sensitivity": pos[0], "specificity": pos[1]}
        if contrib is not None and pid in contrib.values.index:
            top = contrib.top(pid, top_n)
            rec["contributions"] = [
                {
                    "feature": str(t.feature),
                    "source": str(t.source),
                    "value": float(t.value),
                    "imputed": bool(t.imputed),
                    "contribution": float(t.contribution),
                }
                for t in top.itertuples(index=False)
            ]
            rec["method"], rec["scale"] = contrib.method, contrib.scale
            rec["base"] = float(contrib.base[pid])
            imputed = [c for c in contrib.imputed.columns if bool(contrib.imputed.loc[pid, c])]
            if imputed:
                rec["warnings"].append(
                    f"{len(imputed)} model input(s) were missing and imputed with the training median/mode: "
                    + ", ".join(imputed[:10])
                )
        _panel_records(rec, pid, panels)
        out.append(rec)
    return out


def write_patient_reports(
    preds: pd.DataFrame,
    out_dir: str | Path,
    contrib: Contributions | None = None,
    *,
    warnings: Mapping[str, Sequence[str]] | None = None,
    banners: Sequence[str] = (),
    top_n: int = TOP_N,
    roc: Mapping[str, Sequence[float]] | None = None,
    intervals: pd.DataFrame | None = None,
    panels: PagePanels | None = None,
) -> PatientReports:
    """Write one page per prediction row, ``index.html`` and ``preds.json`` into ``out_dir``.

    Args:
        preds: Output of :func:`rccgrade.models.predict.predict_table` (index ``patient_id``).
        out_dir: Report folder (created).
        contrib: Contributions of the patients with features (ok and out-of-distribution ones).
        warnings: Extra per-patient warnings (validation, missing phases …).
        banners: Cohort-wide banners shown on every page (e.g. imputed clinical variables).
        top_n: Contributions shown per patient.
        roc: The bundle's training OOF ROC (``bundle.meta["extra"]["training_roc"]``), when stored.
        intervals: 95 % intervals of the ``ok`` patients' probabilities (logistic arms), when available.
        panels: Nomogram points, QC strip and Grad-CAM images (copied next to the page as
            ``<page>.qc.png`` / ``<page>.gradcam.png`` for ``preds.json``, and embedded in the page as ``data:``
            URIs), with the notes of what is absent.
    """
    import shutil

    from rccgrade.report.html import image_data_uri

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    page = env.get_template("patient.html.j2")
    records = patient_records(
        preds, contrib, warnings=warnings, banners=banners, top_n=top_n, roc=roc, intervals=intervals, panels=panels
    )
    pages: dict[str, Path] = {}
    for rec in records:
        path = child_path(out, rec["patient_id"], ".html")
        rec["page"] = path.name
        images: dict[str, str] = {}
        for key in ("qc", "gradcam"):
            src = rec[key]["image"]
            if src is not None:
                target = path.with_name(f"{path.stem}.{key}.png")
                shutil.copyfile(src, target)
                rec[key]["image"] = target.name
                images[key] = image_data_uri(target)
        chart = contribution_bar_svg(rec["contributions"])
        marks = [
            (rec[k]["sensitivity"], rec[k]["specificity"], colour)
            for k, colour in (("roc_threshold", "#888"), ("roc_position", "#c62828"))
            if rec[k] is not None
        ]
        roc_chart = roc_svg(roc, marks) if roc and marks else ""
        path.write_text(
            page.render(p=rec, chart=chart, roc_chart=roc_chart, images=images, version=__version__), encoding="utf-8"
        )
        pages[rec["patient_id"]] = path
    index = env.from_string(_INDEX).render(records=records, banners=list(banners), version=__version__)
    index_path = out / "index.html"
    index_path.write_text(index, encoding="utf-8")
    json_path = out / "preds.json"
    json_path.write_text(json.dumps(records, indent=2, allow_nan=False), encoding="utf-8")
    return PatientReports(index=index_path, pages=pages, json=json_path)


_INDEX = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>rccgrade predictions</title>
<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}
td,th{padding:.2em .6em;border-bottom:1px solid #ddd}.banner{background:#c62828;color:#fff;padding:.6em 1em}</style>
</head><body><h1>rccgrade predictions ({{ records|length }} patients)</h1>
{% for b in banners %}<div class="banner">{{ b }}</div>{% endfor %}
<table><tr><th>patient</th><th>status</th><th>P(ISUP 3–4)</th><th>grade</th><th>reason</th></tr>
{% for r in records %}<tr><td><a href="{{ r.page|urlencode }}">{{ r.patient_id }}</a></td><td>{{ r.status }}</td>
<td>{{ "%.3f"|format(r.probability) if r.probability is not none else "" }}</td><td>{{ r.predicted_grade }}</td>
<td>{{ r.reason }}</td></tr>
{% endfor %}</table><p style="color:#777">rccgrade {{ version }}</p></body></html>"""
