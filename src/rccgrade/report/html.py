"""The study report: one self-contained HTML file that reads like a paper's results section.

Every figure is embedded (base64 PNG or inline SVG) and the page links to nothing outside itself, so the
file can be mailed, archived with the paper's supplement or opened offline years later. The content comes
from a plain mapping assembled by :mod:`rccgrade.study` (or ``rccgrade evaluate``); sections whose data
is absent say so instead of disappearing, so a reader sees what the run did not compute.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rccgrade.errors import RccgradeError
from rccgrade.report.settings import ReportSettings

TEMPLATE_DIR = Path(__file__).with_name("templates")

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclass
class Figure:
    """A figure of the report.

    Attributes:
        caption: Caption printed under the figure (the figure number is added by the template).
        png: Raster file (embedded as base64).
        svg: Vector file (inlined instead of the PNG when ``ReportSettings.embed == "svg"``).
        width: CSS width of the figure (e.g. ``"100%"``, ``"60%"``).
    """

    caption: str
    png: Path | None = None
    svg: Path | None = None
    width: str = "100%"

    @property
    def available(self) -> bool:
        """Whether a file to embed exists."""
        return any(p is not None and Path(p).is_file() for p in (self.png, self.svg))


@dataclass
class ChecklistItem:
    """One reporting-guideline item and how this run addresses it.

    Attributes:
        guideline: ``TRIPOD+AI`` or ``CLAIM``.
        item: Item number (TRIPOD+AI) or topic label (CLAIM).
        topic: What the item asks for.
        status: ``covered`` (the report holds it), ``partial`` or ``author`` (the authors must supply it).
        where: Section of this report, or what the authors must add.
    """

    guideline: str
    item: str
    topic: str
    status: str
    where: str


@dataclass
class ReportContext:
    """Everything a report shows. Empty fields are rendered as "not computed in this run".

    The nested values are plain dicts/lists (see ``templates/report.html.j2`` for the keys used).
    """

    title: str
    run_name: str
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    version: str = ""
    summary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cohort: dict[str, Any] = field(default_factory=dict)
    table1: list[dict[str, Any]] = field(default_factory=list)
    qc: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    delong: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)
    stability: dict[str, Any] = field(default_factory=dict)
    gradcam: list[dict[str, Any]] = field(default_factory=list)
    explanations: dict[str, Any] = field(default_factory=dict)
    external: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[ChecklistItem] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    sections: Sequence[str] = (
        "summary",
        "patients",
        "performance",
        "features",
        "explanations",
        "gradcam",
        "external",
        "checklist",
        "provenance",
    )


def image_data_uri(path: str | Path) -> str:
    """A ``data:`` URI holding the image file (PNG, JPEG or GIF) base64-encoded.

    Raises:
        RccgradeError: the file is missing or not a raster image type the report embeds.
    """
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise RccgradeError(f"cannot embed {path.suffix!r} images; use PNG or JPEG", path=path)
    if not path.is_file():
        raise RccgradeError("figure file not found; re-run the study to regenerate it", path=path)
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


_SVG_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_SVG_IDS = re.compile(r'\bid="([^"]+)"')


def inline_svg(path: str | Path, prefix: str) -> str:
    """An SVG file's markup for inlining: XML prologue removed, element ids prefixed (unique per figure).

    Matplotlib names clip paths ``p0123abcd``; two inlined figures may share names, so every ``id`` and
    every ``#id`` reference is prefixed with ``prefix``.
    """
    text = _SVG_PROLOGUE.sub("", Path(path).read_text())
    ids = set(_SVG_IDS.findall(text))
    for ident in sorted(ids, key=len, reverse=True):
        text = text.replace(f'id="{ident}"', f'id="{prefix}{ident}"').replace(f"#{ident})", f"#{prefix}{ident})")
        text = text.replace(f'href="#{ident}"', f'href="#{prefix}{ident}"')
    return text


def _embed(fig: Figure | None, key: str, settings: ReportSettings) -> str:
    from markupsafe import Markup

    if fig is None or not fig.available:
        return Markup('<p class="missing">Figure not available in this run.</p>')
    alt = html.escape(fig.caption.split(".")[0], quote=True)
    if settings.embed == "svg" and fig.svg is not None and Path(fig.svg).is_file():
        return Markup(f'<div class="svg" style="width:{fig.width}">{inline_svg(fig.svg, f"{key}-")}</div>')
    src = fig.png if fig.png is not None and Path(fig.png).is_file() else None
    if src is None:  # only an SVG exists: inline it regardless of the setting
        return Markup(f'<div class="svg" style="width:{fig.width}">{inline_svg(fig.svg, f"{key}-")}</div>')  # type: ignore[arg-type]
    return Markup(f'<img src="{image_data_uri(src)}" alt="{alt}" style="width:{fig.width}">')


def _fmt(value: Any, decimals: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.{decimals}f}"
    return str(value)


def _fmt_p(value: Any) -> str:
    from rccgrade.report.tables import format_p

    if value is None:
        return "—"
    return format_p(float(value))


def environment() -> Any:
    """The Jinja2 environment of the report templates (autoescaping on)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = _fmt
    env.filters["p"] = _fmt_p
    return env


