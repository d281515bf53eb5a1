"""``rccgrade synth``: write a synthetic triple-phase CT cohort with known ground truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from rccgrade.cli_progress import case_progress, local_parallel
from rccgrade.synth.latent import parse_center_weights
from rccgrade.synth.writer import write_cohort

console = Console()


def synth_command(
    out: Path = typer.Argument(..., help="Output folder (manifest.csv, truth.csv, images/)."),
    n: int = typer.Option(100, "--n", min=1, help="Number of patients."),
    seed: int = typer.Option(0, "--seed", min=0, help="Cohort seed; each patient i uses SeedSequence([seed, i])."),
    size: str = typer.Option("small", "--size", help="small (48×96×96, fast) or realistic (0.6–0.9 mm, 256–512²)."),
    fmt: str = typer.Option(
        "nifti", "--format", help="nifti (.nii.gz per phase) or dicom (a series folder per phase)."
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes (0: all cores, 1: serial)."),
    centers: str = typer.Option(
        "",
        "--centers",
        help="Acquisition mix, centre=weight, e.g. A=0.1,B=0.25,C=0.15,D=0.5 (default A/B/C 45/35/20%; D: 80 kVp "
        "low dose). Changes only which scanner images each patient, never the grade model.",
    ),
) -> None:
    """Generate a synthetic ccRCC cohort (3 phases, masks, clinical data) with its ground truth.

    truth.csv (p_high, latent factors, applied misalignment) is for evaluation only: the pipeline
    never reads it.
    """
    weights = None
    if centers:
        try:
            weights = parse_center_weights(centers)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--centers") from None
    parallel = local_parallel(workers)
    with case_progress("[bold]synth[/]", console, total=n, transient=False) as progress:
        manifest = write_cohort(
            out, n=n, seed=seed, size=size, fmt=fmt, parallel=parallel, progress=progress, center_weights=weights
        )
    truth = pd.read_csv(manifest.parent / "truth.csv")
    from sklearn.metrics import roc_auc_score

    console.print(f"[green]wrote[/] {n} patients to {manifest}")
    console.print(
        f"high grade: {int(truth['high_grade'].sum())}/{n} ({truth['high_grade'].mean():.0%}); "
        f"centres: { ({str(k): int(v) for k, v in truth['center'].value_counts().sort_index().items()}) }"
    )
    if truth["high_grade"].value_counts().min() >= 5 and truth["high_grade"].nunique() == 2:
        console.print(f"oracle AUC of p_high: {roc_auc_score(truth['high_grade'], truth['p_high']):.3f}")
    console.print("[dim]truth.csv is the ground truth for evaluation; the pipeline never reads it.[/]")
