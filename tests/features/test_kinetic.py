"""Kinetic features on phantoms with known HU per phase equal hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rccgrade.radiomics.kinetic import feature_deltas, intensity_kinetics, kinetic_row, tumour_intensity

# Ten tumour voxels 100, 110, …, 190 HU in the arterial phase; the phantom's tumour loses 30 HU by the
# nephrographic phase and 60 HU by the excretory phase; the background (outside the mask) is never read.
ARTERIAL = np.arange(100.0, 200.0, 10.0)


def _phantom() -> tuple[dict[str, np.ndarray], np.ndarray]:
    mask = np.zeros((3, 4, 5), dtype=np.uint8)
    idx = np.argwhere(np.ones_like(mask))[:10]
    mask[tuple(idx.T)] = 1
    images = {}
    for phase, shift in (("arterial", 0.0), ("nephrographic", -30.0), ("excretory", -60.0)):
        img = np.full(mask.shape, -1000.0)  # air everywhere else: must not enter the statistics
        img[tuple(idx.T)] = ARTERIAL + shift
        images[phase] = img
    return images, mask


def test_tumour_intensity_hand_computed() -> None:
    images, mask = _phantom()
    stats = tumour_intensity(images["arterial"], mask, [10, 50, 90])
    # linear interpolation between order statistics: p10 at position 0.9 → 100 + 0.9 × 10
    assert stats == {"mean": 145.0, "p10": 109.0, "p50": 145.0, "p90": 181.0, "n_voxels": 10.0}


def test_intensity_kinetics_hand_computed() -> None:
    images, mask = _phantom()
    stats = {p: tumour_intensity(img, mask, [10, 90]) for p, img in images.items()}
    out = intensity_kinetics(stats, ["mean", "p10", "p90"])
    assert out["tumour_mean_nephrographic_minus_arterial"] == -30.0
    assert out["tumour_mean_excretory_minus_nephrographic"] == -30.0
    assert out["tumour_mean_excretory_minus_arterial"] == -60.0
    assert out["tumour_p10_excretory_minus_arterial"] == -60.0
    assert out["tumour_p90_nephrographic_minus_arterial"] == -30.0
    # peak = arterial (145 HU mean, 109 p10, 181 p90); washout to the excretory phase = 60 HU
    assert out["tumour_mean_washout"] == 60.0
    assert out["tumour_mean_relative_washout"] == pytest.approx(60.0 / 145.0, rel=1e-15)
    assert out["tumour_p10_relative_washout"] == pytest.approx(60.0 / 109.0, rel=1e-15)
    assert out["tumour_p90_relative_washout"] == pytest.approx(60.0 / 181.0, rel=1e-15)
    assert len(out) == 3 * 5


def test_peak_is_the_later_phase_when_it_enhances_more() -> None:
    stats = {"arterial": {"mean": 80.0}, "nephrographic": {"mean": 120.0}, "excretory": {"mean": 90.0}}
    out = intensity_kinetics(stats, ["mean"])
    assert out["tumour_mean_nephrographic_minus_arterial"] == 40.0
    assert out["tumour_mean_washout"] == 30.0  # from the nephrographic peak, not the arterial value
    assert out["tumour_mean_relative_washout"] == pytest.approx(0.25, rel=1e-15)


def test_relative_washout_denominator_has_a_floor_near_zero_hu() -> None:
    stats = {"arterial": {"mean": 15.0}, "excretory": {"mean": 5.0}}
    out = intensity_kinetics(stats, ["mean"], washout_min_peak_hu=20.0)
    assert out["tumour_mean_excretory_minus_arterial"] == -10.0
    assert out["tumour_mean_washout"] == 10.0
    assert out["tumour_mean_relative_washout"] == 0.5  # 10 / max(15, 20)
    tiny = intensity_kinetics({"arterial": {"mean": 0.001}, "excretory": {"mean": -3.0}}, ["mean"])
    assert tiny["tumour_mean_relative_washout"] == pytest.approx(3.001 / 20.0)
    assert all(math.isfinite(v) for v in tiny.values())


def test_phase_order_is_time_order_not_listing_order() -> None:
    stats = {"excretory": {"mean": 50.0}, "arterial": {"mean": 150.0}}
    out = intensity_kinetics(stats, ["mean"])
    assert out == {
        "tumour_mean_excretory_minus_arterial": -100.0,
        "tumour_mean_washout": 100.0,
        "tumour_mean_relative_washout": pytest.approx(100.0 / 150.0),
    }


def test_single_phase_gives_nothing() -> None:
    assert intensity_kinetics({"arterial": {"mean": 1.0}}, ["mean"]) == {}


def test_feature_deltas_and_missing_feature() -> None:
    feats = {
        "arterial": {"original_glcm_Contrast": 2.0, "original_firstorder_Entropy": 3.5},
        "nephrographic": {"original_glcm_Contrast": 5.0, "original_firstorder_Entropy": 3.0},
    }
    out = feature_deltas(feats, ["original_glcm_Contrast", "original_firstorder_Entropy"])
    assert out == {
        "original_glcm_Contrast_nephrographic_minus_arterial": 3.0,
        "original_firstorder_Entropy_nephrographic_minus_arterial": -0.5,
    }
    with pytest.raises(KeyError):
        feature_deltas(feats, ["original_glcm_Idm"])


def test_kinetic_row_names_columns_kin() -> None:
    images, mask = _phantom()
    stats = {p: tumour_intensity(img, mask, [50]) for p, img in images.items()}
    feats = {p: {"original_glcm_Contrast": float(i)} for i, p in enumerate(images)}
    row = kinetic_row(stats, feats, [50], ["original_glcm_Contrast"])
    assert row["kin:tumour_p50_excretory_minus_arterial"] == -60.0
    assert row["kin:original_glcm_Contrast_excretory_minus_arterial"] == 2.0
    assert all(c.startswith("kin:") for c in row)
