"""``rccgrade validate MANIFEST``: check every case and say what is wrong, patient by patient."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rccgrade.cli_progress import (
    case_progress,
    cluster_config_option,
    command_cluster,
    local_parallel,
    scheduler_option,
)
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.validate import validate_cohort

_STYLE = {"usable": "green", "unusable": "bold red"}


def validate_command(
    manifest: Path = typer.Argument(
        ..., help="Manifest CSV (patient_id, arterial, nephrographic, excretory, mask, grade …)."
    ),
    label: int | None = typer.Option(None, "--label", help="Tumour label value in multi-label masks."),
    mask_segment: str | None = typer.Option(
        None, "--mask-segment", help="Tumour segment/ROI name in DICOM-SEG, RTSTRUCT or .seg.nrrd masks."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the per-case table [default: ./validation.csv]."
    ),
    clinical_csv: Path | None = typer.Option(None, "--clinical-csv", help="Clinical CSV joined on patient_id."),
    mask_phase: str = typer.Option("arterial", "--mask-phase", help="Phase the masks were drawn on."),
    no_labels: bool = typer.Option(
        False, "--no-labels", help="Cases without grade are usable (prediction-only cohorts)."
    ),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: all cores, 1: serial)."),
    scheduler: str | None = scheduler_option(),
    cluster_config: Path | None = cluster_config_option(),
) -> None:
    """Check every case of MANIFEST: files, 3D, mask, geometry, overlap, HU, labels, clinical types.

    Prints a table, writes validation.csv and exits with code 1 if any case is unusable.
    """
    console = Console()
    settings = CohortSettings(
        mask_phase=mask_phase, label=label, mask_segment=mask_segment, require_labels=not no_labels
    )
    with (
        command_cluster(local_parallel(workers), scheduler, cluster_config) as cases,
        case_progress("validating", console) as progress,
    ):
        report = validate_cohort(
            manifest,
            label=label,
            settings=settings,
            parallel=cases.parallel(),
            clinical_csv=clinical_csv,
            progress=progress,
        )

    table = Table(title=escape(f"Validation of {manifest}"), show_lines=True)
    table.add_column("patient")
    table.add_column("status")
    table.add_column("problems", overflow="fold")
    for rec in report.cases.to_dict(orient="records"):
        probs = report.problems[report.problems["case"] == rec["case"]]
        text = "\n".join(
            f"[{'red' if p['severity'] == 'error' else 'yellow'}]{escape(str(p['code']))}[/]: "
            + escape(str(p["message"]))
            + (f" ({escape(str(p['file']))})" if p["file"] else "")
            for p in probs.to_dict(orient="records")
        )
        status = rec["status"]
        table.add_row(escape(str(rec["patient_id"])), f"[{_STYLE[status]}]{status}[/]", text or "—")
    console.print(table)
    if len(report.clinical_missing):
        console.print(
            escape(
                "clinical columns: "
                + ", ".join(
                    f"{name} ({report.clinical_types.get(name, '?')}, {int(n)} missing)"
                    for name, n in report.clinical_missing.items()
                )
            ),
            highlight=False,
        )
    path = report.write_csv(out if out is not None else Path.cwd() / "validation.csv")
    style = "green" if report.ok else "bold red"
    console.print(f"[{style}]{escape(report.summary())}[/]; table written to {escape(str(path))}", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)
