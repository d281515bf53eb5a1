"""Rendered cases: geometry, HU pattern per structure and phase, misalignment, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from rccgrade.synth import generate_case, transform_from_truth
from rccgrade.synth.generator import SynthCase
from rccgrade.synth.kinetics import Tissue

SEED = 11
INDICES = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def cases() -> list[SynthCase]:
    return [generate_case(i, SEED) for i in INDICES]


def _mean(image: np.ndarray, labels: np.ndarray, tissue: Tissue, erode: bool = True) -> float:
    region = labels == tissue
    if erode:
        eroded = ndimage.binary_erosion(region)
        region = eroded if eroded.sum() >= 5 else region
    assert region.sum() > 0, tissue.name
    return float(image[region].mean())


def _labels_in(case: SynthCase, phase: str) -> np.ndarray:
    """Label map moved into ``phase`` with the recorded misalignment (nearest neighbour)."""
    if phase == "arterial":
        return sitk.GetArrayFromImage(case.labels)
    tr = transform_from_truth(case.truth, phase)
    moved = sitk.Resample(case.labels, case.images[phase], tr.GetInverse(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(moved)


def test_geometry_small(cases: list[SynthCase]) -> None:
    for case in cases:
        for phase, img in case.images.items():
            assert img.GetSize() == (96, 96, 48), phase
            assert img.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
            assert img.GetSpacing() == case.mask.GetSpacing()
            assert img.GetOrigin() == case.mask.GetOrigin()
            assert img.GetPixelID() == sitk.sitkFloat32
        sx, sy, sz = case.mask.GetSpacing()
        assert 2.5 <= sx == sy <= 5.5 and 2.9 <= sz <= 7.0
        assert abs(case.mask.GetOrigin()[2]) > 100  # scanner-like table position
        m = case.mask_array()
        assert set(np.unique(m)) == {0, 1}
        # Mask touches neither the first nor the last slice: the tumour is fully imaged.
        assert m[0].sum() == 0 and m[-1].sum() == 0


def test_hu_pattern_per_structure_and_phase(cases: list[SynthCase]) -> None:
    for case in cases:
        hu = {}
        for phase in ("arterial", "nephrographic", "excretory"):
            labels = _labels_in(case, phase)
            img = case.array(phase)
            hu[phase] = {t: _mean(img, labels, t) for t in (Tissue.AORTA, Tissue.CORTEX, Tissue.MEDULLA, Tissue.FAT)}
            hu[phase][Tissue.TUMOUR] = _mean(img, labels, Tissue.TUMOUR, erode=False)
            hu[phase][Tissue.MUSCLE] = _mean(img, labels, Tissue.MUSCLE)
            hu[phase][Tissue.URINE] = _mean(img, labels, Tissue.URINE, erode=False)
        a, n, e = hu["arterial"], hu["nephrographic"], hu["excretory"]
        pid = case.patient_id
        assert a[Tissue.AORTA] > 200 and a[Tissue.AORTA] > n[Tissue.AORTA] + 60, pid  # bright aorta in arterial
        assert a[Tissue.CORTEX] > a[Tissue.MEDULLA] + 50, pid  # corticomedullary differentiation
        assert abs(n[Tissue.CORTEX] - n[Tissue.MEDULLA]) < 30, pid  # homogeneous nephrogram
        assert a[Tissue.TUMOUR] > n[Tissue.TUMOUR] > e[Tissue.TUMOUR] - 15, pid  # washout
        assert a[Tissue.TUMOUR] > a[Tissue.MUSCLE] + 20, pid  # hyperenhancing ccRCC
        assert e[Tissue.URINE] > 150 and e[Tissue.URINE] > a[Tissue.URINE] + 120, pid  # dense collecting system
        assert a[Tissue.URINE] < 80, pid
        for phase in hu.values():
            assert -130 < phase[Tissue.FAT] < -60, pid
            assert 30 < phase[Tissue.MUSCLE] < 100, pid


def test_misalignment_present_and_recorded(cases: list[SynthCase]) -> None:
    for case in cases:
        art_labels = sitk.GetArrayFromImage(case.labels)
        for phase in ("nephrographic", "excretory"):
            t = np.array([case.truth[f"{phase}_t{a}_mm"] for a in "xyz"])
            r = np.array([case.truth[f"{phase}_r{a}_deg"] for a in "xyz"])
            assert np.linalg.norm(t) > 0 and np.linalg.norm(r) > 0
            img = case.array(phase)
            bright = img > 450  # cortical bone (and dense urine in the excretory phase)
            bone_moved = np.isin(_labels_in(case, phase), (Tissue.BONE_CORTICAL,))
            bone_static = art_labels == Tissue.BONE_CORTICAL
            # The recorded transform explains the moving phase better than no transform.
            moved_score = (bright & bone_moved).sum() / bone_moved.sum()
            static_score = (bright & bone_static).sum() / bone_static.sum()
            # The opposite convention (transform instead of its inverse) must fit worse: pins the convention.
            tr = transform_from_truth(case.truth, phase)
            wrong = sitk.Resample(case.labels, case.images[phase], tr, sitk.sitkNearestNeighbor, 0)
            bone_wrong = sitk.GetArrayFromImage(wrong) == Tissue.BONE_CORTICAL
            wrong_score = (bright & bone_wrong).sum() / bone_wrong.sum()
            if case.truth[f"{phase}_tumour_shift_mm"] > 3.0:
                assert moved_score > static_score + 0.1, (case.patient_id, phase)
                assert moved_score > wrong_score + 0.1, (case.patient_id, phase)
            assert moved_score > 0.7, (case.patient_id, phase)


def test_truth_matches_image(cases: list[SynthCase]) -> None:
    for case in cases:
        m = case.mask_array().astype(bool)
        sx, sy, sz = case.mask.GetSpacing()
        vol_ml = m.sum() * sx * sy * sz / 1000
        assert vol_ml == pytest.approx(case.truth["tumour_volume_ml"])
        d_eq = case.truth["tumour_equiv_diameter_mm"]
        assert 0.6 * case.truth["diameter_mm"] < d_eq < 1.4 * case.truth["diameter_mm"]
        assert case.grade == case.truth["grade"] and case.high_grade == int(case.grade >= 3)
        assert case.truth["image_size"] == "small"


def test_deterministic_per_case() -> None:
    a = generate_case(5, 3)
    b = generate_case(5, 3)
    c = generate_case(5, 4)
    for phase in a.images:
        np.testing.assert_array_equal(a.array(phase), b.array(phase))
    np.testing.assert_array_equal(a.mask_array(), b.mask_array())
    assert a.truth == b.truth
    assert not np.array_equal(a.array("arterial").shape, c.array("arterial").shape) or not np.array_equal(
        a.array("arterial"), c.array("arterial")
    )


def test_bad_size_rejected() -> None:
    with pytest.raises(ValueError, match="unknown size"):
        generate_case(0, 0, size="huge")


def test_latent_factors_reach_the_image() -> None:
    """Image measurements (mask, HU, 6 mm shell) track their factors across 10 patients."""
    from scipy import stats

    rows = []
    for i in range(10):
        case = generate_case(i, 5)
        m = case.mask_array().astype(bool)
        art = case.array("arterial")
        labels = sitk.GetArrayFromImage(case.labels)
        sx, sy, sz = case.mask.GetSpacing()
        dist = ndimage.distance_transform_edt(~m, sampling=(sz, sy, sx))
        fat = np.isin(labels, (Tissue.FAT, Tissue.PERIRENAL_FAT, Tissue.SINUS_FAT))
        shell = (dist > 0) & (dist <= 6.0) & fat
        viable = labels == Tissue.TUMOUR
        rows.append(
            {
                "size": (case.truth["z_size"], m.sum()),
                "necrosis": (case.truth["z_necrosis"], (art[m] < 70).mean()),
                "enhancement": (case.truth["z_enhancement"], -art[viable].mean()),
                "peritumoural": (case.truth["z_peritumoural"], art[shell].mean()),
                "heterogeneity": (case.truth["z_heterogeneity"], art[viable].std()),
            }
        )
    minimum = {"size": 0.8, "necrosis": 0.8, "enhancement": 0.6, "peritumoural": 0.5, "heterogeneity": 0.4}
    for name, rho_min in minimum.items():
        z, feature = zip(*(r[name] for r in rows), strict=True)
        rho = stats.spearmanr(z, feature)[0]
        assert rho > rho_min, (name, rho)


@pytest.mark.parametrize("size", ["small", "realistic"])
def test_grid_ranges_without_rendering(size: str) -> None:
    from rccgrade.synth.generator import design_case

    for i in range(40):
        d = design_case(i, 9, size)
        nz, ny, nx = d.grid.shape_zyx
        sx, sy, sz = d.grid.spacing
        assert sx == sy
        if size == "small":
            assert (nz, ny, nx) == (48, 96, 96)
        else:
            assert 0.6 <= sx <= 0.95 and 256 <= nx == ny <= 512 and nx % 16 == 0
            assert 40 <= nz <= 100 and 0.99 <= sz <= 5.5
        # The field of view holds the body in-plane and the tumour along z.
        lo = [d.grid.origin[k] for k in range(3)]
        hi = [d.grid.origin[k] + d.grid.spacing[k] * (d.grid.shape_zyx[2 - k] - 1) for k in range(3)]
        bx, by = d.anatomy.body_center
        a, b = d.anatomy.body_semi
        assert lo[0] < bx - a and hi[0] > bx + a and lo[1] < by - b and hi[1] > by + b
        r = d.tumour.max_radius
        assert lo[2] < d.tumour.center[2] - r and hi[2] > d.tumour.center[2] + r
        assert 15.0 <= 2 * d.tumour.radius <= 120.0


def test_recorded_transform_is_what_registration_estimates(cases: list[SynthCase]) -> None:
    """An independent SimpleITK registration (fixed = arterial) recovers the recorded transform."""
    case = cases[0]
    fixed, moving = case.images["arterial"], case.images["excretory"]
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(0.2, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    init = sitk.Euler3DTransform()
    init.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    reg.SetInitialTransform(init, inPlace=False)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1, 0])
    estimate = reg.Execute(fixed, moving)
    truth = transform_from_truth(case.truth, "excretory")
    tumour = tuple(case.truth[f"tumour_center_{a}_mm"] for a in "xyz")
    error = np.linalg.norm(np.subtract(estimate.TransformPoint(tumour), truth.TransformPoint(tumour)))
    shift = np.linalg.norm(np.subtract(truth.TransformPoint(tumour), tumour))
    assert shift > 2.0
    assert error < 1.0
