"""Backbone weights: torchvision's ImageNet weights (downloaded once, hash-checked), a local file, or none.

``imagenet`` means one of torchvision's published ResNet50 state dicts, fetched on first use into torch's
hub cache (``torch.hub.get_dir()/checkpoints/``, i.e. ``$TORCH_HOME/hub/checkpoints``) exactly where
torchvision itself would put it, and checked against the SHA-256 prefix that is part of its file name.
Offline, put the file there by hand (or pass its path as the weights): the error says which file and where.

Input normalisation follows the weights: ImageNet mean/std for ImageNet weights and for local state dicts
(assumed to be torchvision-convention ImageNet descendants), ``(x − 0.5)/0.5`` for a random network.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rccgrade.cache import file_checksum
from rccgrade.deep.backbone import build_resnet
from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import ConfigError, FeatureError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

OFFLINE_ENV = "RCCGRADE_OFFLINE"
"""Set to 1 to forbid downloads: missing weights fail at once with the where-to-put-the-file message."""
DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout (s) of the weights download: connecting or a stalled read fails instead of hanging."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsSpec:
    """One published torchvision weight file: its URL, file name and SHA-256 prefix."""

    name: str
    url: str

    @property
    def filename(self) -> str:
        """File name in the hub cache (the last path element of the URL)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """Leading hex digits of the file's SHA-256, as embedded in torchvision's file name."""
        return self.filename.rsplit("-", 1)[-1].split(".", 1)[0]


