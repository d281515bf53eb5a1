"""Leakage-free fine-tuning of the backbone on training patients.

:class:`CNNFineTuner` is a scikit-learn-style classifier over patients (each a ``(K, 3, H, W)`` slice stack):
``fit`` trains a copy of the pretrained backbone with a fresh one-logit head (augmentation: flips, small
affine, intensity jitter; class-weighted BCE; AdamW or SGD with a cosine schedule; early stopping on a
stratified inner validation split of the fit set). ``transform`` gives patient features (mean over slices of
the pooled features) and ``predict_proba`` the mean slice probability of high grade.

:func:`finetune_roi` applies it without leakage: training patients get out-of-fold features and
probabilities (k networks, each blind to the fold it describes); every other patient gets those of one
network trained on all training patients. No downstream model ever sees a feature computed by a network
that saw that patient's label.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold

from rccgrade.deep.backbone import build_resnet, feature_dim, replace_head
from rccgrade.deep.data import (
    augment_batch,
    autocast_dtype,
    mean_by_owner,
    precision,
    prepare_batch,
    resolve_batch_size,
    resolve_device,
    stack_slices,
    torch_runtime,
)
from rccgrade.deep.settings import DeepSettings
from rccgrade.deep.weights import WeightsInfo, load_backbone
from rccgrade.errors import FeatureError, ModelError
from rccgrade.features.naming import arm_roi, column_source, deep_column

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


def _inner_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) patient indices; no validation set when a class has < 3 patients."""
    val: list[int] = []
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        if len(idx) < 3:
            return np.arange(len(y)), np.zeros(0, dtype=np.int64)
        n_val = max(1, round(fraction * len(idx)))
        val.extend(rng.permutation(idx)[:n_val].tolist())
    val_arr = np.sort(np.asarray(val, dtype=np.int64))
    fit_arr = np.setdiff1d(np.arange(len(y)), val_arr)
    return fit_arr, val_arr


