"""Perturbations (physical-unit erosion/dilation, rigid, contour, noise) and the stability table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from radiomics_helpers import make_case, write_cases

from rccgrade.parallel import ParallelSettings
from rccgrade.radiomics.extract import extract_radiomics, load_stability, stable_features
from rccgrade.radiomics.icc import icc
from rccgrade.radiomics.settings import RadiomicsSettings, StabilitySettings
from rccgrade.radiomics.stability import (
    adjust_volume,
    perturb,
    perturbation_rng,
    stability_patients,
    stability_table,
)

pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
SPACING = (0.8, 0.9, 2.0)  # x, y, z mm


def _box() -> sitk.Image:
    arr = np.zeros((8, 12, 14), np.uint8)
    arr[2:6, 3:9, 4:10] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    return img


def _brute_force(arr: np.ndarray, distance_mm: float) -> np.ndarray:
    """Dilate/erode by comparing every voxel centre with every other (physical mm)."""
    zz, yy, xx = np.indices(arr.shape)
    pts = np.stack([xx * SPACING[0], yy * SPACING[1], zz * SPACING[2]], axis=-1).reshape(-1, 3)
    flat = arr.reshape(-1).astype(bool)
    out = flat.copy()
    if distance_mm > 0:
        roi = pts[flat]
        for i in np.flatnonzero(~flat):
            out[i] = np.sqrt(((roi - pts[i]) ** 2).sum(1)).min() <= distance_mm
    else:
        bg = pts[~flat]
        for i in np.flatnonzero(flat):
            out[i] = np.sqrt(((bg - pts[i]) ** 2).sum(1)).min() > -distance_mm
    return out.reshape(arr.shape)


@pytest.mark.parametrize("distance", [1.0, -1.0, 2.1, -0.85])
def test_volume_change_is_physical(distance: float) -> None:
    box = _box()
    got = sitk.GetArrayFromImage(adjust_volume(box, distance)).astype(bool)
    expected = _brute_force(sitk.GetArrayFromImage(box), distance)
    assert np.array_equal(got, expected)
    assert got.sum() != sitk.GetArrayFromImage(box).sum()


def test_perturbation_is_seeded_and_shared_across_phases() -> None:
    art, neph, mask = make_case(0)
    settings = StabilitySettings()
    a1, m1 = perturb(art, mask, perturbation_rng(0, "P1", 2), settings)
    a2, m2 = perturb(art, mask, perturbation_rng(0, "P1", 2), settings)
    assert np.array_equal(sitk.GetArrayFromImage(a1), sitk.GetArrayFromImage(a2))
    assert np.array_equal(sitk.GetArrayFromImage(m1), sitk.GetArrayFromImage(m2))
    _, m_neph = perturb(neph, mask, perturbation_rng(0, "P1", 2), settings)
    assert np.array_equal(sitk.GetArrayFromImage(m1), sitk.GetArrayFromImage(m_neph))
    _, m3 = perturb(art, mask, perturbation_rng(0, "P1", 3), settings)
    assert not np.array_equal(sitk.GetArrayFromImage(m1), sitk.GetArrayFromImage(m3))
    assert a1.GetSize() == art.GetSize() and m1.GetOrigin() == mask.GetOrigin()


def test_zero_perturbation_is_identity_and_noise_has_requested_sd() -> None:
    art, _, mask = make_case(1)
    none = StabilitySettings(volume_mm=0, contour_mm=0, max_shift_mm=0, max_rotation_deg=0, noise_hu=0)
    img, m = perturb(art, mask, np.random.default_rng(0), none)
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(art), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(m), sitk.GetArrayFromImage(mask))
    noisy = none.model_copy(update={"noise_hu": 10.0})
    img, _ = perturb(art, mask, np.random.default_rng(0), noisy)
    diff = sitk.GetArrayFromImage(img) - sitk.GetArrayFromImage(art)
    assert diff.std() == pytest.approx(10.0, rel=0.05)


def test_stability_table_matches_icc() -> None:
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(5, 3, 4)) + rng.normal(size=(5, 1, 4)) * 3
    perturbed = {f"P{i}": [{f"rad:arterial:f{j}": cube[i, r, j] for j in range(4)} for r in range(3)] for i in range(5)}
    table = stability_table(perturbed, threshold=0.75, model="icc3_1")
    np.testing.assert_allclose(table["icc3_1"].to_numpy(), icc(cube)["icc3_1"])
    assert (table["stable"] == (table["icc3_1"] >= 0.75)).all()
    assert (table["n_subjects"] == 5).all() and (table["n_raters"] == 3).all()


def test_stability_end_to_end(tmp_path: Path, fast_params: Path) -> None:
    cases = write_cases(tmp_path / "data", 4)
    settings = RadiomicsSettings(params=str(fast_params), stability=StabilitySettings(n_perturbations=3, seed=5))
    serial = ParallelSettings(backend="serial")
    result = extract_radiomics(cases, tmp_path / "a", settings, serial)
    stab = result.stability
    assert stab is not None and list(stab.index) == list(result.features.columns)
    finite = stab["icc2_1"].dropna()
    assert len(finite) > 50 and finite.between(-1.5, 1.0 + 1e-12).all()
    # tumour size differs between cases far more than a 1 mm perturbation changes it
    assert stab.loc["rad:arterial:original_shape_VoxelVolume", "icc2_1"] > 0.8
    on_disk = load_stability(result.files["stability"])
    pd.testing.assert_series_equal(on_disk["icc2_1"], stab["icc2_1"], check_exact=True)
    assert stable_features(on_disk) == [f for f in stab.index if stab.loc[f, "stable"]]
    again = extract_radiomics(cases, tmp_path / "b", settings, serial)
    pd.testing.assert_frame_equal(again.stability, stab, check_exact=True)


def test_stability_patients_is_a_reproducible_order_free_subset() -> None:
    ids = [f"p{i:03d}" for i in range(40)]
    chosen = stability_patients(ids, 10, seed=3)
    assert len(chosen) == 10 and chosen <= set(ids)
    assert stability_patients(list(reversed(ids)), 10, seed=3) == chosen  # not the first 10 in input order
    assert chosen != frozenset(ids[:10])
    assert stability_patients(ids, 10, seed=4) != chosen  # the seed decides
    assert stability_patients(ids, None, seed=3) == frozenset(ids)
    assert stability_patients(ids[:5], 10, seed=3) == frozenset(ids[:5])


def test_stability_uses_only_the_pool_and_at_most_max_patients(tmp_path: Path, fast_params: Path) -> None:
    cases = write_cases(tmp_path / "data", 4)
    ids = sorted(c.patient_id for c in cases)
    pool = ids[:3]  # ids[3] plays a test patient: never perturbed, never in the ICC
    stab_settings = StabilitySettings(n_perturbations=2, seed=5, max_patients=2)
    settings = RadiomicsSettings(params=str(fast_params), stability=stab_settings)
    result = extract_radiomics(cases, tmp_path / "a", settings, ParallelSettings(backend="serial"), stability_pool=pool)
    assert result.stability is not None and (result.stability["n_subjects"] == 2).all()
    perturbed = {
        f.parent.name for f in (tmp_path / "a" / "cache").rglob("*.json") if json.loads(f.read_text())["perturbed"]
    }
    assert perturbed == set(stability_patients(pool, 2, seed=5))
    assert ids[3] not in perturbed
    assert len(result.features) == 4  # every patient still has features
