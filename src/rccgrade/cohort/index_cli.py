"""``rccgrade index``, ``rccgrade import-kits`` and ``rccgrade import-nnunet``: hospital data in as it comes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rccgrade.cli_progress import case_progress, local_parallel
from rccgrade.cohort import phase_rules as pr
from rccgrade.errors import CohortError

if TYPE_CHECKING:
    from rccgrade.cohort.layouts import ImportResult


def index_command(
    dicom_root: Path = typer.Argument(..., help="Folder of a PACS export (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Draft manifest CSV to write (sidecar CSVs go beside it)."),
    pseudonymise: bool = typer.Option(
        False, "--pseudonymise", help="Replace PatientID by a keyed hash (HMAC-SHA256) in every output."
    ),
    pseudonym_key: str | None = typer.Option(
        None,
        "--pseudonym-key",
        envvar="RCCGRADE_PSEUDONYM_KEY",
        help="Secret key of --pseudonymise (keep it to map new exports to the same pseudonyms).",
    ),
    min_slices: int = typer.Option(5, "--min-slices", min=2, help="Series with fewer slices are left out."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: all cores, 1: serial)."),
) -> None:
    """Sort a PACS export into a draft manifest: series per phase, with evidence and review flags.

    Reads DICOM headers only. Writes OUT (readable by `rccgrade validate`), OUT_series.csv (every
    series: chosen, alternative or excluded with the reason), OUT_summary.csv (per patient) and
    OUT_skipped_files.csv. Patient names and birth dates are never written.
    """
    from rccgrade.cohort.dicom_index import index_dicom_tree

    if pseudonymise and not pseudonym_key:
        raise CohortError(
            "--pseudonymise needs a secret key: pass --pseudonym-key or set RCCGRADE_PSEUDONYM_KEY "
            "(an unkeyed hash of a PatientID can be reversed by trying every ID)"
        )
    console = Console()
    with case_progress("reading DICOM headers", console) as progress:
        index = index_dicom_tree(
            dicom_root,
            parallel=local_parallel(workers),
            progress=progress,
            min_slices=min_slices,
            pseudonymise_key=pseudonym_key if pseudonymise else None,
        )
    paths = index.write(out)
    table = Table(title=escape(f"Index of {dicom_root}"), show_lines=True)
    table.add_column("patient")
    for phase in pr.CONTRAST_PHASES:
        table.add_column(phase)
    table.add_column("review", overflow="fold")
    for row in index.rows:
        cells = [
            escape(f"#{row.images[p].series_number} {row.images[p].description} ({row.confidence[p]})")
            if p in row.images
            else "[red]missing[/]"
            for p in pr.CONTRAST_PHASES
        ]
        review = "[yellow]" + escape("; ".join(row.review)) + "[/]" if row.review else "[green]ok[/]"
        table.add_row(escape(row.patient_id), *cells, review)
    console.print(table)
    excluded = sum(r.status == "excluded" for r in index.series)
    flagged = sum(bool(r.review) for r in index.rows)
    console.print(
        f"{len(index.rows)} studies, {len(index.series)} series ({excluded} left out), "
        f"{index.n_files} files ({len(index.unreadable)} not DICOM); {flagged} need review. "
        f"Draft manifest: {escape(str(paths['manifest']))}; series: {escape(str(paths['series']))}",
        highlight=False,
    )


def lesions_command(
    manifest: Path = typer.Argument(..., help="Manifest CSV whose masks may hold several lesions."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the new manifest.csv, masks/ and lesions.csv."),
    policy: str = typer.Option(
        "largest", "--policy", help="largest: keep the index lesion; each: one row per lesion; error: refuse."
    ),
    min_volume: float = typer.Option(10.0, "--min-volume", min=0, help="Smaller components (mm³) are specks."),
    mask_phase: str = typer.Option("arterial", "--mask-phase", help="Phase the masks were drawn on."),
) -> None:
    """Write one-lesion masks and a new manifest (largest lesion, or one row per lesion)."""
    from rccgrade.cohort.lesions import apply_lesion_policy
    from rccgrade.cohort.settings import CohortSettings

    console = Console()
    settings = CohortSettings(mask_phase=mask_phase, require_labels=False)
    result = apply_lesion_policy(manifest, out, policy=policy, min_volume_mm3=min_volume, settings=settings)
    for pid, message in result.failures.items():
        console.print(f"[yellow]{escape(pid)}[/]: {escape(message)}", highlight=False)
    console.print(
        f"{result.rows} rows written to {escape(str(result.manifest))}; lesions in {escape(str(result.report))}",
        highlight=False,
    )


def _report_import(console: Console, result: ImportResult, out: Path) -> None:
    manifest, log_path = result.write(out)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    console.print(
        f"{len(result.manifest)} cases imported, {len(result.skipped)} skipped (see {escape(str(log_path))}); "
        f"manifest: {escape(str(manifest))}",
        highlight=False,
    )


def import_kits_command(
    root: Path = typer.Argument(..., help="KiTS data folder holding case_XXXXX/ (kits.json here or one level up)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest CSV to write."),
    phase: str = typer.Option("arterial", "--phase", help="Phase column for the (single-phase) KiTS imaging."),
    all_clinical: bool = typer.Option(
        False, "--all-clinical", help="Every non-pathology, non-outcome kits.json field, not only pre-operative ones."
    ),
    subtype: str | None = typer.Option(
        None, "--subtype", help="Keep only this tumor_histologic_subtype (e.g. clear_cell_rcc)."
    ),
) -> None:
    """Write a manifest for a KiTS tree: imaging, tumour label 2, ISUP grade and clinical columns from kits.json."""
    from rccgrade.cohort.layouts import import_kits

    console = Console()
    _report_import(console, import_kits(root, phase=phase, all_clinical=all_clinical, subtype=subtype), out)


def import_nnunet_command(
    dataset: Path = typer.Argument(..., help="nnU-Net raw dataset folder (dataset.json, imagesTr/, labelsTr/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest CSV to write."),
    channels: str = typer.Option(
        ..., "--channels", help="Phase of each channel in order, e.g. arterial,nephrographic,excretory."
    ),
    tumour_label: int | None = typer.Option(
        None, "--tumour-label", help="Tumour value in the label maps (default: found by name in dataset.json)."
    ),
) -> None:
    """Write a manifest for an nnU-Net dataset: one phase per channel, the tumour label, grades left empty."""
    from rccgrade.cohort.layouts import import_nnunet

    console = Console()
    names = [c.strip() for c in channels.split(",") if c.strip()]
    _report_import(console, import_nnunet(dataset, channels=names, tumour_label=tumour_label), out)
