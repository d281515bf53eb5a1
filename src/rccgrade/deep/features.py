"""The deep-feature stage: per ROI setting, pooled ResNet features of every case (frozen or fine-tuned).

Frozen mode (default) runs the pretrained backbone once per slice and averages the 2048-d pooled features
of a patient's K slices. Fine-tune mode trains on training patients only and gives training patients
out-of-fold features (see :mod:`rccgrade.deep.finetune`), so no downstream model sees a feature from a
network that saw that patient's label. Results are cached under ``cache_dir``: frozen features per case
(keyed by the settings, the weights' checksum and the case's array checksum, so a re-run computes only new
or changed cases), fine-tuned results per ROI (keyed by everything they depend on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rccgrade.cache import stable_hash
from rccgrade.deep.backbone import feature_dim
from rccgrade.deep.data import (
    array_checksum,
    autocast_dtype,
    mean_by_owner,
    resolve_batch_size,
    resolve_device,
    stack_slices,
    torch_runtime,
    validate_slices,
)
from rccgrade.deep.embed import embed_slices
from rccgrade.deep.settings import DeepSettings
from rccgrade.deep.weights import WeightsInfo, load_backbone
from rccgrade.errors import ConfigError, RccgradeError
from rccgrade.features.naming import deep_column
from rccgrade.features.table import join_tables, validate_table
from rccgrade.safepath import child_path

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


def feature_columns(roi: str, dim: int) -> list[str]:
    """FeatureTable column names ``deep:<roi>:f0000`` … for a ``dim``-long feature vector."""
    return [deep_column(roi, i) for i in range(dim)]


@dataclass
class DeepResult:
    """Output of :func:`extract_deep_features`.

    Attributes:
        table: FeatureTable (index ``patient_id``, columns ``deep:<roi>:fNNNN``); a patient whose ROI failed
            has NaN in that ROI's columns.
        probabilities: Fine-tune mode only: the CNN's own probability of high grade per patient (rows) and ROI
            (columns) — out-of-fold for training patients, from the full model for the others. None when frozen.
        folds: Fine-tune mode only: per patient and ROI the fold whose network produced the values (0…k−1,
            or −1 for the network trained on all training patients). None when frozen.
        metadata: JSON-able provenance: mode, arch, settings, weights (source, file, SHA-256,
            normalisation), ``random_init`` and ``warnings`` (the report shows them as a banner), device,
            fine-tuning histories.
        failures: One ``{"patient_id", "roi", "error"}`` row per case and ROI that could not be processed.
        model_files: Fine-tune mode with a cache: ROI → state-dict file of the network trained on all training
            patients (for Grad-CAM; load with :func:`rccgrade.deep.finetune.load_finetuned`).
        models: ROI → network in memory for Grad-CAM: the frozen backbone, or the fine-tuned network trained
            on all training patients (absent for ROIs whose fine-tuning result came from the cache; use
            ``model_files`` then).
    """

    table: pd.DataFrame
    probabilities: pd.DataFrame | None
    folds: pd.DataFrame | None
    metadata: dict[str, Any]
    failures: list[dict[str, str]] = field(default_factory=list)
    model_files: dict[str, Path] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)

    @property
    def random_init(self) -> bool:
        """True when the features come from a randomly initialised backbone (report banner)."""
        return bool(self.metadata.get("random_init", False))


def _valid_cases(images: Mapping[str, np.ndarray], roi: str, failures: list[dict[str, str]]) -> dict[str, np.ndarray]:
    valid: dict[str, np.ndarray] = {}
    for pid, arr in images.items():
        try:
            valid[str(pid)] = validate_slices(arr, str(pid), roi)
        except RccgradeError as exc:
            log.warning("deep features: %s", exc)
            failures.append({"patient_id": str(pid), "roi": roi, "error": str(exc)})
    if valid:
        sizes = {a.shape[2:] for a in valid.values()}
        if len(sizes) > 1:
            common = max(sizes, key=lambda s: sum(a.shape[2:] == s for a in valid.values()))
            for pid in [p for p, a in valid.items() if a.shape[2:] != common]:
                msg = (
                    f"ROI {roi!r}: slice size {valid[pid].shape[2:]} differs from the cohort's {common}; "
                    "re-run preprocessing with one slice size"
                )
                failures.append({"patient_id": pid, "roi": roi, "error": f"[patient {pid}] {msg}"})
                del valid[pid]
    return valid


def _settings_key(settings: DeepSettings, info: WeightsInfo, device: torch.device, *extra: Any) -> str:
    relevant = settings.model_dump(mode="json", exclude={"rois", "threads", "weights", "amp"})
    if settings.mode == "frozen":
        for name in (
            "epochs",
            "optimizer",
            "lr",
            "weight_decay",
            "folds",
            "val_fraction",
            "patience",
            "augment",
            "rotate_deg",
            "translate",
            "scale",
            "intensity",
        ):
            relevant.pop(name, None)
    # the precision the forward runs at, not the amp setting: float32 keeps the keys (and caches) of before AMP
    dtype = autocast_dtype(settings, device)
    amp = () if dtype is None else (f"autocast-{str(dtype).removeprefix('torch.')}",)
    return stable_hash("rccgrade.deep", relevant, info.source, info.sha256, device.type, *amp, *extra)


def _frozen_roi(
    model: nn.Module,
    info: WeightsInfo,
    cases: dict[str, np.ndarray],
    roi: str,
    settings: DeepSettings,
    device: torch.device,
    cache_dir: Path | None,
    progress: Callable[[int], None],
) -> pd.DataFrame:
    dim = int(model.fc.in_features)
    ids = list(cases)
    feats: dict[str, np.ndarray] = {}
    folder = None
    if cache_dir is not None:
        folder = cache_dir / "deep" / roi / f"frozen-{_settings_key(settings, info, device)}"
        for pid in ids:
            path = child_path(folder, f"{pid}-{array_checksum(cases[pid])[:16]}", ".npy")
            if path.is_file():
                vec = np.load(path)
                if vec.shape == (dim,):
                    feats[pid] = vec
        if feats:
            log.info("deep features %s: %d of %d cases from the cache", roi, len(feats), len(ids))
            progress(len(feats))
    todo = [pid for pid in ids if pid not in feats]
    batch = resolve_batch_size(settings, device)
    # Whole patients per chunk so progress moves and memory stays bounded.
    chunk: list[str] = []
    for i, pid in enumerate(todo):
        chunk.append(pid)
        if sum(cases[p].shape[0] for p in chunk) >= batch * 4 or i == len(todo) - 1:
            slices, owner = stack_slices(cases, chunk)
            f, _ = embed_slices(
                model, slices, mean=info.mean, std=info.std, settings=settings, device=device, batch_size=batch
            )
            agg = mean_by_owner(f, owner, len(chunk))
            for j, p in enumerate(chunk):
                feats[p] = agg[j]
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                    np.save(child_path(folder, f"{p}-{array_checksum(cases[p])[:16]}", ".npy"), agg[j])
            progress(len(chunk))
            chunk = []
    matrix = np.stack([feats[p] for p in ids]) if ids else np.zeros((0, dim), np.float32)
    table = pd.DataFrame(matrix, index=pd.Index(ids, name="patient_id"), columns=feature_columns(roi, dim))
    return table


def extract_deep_features(
    images_by_roi: Mapping[str, Mapping[str, np.ndarray]],
    settings: DeepSettings | None = None,
    *,
    train_ids: Sequence[str] | None = None,
    labels: Mapping[str, int] | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    hub_dir: str | Path | None = None,
) -> DeepResult:
    """Deep features of every case for every ROI setting (the stage's entry point).

    Args:
        images_by_roi: ROI name → (patient_id → float32 slices ``(K, 3, H, W)`` in [0, 1]), as returned by
            ``rccgrade.preprocess.slices.load_slices`` per ROI. ROIs not in ``settings.rois`` are ignored.
        settings: Stage settings (default :class:`DeepSettings`).
        train_ids: Fine-tune mode: the training patients (all others are inferred by the full model).
        labels: Fine-tune mode: patient_id → high grade (0/1) for at least every training patient.
        seed: Seed of initialisation, data order, augmentation and folds.
        cache_dir: Folder for the stage cache (None: no caching).
        progress: Optional callback ``progress(done, total)`` over case × ROI units (frozen) or network fits
            (fine-tune).
        hub_dir: torch hub folder for ImageNet weights (default ``torch.hub.get_dir()``).

    Returns:
        A :class:`DeepResult`.

    Raises:
        ConfigError: a configured ROI is missing from ``images_by_roi``; fine-tune mode without
            ``train_ids``/``labels``.
        FeatureError: the weights cannot be obtained or loaded (message says what to do).
    """
    settings = settings or DeepSettings()
    missing = [r for r in settings.rois if r not in images_by_roi]
    if missing:
        raise ConfigError(
            f"deep features: ROI settings {missing} configured but no slice images given for them "
            f"(available: {sorted(images_by_roi)}); run preprocessing for them or change deep.rois"
        )
    if settings.mode == "finetune" and (train_ids is None or labels is None):
        raise ConfigError("deep.mode=finetune needs the training patients and their labels (train_ids, labels)")
    cache = Path(cache_dir) if cache_dir is not None else None
    device = resolve_device(settings)
    failures: list[dict[str, str]] = []
    valid = {roi: _valid_cases(images_by_roi[roi], roi, failures) for roi in settings.rois}

    with torch_runtime(settings):
        model, info = load_backbone(settings, seed=seed, hub_dir=hub_dir)
        metadata: dict[str, Any] = {
            "stage": "deep",
            "mode": settings.mode,
            "arch": settings.arch,
            "feature_dim": feature_dim(settings.arch),
            "settings": settings.model_dump(mode="json"),
            "weights": info.as_dict(),
            "random_init": info.random_init,
            "warnings": list(info.warnings),
            "device": str(device),
            "precision": str(autocast_dtype(settings, device) or "torch.float32").removeprefix("torch."),
            "seed": seed,
        }
        tables: list[pd.DataFrame] = []
        model_files: dict[str, Path] = {}
        models: dict[str, Any] = {}
        if settings.mode == "frozen":
            total = sum(len(v) for v in valid.values())
            done = [0]

            def tick(n: int) -> None:
                done[0] += n
                if progress:
                    progress(done[0], total)

            for roi in settings.rois:
                tables.append(_frozen_roi(model, info, valid[roi], roi, settings, device, cache, tick))
                models[roi] = model
            probabilities = folds = None
        else:
            from rccgrade.deep.finetune import finetune_roi

            probs: dict[str, pd.Series] = {}
            fold_cols: dict[str, pd.Series] = {}
            histories: dict[str, Any] = {}
            train_set = {str(p) for p in train_ids or []}
            label_map = {str(k): int(v) for k, v in (labels or {}).items() if v is not None and not pd.isna(v)}
            n_fits = settings.folds + 1
            total = n_fits * len(settings.rois)
            for r, roi in enumerate(settings.rois):
                offset = r * n_fits

                def roi_progress(done: int, fits: int, offset: int = offset) -> None:
                    if progress:  # fewer folds than configured are possible with a rare class: rescale
                        progress(offset + round(done * n_fits / max(fits, 1)), total)

                key = None
                if cache is not None:
                    ids_sums = sorted((p, array_checksum(a)) for p, a in valid[roi].items())
                    train_labels = sorted((p, label_map.get(p)) for p in valid[roi] if p in train_set)
                    key = _settings_key(settings, info, device, roi, ids_sums, train_labels, seed)
                out = finetune_roi(
                    valid[roi],
                    label_map,
                    train_set,
                    roi,
                    settings,
                    seed=seed,
                    hub_dir=hub_dir,
                    cache_folder=None if key is None else cache / "deep" / roi / f"finetune-{key}",
                    progress=roi_progress,
                )
                tables.append(out.table)
                probs[roi] = out.probabilities
                fold_cols[roi] = out.folds
                histories[roi] = out.history
                if out.model_file is not None:
                    model_files[roi] = out.model_file
                if out.model is not None:
                    models[roi] = out.model
            probabilities = pd.DataFrame(probs)
            probabilities.index.name = "patient_id"
            folds = pd.DataFrame(fold_cols)
            folds.index.name = "patient_id"
            metadata["finetune"] = histories

    table = join_tables(*tables) if tables else pd.DataFrame(index=pd.Index([], name="patient_id"))
    validate_table(table)
    metadata["n_failures"] = len(failures)
    if failures:
        log.warning("deep features: %d case/ROI pairs failed; see the failures table", len(failures))
    return DeepResult(
        table=table,
        probabilities=probabilities,
        folds=folds,
        metadata=metadata,
        failures=failures,
        model_files=model_files,
        models=models,
    )


def write_metadata(result: DeepResult, path: str | Path) -> Path:
    """Write a result's metadata (and failures) as JSON next to its feature table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(result.metadata)
    payload["failures"] = result.failures
    payload["model_files"] = {k: str(v) for k, v in result.model_files.items()}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
