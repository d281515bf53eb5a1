"""Every registered phase, peritumoural rings and kinetic features through :func:`extract_radiomics`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from rccgrade.errors import ConfigError
from rccgrade.preprocess.orientation import CANONICAL, to_canonical
from rccgrade.radiomics.extract import RadiomicsInput, extract_radiomics
from rccgrade.radiomics.regions import ring_masks
from rccgrade.radiomics.settings import RadiomicsSettings

PHASES = ("arterial", "nephrographic", "excretory")
TUMOUR_HU = {"arterial": 160.0, "nephrographic": 120.0, "excretory": 70.0}
SPACING = (0.9, 0.8, 2.0)

# No resampling: the first-order Mean of a region is then exactly the mean of its voxels.
PLAIN_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {c: None for c in ("shape", "firstorder", "glcm")},
    "setting": {"binWidth": 25, "label": 1},
}


def _write_three_phase(root: Path, n: int) -> list[RadiomicsInput]:
    """Cases whose tumour has a known HU level per phase plus texture, in soft tissue with air and bone."""
    out = []
    shape = (16, 30, 30)
    for i in range(n):
        rng = np.random.default_rng(i)
        z, y, x = np.indices(shape, dtype=float)
        r = np.sqrt(((x - 15) * SPACING[0]) ** 2 + ((y - 15) * SPACING[1]) ** 2 + ((z - 8) * SPACING[2]) ** 2)
        mask = (r <= 5.0 + i).astype(np.uint8)
        folder = root / f"P{i}"
        folder.mkdir(parents=True)
        images = {}
        for phase in PHASES:
            arr = rng.normal(40, 20, shape)
            arr[mask == 1] = TUMOUR_HU[phase] + rng.normal(0, 15 + 5 * i, int(mask.sum()))
            arr[:, :, :3] = -1000  # air
            arr[:, 26:, :] = 900  # bone
            img = sitk.GetImageFromArray(arr.astype(np.int16))
            img.SetSpacing(SPACING)
            sitk.WriteImage(img, str(folder / f"{phase}.nii.gz"))
            images[phase] = folder / f"{phase}.nii.gz"
        m = sitk.GetImageFromArray(mask)
        m.SetSpacing(SPACING)
        sitk.WriteImage(m, str(folder / "mask.nii.gz"))
        out.append(RadiomicsInput(f"P{i}", images, folder / "mask.nii.gz"))
    return out


def _arrays(case: RadiomicsInput, phase: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    img = to_canonical(sitk.ReadImage(str(case.images[phase])), CANONICAL)
    mask = to_canonical(sitk.ReadImage(str(case.mask)), CANONICAL)
    return sitk.GetArrayFromImage(img).astype(float), sitk.GetArrayFromImage(mask), img.GetSpacing()


@pytest.fixture()
def params_file(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(PLAIN_PARAMS))
    return path


def _settings(params: Path, **kw: object) -> RadiomicsSettings:
    base = {
        "params": str(params),
        "phases": list(PHASES),
        "rings_mm": [0.5, 5.0],
        "kinetic": {"enabled": True, "delta_features": ["original_glcm_Contrast", "original_firstorder_Entropy"]},
        "stability": {"enabled": False},
    }
    base.update(kw)
    return RadiomicsSettings.model_validate(base)


def test_every_phase_rings_and_kinetic_features(tmp_path: Path, params_file: Path) -> None:
    cases = _write_three_phase(tmp_path / "data", 3)
    res = extract_radiomics(cases, tmp_path / "out", _settings(params_file), parallel=None)
    t = res.features
    assert list(t.index) == ["P0", "P1", "P2"]
    for phase in PHASES:
        assert f"rad:{phase}:original_firstorder_Mean" in t.columns
        assert f"rad:{phase}@ring5mm:original_glcm_Contrast" in t.columns
        assert not any(c.startswith(f"rad:{phase}@ring5mm:original_shape_") for c in t.columns)
    assert not any("@ring0.5mm" in c for c in t.columns)
    for case in cases:
        pid = case.patient_id
        means = {}
        for phase in PHASES:
            image, mask, spacing = _arrays(case, phase)
            means[phase] = image[mask == 1].mean()
            # the ring's features describe the ring: its first-order mean is the mean of the ring's voxels
            (ring,) = ring_masks(mask, image, spacing, [5.0])
            col = f"rad:{phase}@ring5mm:original_firstorder_Mean"
            assert t.loc[pid, col] == pytest.approx(image[ring.mask == 1].mean(), rel=1e-9)
            assert t.loc[pid, f"rad:{phase}:original_firstorder_Mean"] == pytest.approx(means[phase], rel=1e-9)
        assert t.loc[pid, "kin:tumour_mean_nephrographic_minus_arterial"] == pytest.approx(
            means["nephrographic"] - means["arterial"], rel=1e-12
        )
        assert t.loc[pid, "kin:tumour_mean_excretory_minus_arterial"] == pytest.approx(
            means["excretory"] - means["arterial"], rel=1e-12
        )
        peak = max(means["arterial"], means["nephrographic"])
        assert t.loc[pid, "kin:tumour_mean_relative_washout"] == pytest.approx(
            (peak - means["excretory"]) / peak, rel=1e-12
        )
        assert t.loc[pid, "kin:original_glcm_Contrast_excretory_minus_nephrographic"] == pytest.approx(
            t.loc[pid, "rad:excretory:original_glcm_Contrast"] - t.loc[pid, "rad:nephrographic:original_glcm_Contrast"]
        )
    # the known per-phase levels come through: the tumour washes out by ≈ 90 HU
    assert t["kin:tumour_p50_excretory_minus_arterial"].between(-110, -70).all()
    # the 0.5 mm ring is thinner than every voxel: missing for each patient and phase, with the reason
    missing = res.regions_missing
    assert len(missing) == 3 * len(PHASES)
    assert set(missing["phase"]) == {f"{p}@ring0.5mm" for p in PHASES}
    assert missing["error"].str.contains("fewer than 10").all()
    assert (tmp_path / "out" / "regions_missing.csv").is_file()
    assert res.failures.empty


def test_ring_settings_change_recomputes_and_same_settings_reuse(tmp_path: Path, params_file: Path) -> None:
    cases = _write_three_phase(tmp_path / "data", 2)
    first = extract_radiomics(cases, tmp_path / "out", _settings(params_file, rings_mm=[5.0]), parallel=None)
    assert first.n_extracted == 6
    again = extract_radiomics(cases, tmp_path / "out", _settings(params_file, rings_mm=[5.0]), parallel=None)
    assert (again.n_extracted, again.n_cached) == (0, 6)
    other = extract_radiomics(cases, tmp_path / "out", _settings(params_file, rings_mm=[3.0]), parallel=None)
    assert other.n_extracted == 6
    assert "rad:arterial@ring3mm:original_firstorder_Mean" in other.features.columns
    # kinetic formulas are applied when assembling: changing them reuses every extracted item
    kin = _settings(params_file, rings_mm=[3.0])
    kin = kin.model_copy(update={"kinetic": kin.kinetic.model_copy(update={"washout_min_peak_hu": 500.0})})
    reused = extract_radiomics(cases, tmp_path / "out", kin, parallel=None)
    assert reused.n_extracted == 0
    washout = reused.features["kin:tumour_mean_washout"]
    assert reused.features["kin:tumour_mean_relative_washout"].to_list() == pytest.approx((washout / 500.0).to_list())


def test_delta_feature_not_extracted_is_a_config_error(tmp_path: Path, params_file: Path) -> None:
    cases = _write_three_phase(tmp_path / "data", 1)
    settings = _settings(
        params_file, kinetic={"enabled": True, "delta_features": ["original_glrlm_RunEntropy"]}, rings_mm=[]
    )
    with pytest.raises(ConfigError, match="original_glrlm_RunEntropy"):
        extract_radiomics(cases, tmp_path / "out", settings, parallel=None)


def test_kinetic_settings_validation() -> None:
    with pytest.raises(ValueError, match="at least two"):
        RadiomicsSettings.model_validate({"phases": ["arterial"], "kinetic": {"enabled": True}})
    with pytest.raises(ValueError, match="ring distances"):
        RadiomicsSettings.model_validate({"rings_mm": [0]})
    with pytest.raises(ValueError, match="twice"):
        RadiomicsSettings.model_validate({"rings_mm": [5, 5.0]})
    with pytest.raises(ValueError, match="low < high"):
        RadiomicsSettings.model_validate({"ring_hu_range": [300, -100]})
    assert RadiomicsSettings().rings_mm == [] and not RadiomicsSettings().kinetic.enabled


def test_methods_text_states_rings_and_kinetic_features() -> None:
    from rccgrade.config import config_from_dict
    from rccgrade.study.methods_text import methods_paragraphs

    plain = " ".join(methods_paragraphs(config_from_dict({})))
    assert "ring" not in plain and "kinetic" not in plain
    cfg = config_from_dict(
        {"radiomics": {"phases": list(PHASES), "rings_mm": [2, 7.5], "kinetic": {"enabled": True, "percentiles": [25]}}}
    )
    text = " ".join(methods_paragraphs(cfg))
    assert "arterial, nephrographic, excretory phase(s)" in text
    assert "rings out to 2, 7.5 mm" in text and "-100 to 300 HU" in text
    assert "tumour's mean, p25" in text and "change of 13 first-order and texture features" in text
