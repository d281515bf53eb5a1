"""Weights: hash-checked download into the hub cache, clear offline errors, strict local loading, none."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rccgrade.config import StudyConfig
from rccgrade.deep import weights as W
from rccgrade.deep.backbone import build_resnet
from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import ConfigError, FeatureError


def _file_with_prefix(folder: Path, payload: bytes) -> tuple[Path, str]:
    src = folder / "source.bin"
    src.write_bytes(payload)
    return src, hashlib.sha256(payload).hexdigest()[:8]


def test_fetch_downloads_once_from_file_url_and_checks_hash(tmp_path: Path) -> None:
    src, prefix = _file_with_prefix(tmp_path, b"weights" * 1000)
    dest = tmp_path / "hub" / "checkpoints" / f"resnet50-{prefix}.pth"
    got = W.fetch_weights(src.as_uri(), dest, prefix)
    assert got == dest and dest.read_bytes() == src.read_bytes()
    src.unlink()  # second call uses the cached file, no download
    assert W.fetch_weights(src.as_uri(), dest, prefix) == dest


def test_fetch_rejects_a_download_with_the_wrong_hash(tmp_path: Path) -> None:
    src, prefix = _file_with_prefix(tmp_path, b"not the published weights")
    wrong = "0" * 8 if not prefix.startswith("0") else "f" * 8
    dest = tmp_path / "hub" / "checkpoints" / f"resnet50-{wrong}.pth"
    with pytest.raises(FeatureError, match="hash check") as exc:
        W.fetch_weights(src.as_uri(), dest, wrong)
    assert str(dest) in str(exc.value)
    assert not dest.exists()


def test_fetch_rejects_a_corrupt_cached_file(tmp_path: Path) -> None:
    dest = tmp_path / "resnet50-0676ba61.pth"
    dest.write_bytes(b"truncated")
    with pytest.raises(FeatureError, match="cached weights file fails the hash check"):
        W.fetch_weights("https://example.invalid/resnet50-0676ba61.pth", dest, "0676ba61")


def test_offline_imagenet_error_says_which_file_goes_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "resnet50-0676ba61.pth"
    monkeypatch.setitem(W.IMAGENET_WEIGHTS, "IMAGENET1K_V1", W.WeightsSpec("IMAGENET1K_V1", missing.as_uri()))
    with pytest.raises(FeatureError) as exc:
        W.load_backbone(DeepSettings(weights="imagenet"), hub_dir=tmp_path / "hub")
    msg = str(exc.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in msg
    assert "resnet50-0676ba61.pth" in msg and "0676ba61" in msg
    assert "local .pth" in msg and "cannot download" in msg


def test_imagenet_spec_is_torchvision_v1() -> None:
    spec = W.IMAGENET_WEIGHTS[DeepSettings().imagenet_weights]
    assert spec.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert spec.hash_prefix == "0676ba61"
    assert W.IMAGENET_WEIGHTS["IMAGENET1K_V2"].hash_prefix == "11ad3fa6"


def test_imagenet_end_to_end_through_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resnet50_state_file: tuple[Path, dict[str, Any]]
) -> None:
    path, state = resnet50_state_file
    prefix = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    served = tmp_path / "served" / f"resnet50-{prefix}.pth"
    served.parent.mkdir()
    served.symlink_to(path)
    monkeypatch.setitem(W.IMAGENET_WEIGHTS, "IMAGENET1K_V1", W.WeightsSpec("IMAGENET1K_V1", served.as_uri()))
    model, info = W.load_backbone(DeepSettings(weights="imagenet"), hub_dir=tmp_path / "hub")
    assert (tmp_path / "hub" / "checkpoints" / served.name).is_file()
    assert info.source == "imagenet" and not info.random_init and info.normalization == "imagenet"
    assert info.mean == W.IMAGENET_MEAN and info.std == W.IMAGENET_STD
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_local_state_dict_file_loads_strictly(resnet50_state_file: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, state = resnet50_state_file
    model, info = W.load_backbone(DeepSettings(weights=str(path)), seed=99)
    assert info.source == "local" and info.path == str(path) and info.normalization == "imagenet"
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_local_state_dict_with_replaced_head_and_checkpoint_wrapper(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = build_resnet("resnet_tiny", num_classes=1)  # fine-tuned-style head: fc is (1, 512)
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model, _ = W.load_backbone(DeepSettings(arch="resnet_tiny", weights=str(path)), seed=5)
    body = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    for key, value in body.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.fc.weight.shape == (1000, 512)  # head skipped, not forced in


def test_mismatched_state_dict_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = build_resnet("resnet_tiny").state_dict()
    del state["layer2.0.conv1.weight"]
    state["layer9.extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(FeatureError) as exc:
        W.load_backbone(DeepSettings(arch="resnet_tiny", weights=str(path)))
    msg = str(exc.value)
    assert "missing keys (1): ['layer2.0.conv1.weight']" in msg
    assert "unexpected keys (1): ['layer9.extra.weight']" in msg
    assert str(path) in msg
    with pytest.raises(FeatureError, match="shape mismatches"):
        W.load_state_dict_file(build_resnet("resnet_tiny"), _save(build_resnet("resnet50").state_dict(), tmp_path))


def _save(state: dict[str, Any], folder: Path) -> Path:
    torch.save(state, folder / "r50.pth")
    return folder / "r50.pth"


def test_unreadable_and_missing_weight_files(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="weights file not found"):
        W.load_backbone(DeepSettings(weights=str(tmp_path / "absent.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"garbage")
    with pytest.raises(FeatureError, match="weights_only=True"):
        W.load_backbone(DeepSettings(weights=str(junk)))
    with pytest.raises(ConfigError, match="only for arch=resnet50"):
        W.load_backbone(DeepSettings(arch="resnet_tiny", weights="imagenet"))


def test_none_weights_warn_loudly_and_are_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rccgrade.deep.weights"):
        model_a, info = W.load_backbone(DeepSettings(arch="resnet_tiny", weights="none"), seed=3)
    assert info.random_init and info.source == "none" and info.path is None
    assert info.normalization == "unit" and info.mean == (0.5, 0.5, 0.5)
    assert any("RANDOM WEIGHTS" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert info.warnings and "RANDOM WEIGHTS" in info.warnings[0]
    model_b, _ = W.load_backbone(DeepSettings(arch="resnet_tiny", weights="none"), seed=3)
    model_c, _ = W.load_backbone(DeepSettings(arch="resnet_tiny", weights="none"), seed=4)
    a, b, c = (
        np.concatenate([v.flatten().numpy() for v in m.state_dict().values()]) for m in (model_a, model_b, model_c)
    )
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_settings_defaults_and_validation() -> None:
    cfg = StudyConfig()
    assert cfg.deep.arch == "resnet50" and cfg.deep.weights == "imagenet" and cfg.deep.mode == "frozen"
    assert cfg.deep.rois == ["box", "tumour", "dilated5mm"]
    with pytest.raises(ValueError):
        DeepSettings(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        DeepSettings(rois=["box", "box"])


def test_offline_switch_fails_without_trying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, prefix = _file_with_prefix(tmp_path, b"abc")
    monkeypatch.setenv(W.OFFLINE_ENV, "1")
    dest = tmp_path / "hub" / "checkpoints" / f"resnet50-{prefix}.pth"
    with pytest.raises(FeatureError, match=W.OFFLINE_ENV) as exc:
        W.fetch_weights(src.as_uri(), dest, prefix)
    assert str(dest) in str(exc.value) and not dest.exists()