IMAGENET_WEIGHTS: dict[str, WeightsSpec] = {
    "IMAGENET1K_V1": WeightsSpec("IMAGENET1K_V1", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
    "IMAGENET1K_V2": WeightsSpec("IMAGENET1K_V2", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"),
}

RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the deep-feature backbone is randomly initialised (weights=none). Its features are NOT "
    "ImageNet features and results are not comparable with the reference study. Use weights=imagenet or a "
    "local .pth state dict for real work."
)


@dataclass
class WeightsInfo:
    """Where the backbone's weights came from and how inputs must be normalised for them.

    Attributes:
        source: ``imagenet``, ``local`` or ``none``.
        path: The state-dict file loaded (None for ``none``).
        sha256: SHA-256 of that file (None for ``none``).
        normalization: ``imagenet``, ``unit`` or ``identity``.
        mean: Per-channel mean subtracted from images in [0, 1].
        std: Per-channel standard deviation divided by.
        random_init: True when the network is randomly initialised (the report shows a banner).
        warnings: Messages the report must show.
    """

    source: str
    path: str | None
    sha256: str | None
    normalization: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    random_init: bool
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able metadata for feature tables, caches and the report."""
        return {
            "source": self.source,
            "path": self.path,
            "sha256": self.sha256,
            "normalization": self.normalization,
            "mean": list(self.mean),
            "std": list(self.std),
            "random_init": self.random_init,
            "warnings": list(self.warnings),
        }


def hub_checkpoint_dir(hub_dir: str | Path | None = None) -> Path:
    """``<hub_dir>/checkpoints``, where ``hub_dir`` defaults to ``torch.hub.get_dir()``."""
    if hub_dir is None:
        import torch.hub

        hub_dir = torch.hub.get_dir()
    return Path(hub_dir) / "checkpoints"


def fetch_weights(url: str, dest: str | Path, hash_prefix: str) -> Path:
    """Return ``dest``, downloading ``url`` there first when it is missing; verify its SHA-256 prefix.

    Args:
        url: Where the file is published (``https://…``; ``file://…`` works too).
        dest: Target file (normally in torch's hub cache).
        hash_prefix: Leading hex digits the file's SHA-256 must start with.

    Set ``RCCGRADE_OFFLINE=1`` to fail at once instead of trying to download.

    Raises:
        FeatureError: the download fails (offline, …) — the message names the file to place at ``dest`` —
            or the file (downloaded or already there) does not match ``hash_prefix``.
    """
    dest = Path(dest)
    fix = (
        f"Put the file {dest.name} (SHA-256 starting {hash_prefix}; published at {url}) at {dest}, "
        "or pass the path of a local .pth state dict as the weights (e.g. --weights /path/to/resnet50.pth), "
        "or use weights=none for a randomly initialised network (not comparable with the reference study)."
    )
    if not dest.exists():
        import torch.hub

        if os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes"):
            raise FeatureError(
                f"backbone weights are not in the cache and {OFFLINE_ENV} forbids downloading. {fix}", path=dest
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading backbone weights %s → %s", url, dest)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub's urlopen has none: never hang offline
        try:
            torch.hub.download_url_to_file(url, str(dest), hash_prefix=hash_prefix, progress=False)
        except RuntimeError as exc:
            if "invalid hash value" in str(exc):
                raise FeatureError(
                    f"the weights downloaded from {url} fail the hash check ({exc}); the download is corrupt "
                    f"or not the published file. {fix}",
                    path=dest,
                ) from None
            raise FeatureError(f"cannot download backbone weights from {url}: {exc}. {fix}", path=dest) from None
        except OSError as exc:  # URLError, HTTPError, socket errors, missing file:// source
            raise FeatureError(
                f"cannot download backbone weights from {url} (offline? {exc}). {fix}", path=dest
            ) from None
        finally:
            socket.setdefaulttimeout(old_timeout)
    digest = file_checksum(dest)
    if not digest.startswith(hash_prefix):
        raise FeatureError(
            f"the cached weights file fails the hash check (SHA-256 {digest[:12]}…, expected {hash_prefix}…): it "
            f"is truncated or not the published file. Delete it to download again. {fix}",
            path=dest,
        )
    return dest


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    """Accept a bare state dict or a checkpoint holding one under ``state_dict``/``model``."""
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FeatureError(
            "not a state dict (a mapping of parameter names to tensors); save one with "
            "torch.save(model.state_dict(), path)",
            path=path,
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_state_dict_file(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a torchvision-layout state dict (``torch.load(weights_only=True)``) into ``model``, in place.

    Every entry except the classification head ``fc.*`` must match by name and shape (a strict load); the
    head is loaded when its shape matches the model's and skipped otherwise (a replaced head).

    Raises:
        FeatureError: file missing or unreadable, not a state dict, or keys/shapes that do not match — the
            message lists the missing and unexpected keys.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FeatureError(
            "weights file not found; give the path of a .pth state dict in torchvision's ResNet50 layout, "
            "or use weights=imagenet / weights=none",
            path=path,
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of many kinds
        raise FeatureError(
            f"cannot read the weights file with torch.load(weights_only=True): {type(exc).__name__}: {exc}. "
            "Save a plain state dict with torch.save(model.state_dict(), path).",
            path=path,
        ) from None
    state = _unwrap_state_dict(raw, path)
    expected = model.state_dict()
    body_expected = {k for k in expected if not k.startswith("fc.")}
    body_given = {k for k in state if not k.startswith("fc.")}
    missing = sorted(body_expected - body_given)
    unexpected = sorted(body_given - body_expected)
    shape_bad = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in body_expected & body_given
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shape_bad:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}{' …' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
        if shape_bad:
            parts.append(f"shape mismatches ({len(shape_bad)}): {shape_bad[:5]}")
        raise FeatureError(
            "the state dict does not match the backbone's torchvision ResNet layout; "
            + "; ".join(parts)
            + ". Use a state dict saved from torchvision.models.resnet50() (or this tool's fine-tuned models) "
            "with the matching 'arch' setting.",
            path=path,
        )
    load = {k: v for k, v in state.items() if k in body_expected}
    head = {k: v for k, v in state.items() if k.startswith("fc.")}
    head_fits = set(head) == {k for k in expected if k.startswith("fc.")} and all(
        tuple(v.shape) == tuple(expected[k].shape) for k, v in head.items()
    )
    if head_fits:
        load.update(head)
    elif head:
        log.info("weights %s: classification head fc.* skipped (different shape; it is replaced)", path)
    result = model.load_state_dict(load, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith("fc.")]
    if leftover or result.unexpected_keys:  # pragma: no cover - guarded by the checks above
        raise FeatureError(f"state dict load incomplete: missing {leftover}, unexpected {result.unexpected_keys}")
    return model


def _normalization(settings: DeepSettings, source: str) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    name = settings.normalization
    if name == "auto":
        name = "unit" if source == "none" else "imagenet"
    if name == "imagenet":
        return name, IMAGENET_MEAN, IMAGENET_STD
    if name == "unit":
        return name, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return name, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def resolve_weights_file(settings: DeepSettings, hub_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """The weights' source (``imagenet``/``local``/``none``) and file, downloading ImageNet weights if needed."""
    spec = settings.weights
    if spec.lower() == "none":
        return "none", None
    if spec.lower() == "imagenet":
        if settings.arch != "resnet50":
            raise ConfigError(
                f"ImageNet weights exist only for arch=resnet50, not {settings.arch!r}; set weights=none or a "
                "local state dict for that architecture"
            )
        ws = IMAGENET_WEIGHTS[settings.imagenet_weights]
        return "imagenet", fetch_weights(ws.url, hub_checkpoint_dir(hub_dir) / ws.filename, ws.hash_prefix)
    return "local", Path(spec).expanduser()


def load_backbone(
    settings: DeepSettings, *, seed: int = 0, hub_dir: str | Path | None = None
) -> tuple[nn.Module, WeightsInfo]:
    """Build the backbone of ``settings.arch`` and load the configured weights.

    Args:
        settings: Stage settings (``arch``, ``weights``, ``imagenet_weights``, ``normalization``).
        seed: Seed of the random initialisation (what remains random: everything for ``none``).
        hub_dir: torch hub folder (default ``torch.hub.get_dir()``); ImageNet weights live in its
            ``checkpoints/`` sub-folder.

    Returns:
        The model in eval mode on the CPU (ImageNet 1000-class head) and a :class:`WeightsInfo`.
    """
    import torch

    source, path = resolve_weights_file(settings, hub_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_resnet(settings.arch, num_classes=1000)
    warnings: list[str] = []
    if path is not None:
        load_state_dict_file(model, path)
        sha = file_checksum(path)
    else:
        sha = None
        warnings.append(RANDOM_WEIGHTS_WARNING)
        log.warning("!" * 100)
        log.warning(RANDOM_WEIGHTS_WARNING)
        log.warning("!" * 100)
    norm, mean, std = _normalization(settings, source)
    info = WeightsInfo(
        source=source,
        path=None if path is None else str(path),
        sha256=sha,
        normalization=norm,
        mean=tuple(mean),  # type: ignore[arg-type]
        std=tuple(std),  # type: ignore[arg-type]
        random_init=path is None,
        warnings=warnings,
    )
    return model.eval(), info