class CNNFineTuner(BaseEstimator, ClassifierMixin):
    """Fine-tune the configured backbone as a binary classifier of patients (high vs low grade).

    Args:
        settings: Stage settings (architecture, weights, optimisation, augmentation, device).
        seed: Seed of the head's initialisation, the inner split, batch order and augmentation.
        hub_dir: torch hub folder for ImageNet weights (default ``torch.hub.get_dir()``).

    Attributes:
        model_: The fine-tuned network (eval mode, best validation epoch restored).
        weights_info_: Where the starting weights came from and the input normalisation.
        history_: Per epoch ``{"epoch", "train_loss", "val_loss"}``.
        best_epoch_: Epoch (1-based) whose weights were kept.
        classes_: ``array([0, 1])``.
    """

    def __init__(self, settings: DeepSettings | None = None, seed: int = 0, hub_dir: str | Path | None = None) -> None:
        self.settings = settings
        self.seed = seed
        self.hub_dir = hub_dir

    def _settings(self) -> DeepSettings:
        return self.settings or DeepSettings(mode="finetune")

    def fit(self, X: Sequence[np.ndarray], y: Sequence[int]) -> CNNFineTuner:
        """Train on patients ``X`` (each ``(K, 3, H, W)`` in [0, 1]) with labels ``y`` (0/1).

        Raises:
            ModelError: labels not 0/1, a class missing, or ``X`` and ``y`` of different lengths.
        """
        settings = self._settings()
        with torch_runtime(settings, training=True):
            return self._fit(X, y, settings)

    def _fit(self, X: Sequence[np.ndarray], y: Sequence[int], settings: DeepSettings) -> CNNFineTuner:
        import torch

        y_arr = np.asarray(y)
        if len(X) != len(y_arr):
            raise ModelError(f"fine-tuning: {len(X)} patients but {len(y_arr)} labels")
        if not set(np.unique(y_arr).tolist()) <= {0, 1} or len(np.unique(y_arr)) < 2:
            raise ModelError("fine-tuning needs labels 0/1 with both classes among the training patients")
        y_arr = y_arr.astype(np.int64)
        device = resolve_device(settings)
        batch = resolve_batch_size(settings, device, training=True)
        model, info = load_backbone(settings, seed=self.seed, hub_dir=self.hub_dir)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            replace_head(model, 1)
        model.to(device)
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)

        rng = np.random.default_rng(self.seed)
        fit_idx, val_idx = _inner_split(y_arr, settings.val_fraction, rng)
        ids = [str(i) for i in range(len(X))]
        images = dict(zip(ids, X, strict=True))
        x_fit, own_fit = stack_slices(images, [ids[i] for i in fit_idx])
        y_fit = y_arr[fit_idx][own_fit].astype(np.float32)
        x_val, own_val = (None, None)
        if len(val_idx):
            x_val, own_val = stack_slices(images, [ids[i] for i in val_idx])
        y_val = None if own_val is None else y_arr[val_idx][own_val].astype(np.float32)

        n_pos = float(y_fit.sum())
        n_neg = float(len(y_fit) - n_pos)
        pos_weight = torch.tensor([n_neg / max(n_pos, 1.0)], device=device)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        if settings.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(
                model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
            )
        else:
            opt = torch.optim.SGD(
                model.parameters(), lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay
            )
        n = len(y_fit)
        steps_per_epoch = max(1, n // batch + (1 if n % batch > 1 else 0))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed)
        # float16 gradients underflow without loss scaling; bfloat16 and float32 need none (the scaler is a no-op)
        scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(settings, device) == torch.float16)

        history: list[dict[str, float]] = []
        best_loss = float("inf")
        best_state: dict[str, Any] | None = None
        best_epoch = settings.epochs
        stale = 0
        for epoch in range(1, settings.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen).numpy()
            total, count = 0.0, 0
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                if len(idx) < 2:  # batch norm cannot train on a single image
                    continue
                xb = torch.as_tensor(x_fit[idx])
                if settings.augment:
                    xb = augment_batch(xb, settings, gen)
                xb = prepare_batch(xb, info.mean, info.std, settings.input_size, device, settings.channels_last)
                yb = torch.as_tensor(y_fit[idx], device=device)
                opt.zero_grad(set_to_none=True)
                with precision(settings, device):
                    loss = loss_fn(model(xb).squeeze(1).float(), yb)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            record = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": float("nan")}
            if x_val is not None and y_val is not None:
                val_loss = self._val_loss(model, x_val, y_val, info, settings, device, batch, loss_fn)
                record["val_loss"] = val_loss
                if val_loss < best_loss - 1e-6:
                    best_loss, best_epoch, stale = val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
            history.append(record)
            log.debug("fine-tune epoch %d: %s", epoch, record)
            if stale >= settings.patience:
                log.info("fine-tuning stopped early at epoch %d (best %d)", epoch, best_epoch)
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = len(history)
        self.model_ = model.eval()
        self.weights_info_ = info
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.classes_ = np.array([0, 1])
        return self

    @staticmethod
    def _val_loss(
        model: nn.Module,
        x_val: np.ndarray,
        y_val: np.ndarray,
        info: WeightsInfo,
        settings: DeepSettings,
        device: torch.device,
        batch: int,
        loss_fn: nn.Module,
    ) -> float:
        import torch

        model.eval()
        total = 0.0
        with torch.inference_mode():
            for start in range(0, len(x_val), batch):
                xb = prepare_batch(
                    x_val[start : start + batch],
                    info.mean,
                    info.std,
                    settings.input_size,
                    device,
                    settings.channels_last,
                )
                yb = torch.as_tensor(y_val[start : start + batch], device=device)
                with precision(settings, device):
                    total += float(loss_fn(model(xb).squeeze(1).float(), yb)) * len(yb)
        return total / len(x_val)

    def _embed(self, X: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Patient-level (mean over slices) pooled features and probabilities of high grade."""
        from rccgrade.deep.embed import embed_slices

        if not hasattr(self, "model_"):
            raise ModelError("CNNFineTuner is not fitted; call fit first")
        settings = self._settings()
        device = resolve_device(settings)
        if not len(X):
            return np.zeros((0, int(self.model_.fc.in_features)), np.float32), np.zeros(0, np.float32)
        ids = [str(i) for i in range(len(X))]
        slices, owner = stack_slices(dict(zip(ids, X, strict=True)), ids)
        feats, logits = embed_slices(
            self.model_,
            slices,
            mean=self.weights_info_.mean,
            std=self.weights_info_.std,
            settings=settings,
            device=device,
            batch_size=resolve_batch_size(settings, device),
            with_logits=True,
        )
        assert logits is not None
        probs = 1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64)))
        return mean_by_owner(feats, owner, len(X)), mean_by_owner(probs[:, None], owner, len(X))[:, 0]

    def transform(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """Patient features ``(n, feature_dim)``: the mean over a patient's slices of the pooled features."""
        return self._embed(X)[0]

    def predict_proba(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, 2)`` probabilities of low/high grade; high = mean of the slices' sigmoid outputs."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        p = self._embed(X)[1].astype(np.float64)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Sequence[np.ndarray]) -> np.ndarray:
        """0/1 prediction at probability 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def load_finetuned(path: str | Path, settings: DeepSettings) -> nn.Module:
    """Rebuild a fine-tuned network (one-logit head) from a state-dict file written by :func:`finetune_roi`."""
    import torch

    model = replace_head(build_resnet(settings.arch, num_classes=1000), 1)
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError) as exc:
        raise FeatureError(f"cannot load the fine-tuned network: {exc}", path=path) from None
    return model.eval()


@dataclass
class FineTuneOutcome:
    """One ROI's fine-tuning result: features, probabilities, fold of origin, histories, saved model."""

    table: pd.DataFrame
    probabilities: pd.Series
    folds: pd.Series
    history: dict[str, Any]
    model_file: Path | None
    model: nn.Module | None = None


def finetune_roi(
    images: Mapping[str, np.ndarray],
    labels: Mapping[str, int],
    train_ids: set[str] | Sequence[str],
    roi: str,
    settings: DeepSettings,
    *,
    seed: int = 0,
    hub_dir: str | Path | None = None,
    cache_folder: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FineTuneOutcome:
    """Out-of-fold features/probabilities for training patients, full-model ones for everybody else.

    Args:
        images: patient_id → validated slices ``(K, 3, H, W)`` of this ROI.
        labels: patient_id → 0/1; needed for every training patient present in ``images``.
        train_ids: The training patients (the others are only ever inferred).
        roi: ROI name (for column names and messages).
        settings: Stage settings (``folds`` etc.).
        seed: Master seed; fold ``k``'s network uses ``seed + k + 1``, the full network ``seed``.
        hub_dir: torch hub folder for ImageNet weights.
        cache_folder: Where to store/reuse the result (None: no cache).
        progress: ``progress(done, total)`` over the ``folds + 1`` network fits.

    Raises:
        ModelError: a training patient has no 0/1 label, or a class has fewer than 2 training patients.
    """
    train = [p for p in images if p in set(train_ids)]
    others = [p for p in images if p not in set(train_ids)]
    bad = [p for p in train if labels.get(p) not in (0, 1)]
    if bad:
        raise ModelError(f"fine-tuning ROI {roi!r}: training patients without a 0/1 label: {bad[:5]}")
    y = np.array([labels[p] for p in train], dtype=np.int64)
    dim = feature_dim(settings.arch)
    cols = [deep_column(roi, i) for i in range(dim)]
    if cache_folder is not None and (cache_folder / "result.json").is_file():
        cached = _load_cache(cache_folder, cols)
        if cached is not None:
            log.info("fine-tuned features %s: from the cache %s", roi, cache_folder)
            if progress:
                progress(settings.folds + 1, settings.folds + 1)
            return cached
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ModelError(
            f"fine-tuning ROI {roi!r} needs at least 2 training patients of each class; got {counts.tolist()}"
        )
    n_folds = int(min(settings.folds, counts.min()))
    if n_folds < settings.folds:
        log.warning("fine-tuning ROI %s: only %d folds possible (smallest class)", roi, n_folds)
    total = n_folds + 1
    feats = np.full((len(images), dim), np.nan, dtype=np.float32)
    probs = np.full(len(images), np.nan, dtype=np.float64)
    fold_of = np.full(len(images), -1, dtype=np.int64)
    pos = {p: i for i, p in enumerate(images)}
    history: dict[str, Any] = {"folds": []}
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
        tuner = CNNFineTuner(settings, seed=seed + k + 1, hub_dir=hub_dir).fit([images[train[i]] for i in tr], y[tr])
        held = [train[i] for i in te]
        f = tuner.transform([images[p] for p in held])
        pr = tuner.predict_proba([images[p] for p in held])[:, 1]
        for j, p in enumerate(held):
            feats[pos[p]] = f[j]
            probs[pos[p]] = pr[j]
            fold_of[pos[p]] = k
        history["folds"].append({"fold": k, "best_epoch": tuner.best_epoch_, "epochs": tuner.history_})
        if progress:
            progress(k + 1, total)
    full = CNNFineTuner(settings, seed=seed, hub_dir=hub_dir).fit([images[p] for p in train], y)
    if others:
        f = full.transform([images[p] for p in others])
        pr = full.predict_proba([images[p] for p in others])[:, 1]
        for j, p in enumerate(others):
            feats[pos[p]] = f[j]
            probs[pos[p]] = pr[j]
    history["full"] = {"best_epoch": full.best_epoch_, "epochs": full.history_}
    history["n_folds"] = n_folds
    if progress:
        progress(total, total)
    index = pd.Index(list(images), name="patient_id")
    out = FineTuneOutcome(
        table=pd.DataFrame(feats, index=index, columns=cols),
        probabilities=pd.Series(probs, index=index, name=roi),
        folds=pd.Series(fold_of, index=index, name=roi),
        history=history,
        model_file=None,
        model=full.model_,
    )
    if cache_folder is not None:
        out.model_file = _save_cache(cache_folder, out, full.model_)
    return out


def _save_cache(folder: Path, out: FineTuneOutcome, model: nn.Module) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "features.npy", out.table.to_numpy())
    np.save(folder / "probabilities.npy", out.probabilities.to_numpy())
    np.save(folder / "folds.npy", out.folds.to_numpy())
    model_file = folder / "model_full.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, model_file)
    meta = {"ids": [str(p) for p in out.table.index], "history": out.history}
    (folder / "result.json").write_text(json.dumps(meta, default=float))
    return model_file


def _load_cache(folder: Path, cols: list[str]) -> FineTuneOutcome | None:
    try:
        meta = json.loads((folder / "result.json").read_text())
        feats = np.load(folder / "features.npy")
        probs = np.load(folder / "probabilities.npy")
        folds = np.load(folder / "folds.npy")
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable fine-tune cache %s: %s", folder, exc)
        return None
    if feats.shape != (len(meta["ids"]), len(cols)):
        return None
    index = pd.Index(meta["ids"], name="patient_id")
    roi = str(arm_roi(column_source(cols[0])))
    model_file = folder / "model_full.pt"
    return FineTuneOutcome(
        table=pd.DataFrame(feats, index=index, columns=cols),
        probabilities=pd.Series(probs, index=index, name=roi),
        folds=pd.Series(folds, index=index, name=roi),
        history=meta["history"],
        model_file=model_file if model_file.is_file() else None,
    )
