"""``rccgrade preprocess MANIFEST --out DIR``: registration, ROI slice images and QC figures."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rccgrade.cli_progress import case_progress, command_cluster, scheduler_option
from rccgrade.errors import ConfigError
from rccgrade.parallel import ParallelSettings


def preprocess_command(
    manifest: Path = typer.Argument(..., help="Manifest CSV (patient_id, arterial, nephrographic, excretory, mask …)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder of the preprocessing stage."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Study YAML whose 'preprocess', 'cohort', 'parallel' and 'cluster' sections are used (the cluster "
        "runs the cases, docs/cluster.md).",
    ),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: all cores, 1: serial)."),
    no_register: bool = typer.Option(False, "--no-register", help="Skip registration (phases already aligned)."),
    roi: list[str] | None = typer.Option(
        None,
        "--roi",
        help="ROI setting (repeatable): box, box<N>mm, tumour, dilated<N>mm (default: the config's list).",
    ),
    selection: str | None = typer.Option(None, "--selection", help="Slice selection: largest, topk, area_fraction."),
    size: int | None = typer.Option(None, "--size", min=8, help="Output image height = width in pixels."),
    label: int | None = typer.Option(None, "--label", help="Tumour label value in multi-label masks."),
    mask_phase: str | None = typer.Option(None, "--mask-phase", help="Phase the masks were drawn on."),
    no_qc: bool = typer.Option(False, "--no-qc", help="Do not draw QC montages and the cohort sheet."),
    scheduler: str | None = scheduler_option(),
) -> None:
    """Register phases to the mask's phase, cut multi-channel ROI slice images and draw QC figures.

    Writes OUT/slices/<roi>/<patient>.npy, OUT/slices/index.csv, OUT/registered/<patient>/,
    OUT/status.csv, OUT/registration.csv, OUT/qc/. Exits with code 1 if any case failed.
    """
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.settings import CohortSettings
    from rccgrade.config import StudyConfig, load_config
    from rccgrade.preprocess.pipeline import run_preprocess

    console = Console()
    cfg = load_config(config) if config is not None else StudyConfig()
    updates: dict[str, object] = {}
    if roi:
        updates["rois"] = list(roi)
    if selection:
        updates["slice_selection"] = selection
    if size:
        updates["image_size"] = size
    if no_qc:
        updates["qc"] = False
    data = cfg.preprocess.model_dump()
    data.update(updates)
    if no_register:
        data["registration"]["enabled"] = False
    try:
        settings = type(cfg.preprocess).model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid preprocessing option(s): {problems}") from None
    cohort_data = cfg.cohort.model_dump()
    cohort_data["require_labels"] = False
    if label is not None:
        cohort_data["label"] = label
    if mask_phase is not None:
        cohort_data["mask_phase"] = mask_phase
    cohort = load_cohort(manifest, settings=CohortSettings.model_validate(cohort_data))
    parallel = cfg.parallel.model_copy(
        update={"backend": "serial" if workers == 1 else cfg.parallel.backend, "workers": workers}
    )
    if not isinstance(parallel, ParallelSettings):  # pragma: no cover - model_copy keeps the type
        parallel = ParallelSettings()

    with (
        command_cluster(parallel, scheduler, cluster=cfg.cluster) as cases,
        case_progress("preprocessing", console, total=len(cohort)) as progress,
    ):
        result = run_preprocess(cohort, out, settings, cases.parallel(), progress=progress)

    status = result.status
    table = Table(title=escape(f"Preprocessing → {out}"))
    for col in ("patient", "status", "slices", "registration"):
        table.add_column(col, overflow="fold")
    reg_cols = [c for c in status.columns if c.startswith("reg_") and c != "reg_flagged"]
    for rec in status.to_dict(orient="records"):
        if rec["ok"]:
            state = "[green]ok[/]" + (" (cached)" if rec.get("cached") else "")
            reg = escape(", ".join(f"{c[4:]}: {rec[c]}" for c in reg_cols if isinstance(rec.get(c), str)) or "—")
            if rec.get("reg_flagged"):
                reg = f"[yellow]{reg}[/]"
            table.add_row(escape(str(rec["patient_id"])), state, escape(str(rec.get("slice_indices", ""))), reg)
        else:
            # the error starts with "[patient …, file …]": escaped, or Rich would swallow it as markup
            table.add_row(escape(str(rec["patient_id"])), "[bold red]failed[/]", "", escape(str(rec["error"])))
    console.print(table)
    console.print(
        escape(
            f"{len(result.ok_ids)}/{len(status)} cases ok, {len(result.flagged_ids)} with a registration fallback; "
            f"ROI settings {', '.join(result.rois)}" + (f"; QC sheet {result.qc_sheet}" if result.qc_sheet else "")
        ),
        highlight=False,
    )
    if result.failed_ids:
        raise typer.Exit(code=1)