def render_report(context: ReportContext, out: str | Path, settings: ReportSettings | None = None) -> Path:
    """Render ``context`` to one self-contained HTML file at ``out``.

    Args:
        context: What to show.
        out: Target file (folders are created).
        settings: Embedding and formatting choices.

    Returns:
        The written path.
    """
    settings = settings or ReportSettings()
    env = environment()
    template = env.get_template("report.html.j2")

    def figure(key: str) -> Any:
        return _embed(context.figures.get(key), key, settings)

    def has_figure(key: str) -> bool:
        fig = context.figures.get(key)
        return fig is not None and fig.available

    text = template.render(
        ctx=context,
        settings=settings,
        figure=figure,
        has_figure=has_figure,
        fig=context.figures,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def external_urls(text: str) -> list[str]:
    """Resources an HTML page would fetch from elsewhere (``src``/``href`` to http(s) or ``//``)."""
    pattern = re.compile(r"""(?:src|href)\s*=\s*["']\s*((?:https?:)?//[^"']+)""", re.IGNORECASE)
    css = re.compile(r"""url\(\s*["']?\s*((?:https?:)?//[^)"']+)""", re.IGNORECASE)
    return pattern.findall(text) + css.findall(text)


def default_checklist(context: ReportContext) -> list[ChecklistItem]:
    """TRIPOD+AI and CLAIM items, marked by what this run's report actually contains.

    Item numbers follow TRIPOD+AI (Collins et al., BMJ 2024;385:e078378); CLAIM items (Checklist for
    Artificial Intelligence in Medical Imaging, 2024 update) are named by topic. ``author`` items are
    outside what software can know (ethics approval, eligibility criteria, funding …).
    """
    have_metrics = bool(context.metrics)
    have_cal = any(k.startswith("calibration") and f.available for k, f in context.figures.items())
    have_dca = any(k.startswith("dca") and f.available for k, f in context.figures.items())
    have_t1 = bool(context.table1)
    have_ext = bool(context.external)
    covered = "covered"
    rows = [
        ("TRIPOD+AI", "5a", "Source of data", "partial", "Patients; data source description is the authors'"),
        ("TRIPOD+AI", "7", "Data preparation and pre-processing", covered, "Methods summary; Data quality"),
        ("TRIPOD+AI", "8a", "Outcome definition", covered, "Methods summary (ISUP 3–4 = high grade)"),
        ("TRIPOD+AI", "9a", "Predictors: choice and definition", covered, "Methods summary; Selected features"),
        ("TRIPOD+AI", "10", "Sample size", "partial", "Patients (numbers and events); justification is the authors'"),
        (
            "TRIPOD+AI",
            "11",
            "Missing data and how handled",
            covered if have_t1 else "partial",
            "Table 1 (missing counts)",
        ),
        ("TRIPOD+AI", "12a", "How data were used for development and evaluation", covered, "Methods summary (split)"),
        (
            "TRIPOD+AI",
            "12c",
            "Model type, building, tuning, internal validation",
            covered,
            "Methods summary; Provenance",
        ),
        (
            "TRIPOD+AI",
            "12e",
            "Performance measures and their uncertainty",
            covered if have_metrics else "partial",
            "Table 2",
        ),
        ("TRIPOD+AI", "13", "Class imbalance", covered, "Methods summary"),
        ("TRIPOD+AI", "14", "Fairness across subgroups", "author", "Subgroup analyses are not computed"),
        ("TRIPOD+AI", "15", "Model output and decision threshold", covered, "Table 2 (training-derived threshold)"),
        ("TRIPOD+AI", "17", "Ethical approval", "author", "To be supplied by the authors"),
        ("TRIPOD+AI", "18f", "Code availability", covered, "Provenance (package versions, source revision)"),
        ("TRIPOD+AI", "20a", "Flow of participants", covered, "Data quality (usable / excluded cases)"),
        ("TRIPOD+AI", "20b", "Characteristics of participants", covered if have_t1 else "partial", "Table 1"),
        ("TRIPOD+AI", "21", "Participants and outcome events per analysis", covered, "Patients"),
        ("TRIPOD+AI", "22", "Full model specification", covered, "Selected features; nomogram; model bundles"),
        (
            "TRIPOD+AI",
            "23a",
            "Performance with confidence intervals",
            covered if have_metrics else "partial",
            "Table 2",
        ),
        ("TRIPOD+AI", "23a", "Calibration", covered if have_cal else "partial", "Calibration figure"),
        (
            "TRIPOD+AI",
            "23a",
            "Clinical utility (decision curves)",
            covered if have_dca else "partial",
            "Decision curves",
        ),
        ("TRIPOD+AI", "12g / 16", "External evaluation", covered if have_ext else "author", "External validation"),
        ("CLAIM", "Data", "Data preprocessing and image selection", covered, "Methods summary; Data quality"),
        ("CLAIM", "Data", "Data partitions and their characteristics", covered if have_t1 else "partial", "Table 1"),
        ("CLAIM", "Ground truth", "Definition of the reference standard", covered, "Methods summary"),
        ("CLAIM", "Model", "Model architecture and initialisation", covered, "Methods summary; Provenance"),
        ("CLAIM", "Training", "Training details and hyperparameters", covered, "Provenance (configuration)"),
        ("CLAIM", "Evaluation", "Metrics with statistical uncertainty; model comparison", covered, "Table 2; Table 3"),
        (
            "CLAIM",
            "Evaluation",
            "Explainability / saliency",
            covered if context.gradcam or context.explanations else "partial",
            "Feature contributions; Grad-CAM",
        ),
        (
            "CLAIM",
            "Evaluation",
            "Robustness / feature stability",
            covered if context.stability else "partial",
            "Stability",
        ),
        ("CLAIM", "Other", "Ethics, funding, data availability", "author", "To be supplied by the authors"),
    ]
    return [ChecklistItem(*r) for r in rows]
