"""Settings of the deep-feature stage (backbone, weights, fine-tuning)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Arch = Literal["resnet50", "resnet_tiny"]
Mode = Literal["frozen", "finetune"]
Normalization = Literal["auto", "imagenet", "unit", "identity"]
ImagenetWeights = Literal["IMAGENET1K_V1", "IMAGENET1K_V2"]


class DeepSettings(BaseModel):
    """Settings of the deep-feature stage (backbone, weights, fine-tuning).

    Attributes:
        arch: ``resnet50`` (default; torchvision's ResNet50 layout, 2048-d features, the reference study's
            network) or ``resnet_tiny`` (bottleneck ResNet with one block per stage and widths 16–128, 512-d
            features; for fast tests and smoke runs only, it has no pretrained weights).
        weights: ``imagenet`` (torchvision's ImageNet weights, downloaded on first use into torch's hub cache
            with a hash check), ``none`` (random initialisation: warned loudly and flagged in the result
            metadata) or a path to a local ``.pth`` state dict in torchvision's ResNet50 layout.
        imagenet_weights: Which published torchvision weights ``imagenet`` means. ``IMAGENET1K_V1``
            (``resnet50-0676ba61.pth``, the classic weights used by the radiomics literature, top-1 76.1%) is
            the default; ``IMAGENET1K_V2`` (``resnet50-11ad3fa6.pth``, top-1 80.9%) is the newer recipe.
        normalization: Input normalisation applied to images in [0, 1]. ``auto`` follows the weights:
            ImageNet mean/std for ``imagenet`` and for a local state dict (assumed to descend from ImageNet
            training in torchvision's convention), ``unit`` ((x − 0.5)/0.5, i.e. [−1, 1]) for ``none``.
        mode: ``frozen`` (pooled features of the pretrained network) or ``finetune`` (train on training
            patients; out-of-fold features for them, full-model features for test patients).
        rois: ROI settings to process (folder names under ``slices/``).
        input_size: Side (pixels) the slice images are resized to before the network (bilinear).
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
        batch_size: Images per forward batch; ``0`` chooses 16 on CPU and, on CUDA, the largest batch whose
            estimated activations fit in 80% of the GPU's free memory (at most 512, or
            :data:`rccgrade.deep.data.CUDA_DETERMINISTIC_BATCH` = 128 when ``deterministic``, whose last batch is
            padded so every forward has one shape; :func:`rccgrade.deep.data.batch_size_from_memory`).
        amp: Automatic mixed precision (``torch.autocast``). ``auto`` (default): float16 on a CUDA GPU, full
            float32 on the CPU (CPU features are exactly those without AMP). ``off``: float32 everywhere.
            ``fp16`` / ``bf16``: that dtype on any device. Measured against float32 (CPU autocast, ResNet50,
            random weights, tests/deep/test_amp.py): float16 features differ by ≤ 1.1e-3 of the largest feature
            (median relative error 7e-4), bfloat16 ones by ≤ 1e-2 (median 5e-3; cosine ≥ 0.99998) — hence float16
            by default; bf16 trades that precision for float32's range.
            Fine-tuning in float16 uses a gradient scaler.
        threads: CPU threads torch may use during the stage; ``0`` keeps torch's default.
        channels_last: Use the channels-last memory format (faster convolutions on CPU and GPU).
        deterministic: Deterministic algorithms for fine-tuning and on CUDA, no cuDNN autotuning, and on CUDA
            one forward shape (fixed, padded batches: cuDNN's rounding depends on the shape; docs/cluster.md), so
            features depend neither on free GPU memory nor on the number of images (CPU results repeat exactly for
            a seed and thread count).
        epochs: Maximum fine-tuning epochs.
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        lr: Peak learning rate of the cosine schedule.
        weight_decay: Decoupled weight decay (AdamW) or L2 penalty (SGD).
        folds: Folds for the out-of-fold features of training patients.
        val_fraction: Share of each fine-tuning set held out (stratified) for early stopping.
        patience: Epochs without a lower validation loss before stopping early.
        augment: Random flips, small affine transforms and intensity jitter while fine-tuning.
        rotate_deg: Largest rotation (degrees) of the augmentation.
        translate: Largest shift, as a fraction of the image side.
        scale: Largest relative zoom in or out.
        intensity: Largest multiplicative and additive intensity jitter (images are in [0, 1]).
    """

    model_config = ConfigDict(extra="forbid")

    arch: Arch = "resnet50"
    weights: str = "imagenet"
    imagenet_weights: ImagenetWeights = "IMAGENET1K_V1"
    normalization: Normalization = "auto"
    mode: Mode = "frozen"
    rois: list[str] = Field(default_factory=lambda: ["box", "tumour", "dilated5mm"])
    input_size: int = Field(224, ge=16)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(0, ge=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    threads: int = Field(0, ge=0)
    channels_last: bool = True
    deterministic: bool = True
    epochs: int = Field(30, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    folds: int = Field(5, ge=2)
    val_fraction: float = Field(0.2, gt=0, lt=0.9)
    patience: int = Field(5, ge=1)
    augment: bool = True
    rotate_deg: float = Field(10.0, ge=0)
    translate: float = Field(0.05, ge=0, lt=0.5)
    scale: float = Field(0.1, ge=0, lt=0.5)
    intensity: float = Field(0.1, ge=0, lt=0.5)

    @field_validator("weights")
    @classmethod
    def _weights_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("weights must be 'imagenet', 'none' or a path to a .pth state dict")
        return value.strip()

    @field_validator("rois")
    @classmethod
    def _rois_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one ROI setting is needed (box, tumour, dilated5mm …)")
        if len(set(value)) != len(value):
            raise ValueError(f"ROI settings listed twice: {value}")
        bad = [r for r in value if not r or ":" in r or "/" in r]
        if bad:
            raise ValueError(f"ROI names may not be empty or contain ':' or '/': {bad}")
        return value
