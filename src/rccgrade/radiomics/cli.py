"""``rccgrade radiomics SOURCE``: PyRadiomics features per phase, with stability ICC, on all cores or Dask."""

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
from rccgrade.errors import ConfigError
from rccgrade.radiomics.extract import RadiomicsInput, extract_radiomics, inputs_from_cohort, inputs_from_preprocess_dir
from rccgrade.radiomics.settings import RadiomicsSettings, StabilitySettings


def _inputs(source: Path, phases: list[str]) -> list[RadiomicsInput]:
    if source.is_dir():
        return inputs_from_preprocess_dir(source, phases)
    if source.is_file():
        from rccgrade.cohort.manifest import load_cohort

        return inputs_from_cohort(load_cohort(source), phases)
    raise ConfigError("neither a preprocessing folder nor a manifest CSV", path=source)


def radiomics_command(
    source: Path = typer.Argument(
        ...,
        help="Preprocessing output folder (holding registered/<patient>/<phase>.nii.gz + mask.nii.gz), "
        "or a manifest CSV whose phase images share the mask's grid.",
    ),
    out: Path = typer.Option(Path("radiomics"), "--out", "-o", help="Output folder (features, cache, tables)."),
    params: str = typer.Option(
        "ct_default", "--params", help="PyRadiomics parameter file: ct_default, ibsi, or a path to your YAML."
    ),
    phases: list[str] = typer.Option(
        ["arterial"], "--phase", help="Phase to extract (repeat for several: --phase arterial --phase excretory)."
    ),
    label: int | None = typer.Option(None, "--label", min=1, help="Tumour label value in multi-label masks."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0: all cores, 1: serial)."),
    scheduler: str | None = scheduler_option(),
    cluster_config: Path | None = cluster_config_option(),
    stability: bool = typer.Option(
        True, "--stability/--no-stability", help="Perturbation stability analysis (ICC per feature)."
    ),
    perturbations: int = typer.Option(4, "--perturbations", min=2, help="Perturbed copies per case for the ICC."),
    threshold: float = typer.Option(0.75, "--icc-threshold", help="ICC below which a feature is marked unstable."),
    seed: int = typer.Option(0, "--seed", help="Seed of the perturbations."),
    rings: list[float] = typer.Option(
        [], "--ring", help="Peritumoural ring out to N mm from the tumour border (repeat: --ring 2 --ring 5)."
    ),
    ring_hu_min: float = typer.Option(-100.0, "--ring-hu-min", help="Lowest HU of a ring voxel (soft tissue)."),
    ring_hu_max: float = typer.Option(300.0, "--ring-hu-max", help="Highest HU of a ring voxel (soft tissue)."),
    kinetic: bool = typer.Option(
        False, "--kinetic/--no-kinetic", help="Kinetic features between the phases (kin:…; needs two --phase)."
    ),
) -> None:
    """Extract PyRadiomics features (rad:<phase>:<feature>) for every case of SOURCE.

    With --ring N also of the peritumoural ring out to N mm (rad:<phase>@ring<N>mm:<feature>; a ring too small
    to describe is left missing and listed in regions_missing.csv); with --kinetic also the kinetic features
    between the phases (kin:<feature>, docs/radiomics.md). Images are reoriented to LPS first, finished cases
    are cached (a re-run extracts only new or changed cases), per-case failures go to failures.csv. Exits with
    code 1 if any case failed.
    """
    console = Console()
    try:
        settings = RadiomicsSettings(
            params=params,
            phases=phases,
            label=label,
            rings_mm=rings,
            ring_hu_range=(ring_hu_min, ring_hu_max),
            kinetic={"enabled": kinetic},
            stability=StabilitySettings(
                enabled=stability, n_perturbations=perturbations, threshold=threshold, seed=seed
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid radiomics options: {exc}") from None
    inputs = _inputs(source, phases)
    with (
        command_cluster(local_parallel(workers), scheduler, cluster_config) as cases,
        case_progress("radiomics", console) as progress,
    ):
        result = extract_radiomics(inputs, out, settings, cases.parallel(), progress=progress)

    table = Table(title=escape(f"Radiomics of {source}"))
    table.add_column("patients with features", justify="right")
    table.add_column("features", justify="right")
    table.add_column("extracted / cached", justify="right")
    table.add_column("failed", justify="right")
    if result.stability is not None:
        table.add_column(f"stable (ICC ≥ {threshold})", justify="right")
    row = [
        str(len(result.features)),
        str(result.features.shape[1]),
        f"{result.n_extracted} / {result.n_cached}",
        str(result.failures["patient_id"].nunique()),
    ]
    if result.stability is not None:
        row.append(f"{int(result.stability['stable'].sum())} / {len(result.stability)}")
    table.add_row(*row)
    console.print(table)
    for name, path in result.files.items():
        console.print(f"{name}: {escape(str(path))}")
    if not result.regions_missing.empty:
        counts = result.regions_missing["phase"].value_counts().sort_index()
        for region, n in counts.items():
            console.print(f"[yellow]ring left missing[/] {escape(str(region))}: {n} patient(s) (regions_missing.csv)")
    if not result.failures.empty:
        for rec in result.failures.itertuples(index=False):
            console.print(f"[red]failed[/] {escape(str(rec.patient_id))} {rec.phase}: {escape(str(rec.error))}")
        raise typer.Exit(code=1)
