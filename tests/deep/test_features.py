"""Frozen-mode feature extraction: table contract, determinism, multi-slice mean, failures, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rccgrade.deep import features as Fm
from rccgrade.deep.features import extract_deep_features
from rccgrade.errors import ConfigError
from rccgrade.features.table import load_table, save_table, validate_table

from .synthetic import fast_settings, random_slices


def test_resnet50_features_table_contract_and_repeatability(tmp_path: Path) -> None:
    images = random_slices(3, size=64)
    settings = fast_settings(rois=["box", "dilated5mm"])
    by_roi = {"box": images, "dilated5mm": random_slices(3, size=64, seed=1), "unused": {}}
    a = extract_deep_features(by_roi, settings, seed=0)
    b = extract_deep_features(by_roi, settings, seed=0)
    validate_table(a.table)
    assert a.table.shape == (3, 2 * 2048)
    assert a.table.columns[0] == "deep:box:f0000" and a.table.columns[-1] == "deep:dilated5mm:f2047"
    assert list(a.table.index) == ["p000", "p001", "p002"]
    assert np.isfinite(a.table.to_numpy()).all()
    np.testing.assert_array_equal(a.table.to_numpy(), b.table.to_numpy())  # identical across runs
    assert a.random_init and a.metadata["random_init"] and "RANDOM WEIGHTS" in a.metadata["warnings"][0]
    assert a.metadata["weights"]["source"] == "none" and a.probabilities is None
    save_table(a.table, tmp_path / "deep.parquet", settings=a.metadata)
    table, meta = load_table(tmp_path / "deep.parquet")
    np.testing.assert_array_equal(table.to_numpy(), a.table.to_numpy())
    assert meta["weights"]["random_init"] is True


def test_multi_slice_features_are_the_mean_of_single_slice_features() -> None:
    rng = np.random.default_rng(3)
    stack = rng.random((3, 3, 48, 48), dtype=np.float32)
    settings = fast_settings(arch="resnet_tiny", input_size=64)  # also exercises the resize 48 → 64
    multi = extract_deep_features({"box": {"a": stack}}, settings).table.loc["a"].to_numpy()
    singles = extract_deep_features({"box": {f"s{i}": stack[i : i + 1] for i in range(3)}}, settings).table
    np.testing.assert_allclose(multi, singles.to_numpy().mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(singles.iloc[0].to_numpy(), singles.iloc[1].to_numpy())


def test_bad_cases_are_reported_and_the_rest_processed() -> None:
    images = random_slices(3, size=32)
    images["nan"] = np.full((1, 3, 32, 32), np.nan, dtype=np.float32)
    images["two_channels"] = np.zeros((1, 2, 32, 32), dtype=np.float32)
    images["hu"] = np.full((1, 3, 32, 32), 300.0, dtype=np.float32)
    images["other_size"] = np.zeros((1, 3, 40, 40), dtype=np.float32)
    result = extract_deep_features({"box": images}, fast_settings(arch="resnet_tiny", input_size=32))
    failed = {f["patient_id"]: f["error"] for f in result.failures}
    assert set(failed) == {"nan", "two_channels", "hu", "other_size"}
    assert "NaN" in failed["nan"] and "(K, 3, H, W)" in failed["two_channels"] and "[0, 1]" in failed["hu"]
    assert all(f"patient {pid}" in msg for pid, msg in failed.items())
    assert list(result.table.index) == ["p000", "p001", "p002"]
    assert result.metadata["n_failures"] == 4


def test_missing_roi_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tumour"):
        extract_deep_features({"box": random_slices(1, size=32)}, fast_settings(rois=["box", "tumour"]))


def test_cache_recomputes_only_new_or_changed_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = fast_settings(arch="resnet_tiny", input_size=32)
    images = random_slices(4, size=32)
    first = extract_deep_features({"box": images}, settings, cache_dir=tmp_path)
    calls: list[int] = []
    real = Fm.embed_slices

    def spy(model, slices, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(slices))
        return real(model, slices, **kw)

    monkeypatch.setattr(Fm, "embed_slices", spy)
    again = extract_deep_features({"box": images}, settings, cache_dir=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(again.table.to_numpy(), first.table.to_numpy())
    changed = dict(images)
    changed["p001"] = np.clip(images["p001"] * 0.5, 0, 1)
    changed["p009"] = random_slices(1, size=32, seed=9)["p000"]
    third = extract_deep_features({"box": changed}, settings, cache_dir=tmp_path)
    assert sum(calls) == 2  # p001 (changed) and p009 (new)
    np.testing.assert_array_equal(third.table.loc["p000"].to_numpy(), first.table.loc["p000"].to_numpy())
    assert not np.array_equal(third.table.loc["p001"].to_numpy(), first.table.loc["p001"].to_numpy())
    progress: list[tuple[int, int]] = []
    extract_deep_features({"box": changed}, settings, cache_dir=tmp_path, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (5, 5)


def test_cache_files_of_hostile_ids_stay_inside_the_cache(tmp_path: Path) -> None:
    """Patient ids are never paths: the per-case cache file of "../../x" or an absolute id lies in the cache."""
    settings = fast_settings(arch="resnet_tiny", input_size=32)
    base = random_slices(3, size=32)
    outside = tmp_path / "outside"
    outside.mkdir()
    ids = ["../../x", str(outside / "victim"), "NA"]
    images = {pid: base[f"p00{i}"] for i, pid in enumerate(ids)}
    cache = tmp_path / "cache"
    first = extract_deep_features({"box": images}, settings, cache_dir=cache)
    assert sorted(first.table.index) == sorted(ids)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(cache in p.parents for p in written)
    assert list(outside.iterdir()) == []
    again = extract_deep_features({"box": images}, settings, cache_dir=cache)  # served from those files
    np.testing.assert_array_equal(again.table.loc[ids].to_numpy(), first.table.loc[ids].to_numpy())
