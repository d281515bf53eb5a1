"""Grad-CAM heatmaps of the network's decision, overlaid on the three phases, as PNG for the report.

Uses MONAI's :class:`monai.visualize.GradCAM` on the last residual stage (``layer4``). For a fine-tuned
network (one logit = high grade) the map shows what raised the high-grade score; for the frozen ImageNet
network it shows the evidence for the top ImageNet class, which says little about grade: use it on
fine-tuned models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rccgrade.cohort.types import PHASES
from rccgrade.deep.weights import IMAGENET_MEAN, IMAGENET_STD
from rccgrade.errors import FeatureError

if TYPE_CHECKING:
    from torch import nn


def gradcam_map(
    model: nn.Module,
    image: np.ndarray,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    input_size: int | None = None,
    class_idx: int | None = None,
    target_layer: str = "layer4",
) -> tuple[np.ndarray, float]:
    """Grad-CAM map of one image ``(3, H, W)`` in [0, 1], resized back to ``(H, W)`` and scaled to [0, 1].

    Args:
        model: The network (MONAI ResNet in torchvision layout); left in eval mode.
        image: Three phases as channels, values in [0, 1].
        mean: Per-channel normalisation mean (as for the weights the network was trained with).
        std: Per-channel normalisation standard deviation.
        input_size: Network input side (default: the image's own size).
        class_idx: Output whose score is explained (default: the largest output; 0 for a one-logit head).
        target_layer: Module whose activations are weighted (default the last stage ``layer4``).

    Returns:
        The heatmap ``(H, W)`` in [0, 1] and the explained output's score (the sigmoid probability for a
        one-logit head, else the softmax probability of ``class_idx``).
    """
    import torch
    import torch.nn.functional as F
    from monai.visualize import GradCAM

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise FeatureError(f"Grad-CAM needs one image of shape (3, H, W); got {arr.shape}")
    h, w = arr.shape[1:]
    size = input_size or h
    device = next(model.parameters()).device
    x = torch.as_tensor(arr[None], device=device)
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    x = (x - m) / s
    model.eval()
    with torch.no_grad():
        logits = model(x)
    idx = int(logits.argmax(dim=1)[0]) if class_idx is None else class_idx
    if logits.shape[1] == 1:
        score = float(torch.sigmoid(logits[0, idx]))
    else:
        score = float(torch.softmax(logits, dim=1)[0, idx])
    # MONAI's default post-processing maps (min, max) to (1, 0) — an inverted map; we scale min→0, max→1 below.
    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=_identity)
    with torch.enable_grad():
        heat = cam(x.clone().requires_grad_(True), class_idx=idx)
    heat_t = torch.as_tensor(heat).float()
    if heat_t.shape[-2:] != (h, w):
        heat_t = F.interpolate(heat_t, size=(h, w), mode="bilinear", align_corners=False)
    out = heat_t[0, 0].detach().cpu().numpy()
    out = np.nan_to_num(out, nan=0.0)
    lo, hi = float(out.min()), float(out.max())
    out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    model.zero_grad(set_to_none=True)
    return out.astype(np.float32), score


def gradcam_figure(
    model: nn.Module,
    image: np.ndarray,
    out_path: str | Path,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    input_size: int | None = None,
    class_idx: int | None = None,
    title: str | None = None,
    alpha: float = 0.4,
    dpi: int = 120,
) -> Path:
    """Write a PNG: the three phases of ``image`` (grey) with the Grad-CAM heatmap overlaid (jet).

    Args:
        model: The network to explain (normally a fine-tuned one; see the module docstring).
        image: One slice ``(3, H, W)`` in [0, 1], channels arterial/nephrographic/excretory.
        out_path: Where to write the PNG (parent folders are created).
        mean: Input normalisation mean of the network's weights.
        std: Input normalisation standard deviation.
        input_size: Network input side (default: the image's size).
        class_idx: Output to explain (default: the largest; the high-grade logit for a fine-tuned network).
        title: Figure title (e.g. the patient id and ROI); the explained score is appended.
        alpha: Opacity of the heatmap.
        dpi: Resolution of the PNG.

    Returns:
        ``out_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heat, score = gradcam_map(model, image, mean=mean, std=std, input_size=input_size, class_idx=class_idx)
    arr = np.asarray(image, dtype=np.float32)
    fig = Figure(figsize=(10.5, 3.8), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    mappable = None
    for ax, phase, channel in zip(axes, PHASES, arr, strict=True):
        ax.imshow(channel, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        mappable = ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
        ax.set_title(phase)
        ax.set_axis_off()
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), fraction=0.025, pad=0.02, label="Grad-CAM (relative)")
    label = "P(high grade)" if _one_logit(model) else "score"
    fig.suptitle(f"{title + ' — ' if title else ''}{label} = {score:.3f}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _identity(x: object) -> object:
    return x


def _one_logit(model: nn.Module) -> bool:
    fc = getattr(model, "fc", None)
    return getattr(fc, "out_features", None) == 1


def fold_linear_head(
    model: nn.Module,
    indices: Sequence[int],
    coef: Sequence[float],
    mean: Sequence[float],
    scale: Sequence[float],
    intercept: float,
) -> nn.Module:
    """Replace the network's head by a linear model on its pooled features, folded into one ``Linear`` layer.

    A frozen-feature arm predicts ``logit = intercept + Σ_j coef_j · (f[indices_j] − mean_j) / scale_j`` from
    the pooled features ``f`` (selected columns, training z-scoring, logistic coefficients). That is one
    linear layer on ``f``: weight ``coef_j / scale_j`` at ``indices_j`` (zero elsewhere) and bias
    ``intercept − Σ_j coef_j · mean_j / scale_j``. With it as ``model.fc`` the network's single logit *is* the
    arm's prediction, so Grad-CAM explains the arm's own decision.

    Args:
        model: A ResNet whose ``fc`` takes the pooled features (``fc.in_features`` of them).
        indices: Pooled-feature number of each selected feature.
        coef, mean, scale: Per selected feature: coefficient (per SD), training mean and SD (non-zero).
        intercept: The logistic model's intercept.

    Returns:
        ``model`` in eval mode, with the folded head.

    Raises:
        FeatureError: lengths differ, an index is out of range or a scale is not positive.
    """
    import torch

    idx = np.asarray(indices, dtype=np.int64)
    c = np.asarray(coef, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(scale, dtype=np.float64)
    dim = int(model.fc.in_features)
    if not (len(idx) == len(c) == len(mu) == len(sd)):
        raise FeatureError("fold_linear_head: indices, coefficients, means and scales differ in length")
    if len(idx) and (idx.min() < 0 or idx.max() >= dim):
        raise FeatureError(f"fold_linear_head: a feature index is outside the {dim} pooled features")
    if np.any(~(sd > 0)):
        raise FeatureError("fold_linear_head: every scale must be positive")
    weight = torch.zeros(1, dim, dtype=torch.float32)
    weight[0, torch.as_tensor(idx)] = torch.as_tensor(c / sd, dtype=torch.float32)
    head = torch.nn.Linear(dim, 1)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.fill_(float(intercept) - float(np.sum(c * mu / sd)))
    model.fc = head
    return model.eval()
