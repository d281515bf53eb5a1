"""``rccgrade deep PREPROCESS_DIR --out FILE``: ResNet features of the slice images per ROI setting."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from rccgrade.cli_progress import case_progress
from rccgrade.safepath import child_path


def deep_command(
    preprocess_dir: Path = typer.Argument(..., help="Output folder of 'rccgrade preprocess' (holds slices/)."),
    out: Path = typer.Option(..., "--out", "-o", help="FeatureTable to write (Parquet); metadata JSON beside it."),
    rois: list[str] | None = typer.Option(
        None, "--roi", help="ROI setting (repeatable): box, tumour, dilated5mm … [default: from config]."
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="imagenet (download once into torch's hub cache), none, or a local .pth state dict."
    ),
    mode: str | None = typer.Option(None, "--mode", help="frozen (default) or finetune (needs --manifest with split)."),
    manifest: Path | None = typer.Option(
        None, "--manifest", "-m", help="Manifest with grade/high_grade and split (fine-tune mode's labels)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="Study YAML whose 'deep' section is used."),
    arch: str | None = typer.Option(None, "--arch", help="resnet50 (default) or resnet_tiny (smoke tests)."),
    input_size: int | None = typer.Option(None, "--input-size", min=16, help="Network input side in pixels (224)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=0, help="Images per batch (0: automatic)."),
    threads: int | None = typer.Option(None, "--threads", min=0, help="CPU threads for torch (0: torch default)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Fine-tuning: maximum epochs."),
    folds: int | None = typer.Option(None, "--folds", min=2, help="Fine-tuning: folds for out-of-fold features."),
    seed: int | None = typer.Option(None, "--seed", help="Seed [default: the config's seed]."),
    cache_dir: Path | None = typer.Option(None, "--cache", help="Cache folder (re-runs compute only changed cases)."),
    gradcam: int = typer.Option(0, "--gradcam", min=0, help="Grad-CAM PNGs for this many cases per ROI."),
) -> None:
    """Extract ResNet50 features (3 phases stacked as channels) for every case and ROI setting.

    Frozen mode: 2048 global-pooled ImageNet features per case. Fine-tune mode: the network is trained on
    the manifest's training patients only; their features are out-of-fold. Writes OUT (FeatureTable,
    columns deep:<roi>:fNNNN), OUT.json (weights, warnings, failures), OUT.probabilities.csv (fine-tune) and
    gradcam/ PNGs. Exits with code 1 if any case failed.
    """
    from rccgrade.config import StudyConfig, load_config
    from rccgrade.deep.features import extract_deep_features, write_metadata
    from rccgrade.deep.settings import DeepSettings
    from rccgrade.errors import ConfigError
    from rccgrade.features.table import save_table
    from rccgrade.preprocess.slices import load_slices

    console = Console()
    cfg = load_config(config) if config is not None else StudyConfig()
    data = cfg.deep.model_dump()
    for key, value in {
        "rois": list(rois) if rois else None,
        "weights": weights,
        "mode": mode,
        "arch": arch,
        "input_size": input_size,
        "device": device,
        "batch_size": batch_size,
        "threads": threads,
        "epochs": epochs,
        "folds": folds,
    }.items():
        if value is not None:
            data[key] = value
    try:
        settings = DeepSettings.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid deep settings: {exc}") from None
    run_seed = cfg.seed if seed is None else seed

    train_ids = labels = None
    if settings.mode == "finetune":
        if manifest is None:
            raise ConfigError("--mode finetune needs --manifest (labels and the train/test split)")
        from rccgrade.cohort.manifest import load_cohort

        cohort_data = cfg.cohort.model_dump()
        cohort_data["require_labels"] = False
        cohort = load_cohort(manifest, settings=type(cfg.cohort).model_validate(cohort_data))
        train_ids = [c.patient_id for c in cohort if c.split == "train"]
        if not train_ids:
            raise ConfigError(
                "fine-tuning needs a 'split' column with training patients in the manifest", path=manifest
            )
        labels = {c.patient_id: int(c.high_grade) for c in cohort if c.high_grade is not None}

    images = {roi: load_slices(preprocess_dir, roi) for roi in settings.rois}
    with case_progress("deep features", console, transient=False) as progress:
        result = extract_deep_features(
            images,
            settings,
            train_ids=train_ids,
            labels=labels,
            seed=run_seed,
            cache_dir=cache_dir,
            progress=progress,
        )
    save_table(result.table, out, settings=result.metadata)
    meta_path = write_metadata(result, out.with_suffix(".json"))
    if result.probabilities is not None:
        probs = result.probabilities.add_prefix("p_high:").join(result.folds.add_prefix("fold:"))
        probs.to_csv(out.with_suffix(".probabilities.csv"))
    if result.random_init:
        console.print("[bold red]WARNING: random backbone weights (weights=none) — not ImageNet features.[/]")
    if gradcam:
        from rccgrade.deep.cam import gradcam_figure

        mean, std = result.metadata["weights"]["mean"], result.metadata["weights"]["std"]
        for roi in settings.rois:
            model = result.models.get(roi)
            if model is None and roi in result.model_files:
                from rccgrade.deep.finetune import load_finetuned

                model = load_finetuned(result.model_files[roi], settings)
            if model is None:
                continue
            chosen = [p for p in images[roi] if train_ids is None or p not in set(train_ids)][:gradcam]
            for pid in chosen:
                png = child_path(child_path(out.parent / "gradcam", roi), pid, ".png")
                gradcam_figure(
                    model,
                    images[roi][pid][0],
                    png,
                    mean=mean,
                    std=std,
                    input_size=settings.input_size,
                    title=f"{pid} · {roi}",
                )
    console.print(
        escape(
            f"deep features: {result.table.shape[0]} patients × {result.table.shape[1]} features "
            f"({settings.mode}, weights {result.metadata['weights']['source']}) → {out}; metadata {meta_path}"
        ),
        highlight=False,
    )
    if result.failures:
        console.print(f"[yellow]{len(result.failures)} case/ROI pairs failed:[/]")
        for row in result.failures[:20]:
            console.print(escape(f"  {row['patient_id']} ({row['roi']}): {row['error']}"), highlight=False)
        raise typer.Exit(code=1)
