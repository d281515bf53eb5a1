"""Registration: recovers a known rigid misalignment, falls back to identity with a flag, is deterministic."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from rccgrade.preprocess.registration import metric_region, register_phase
from rccgrade.preprocess.settings import RegistrationSettings

from .phantoms import misalign, phantom, rigid, tumour_centre


def _mean_error(found: sitk.Transform, truth: sitk.Transform, mask: sitk.Image) -> float:
    """Mean distance (mm) between where the two transforms send the tumour's voxel centres."""
    pts = [
        mask.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]]) for p in np.argwhere(sitk.GetArrayFromImage(mask))
    ]
    return float(np.mean([np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))) for p in pts]))


def test_recovers_3mm_3deg_misalignment_to_below_one_voxel() -> None:
    fixed, mask = phantom("arterial", seed=1)
    moving, _ = phantom("nephrographic", seed=2)
    truth = rigid((1.0, -1.5, 3.0), (3.0, -2.0, 1.0), tumour_centre(mask))
    moving = misalign(moving, truth)
    settings = RegistrationSettings()
    region = metric_region(fixed, mask, settings.metric_margin_mm)
    res = register_phase(fixed, moving, region, settings, phase="nephrographic")
    assert res.status == "registered", res.message
    assert not res.flagged
    assert res.metric_after < res.metric_before
    before = _mean_error(sitk.Euler3DTransform(), truth, mask)
    after = _mean_error(res.kept_transform(), truth, mask)
    voxel = min(fixed.GetSpacing())
    assert before > 3.0
    assert after < voxel, (before, after)


def test_constant_moving_image_fails_to_identity_with_flag() -> None:
    fixed, mask = phantom("arterial")
    constant = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) + 40.0
    constant.CopyInformation(fixed)
    settings = RegistrationSettings()
    res = register_phase(fixed, constant, metric_region(fixed, mask, 20.0), settings, phase="excretory")
    assert res.flagged
    assert res.status == "failed"
    assert res.message
    kept = res.kept_transform()
    assert kept.TransformPoint((1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)


def _noise_like(fixed: sitk.Image, seed: int) -> sitk.Image:
    rng = np.random.default_rng(seed)
    noise = sitk.GetImageFromArray(rng.normal(0, 300, sitk.GetArrayFromImage(fixed).shape).astype(np.float32))
    noise.CopyInformation(fixed)
    return noise


def test_moved_but_not_improved_enough_falls_back_to_identity_with_flag() -> None:
    """Unrelated noise, 50% improvement required: the optimiser moves > 2 mm, the metric gains less → identity."""
    fixed, mask = phantom("arterial")
    settings = RegistrationSettings(iterations=30, min_improvement=0.5)
    res = register_phase(fixed, _noise_like(fixed, 1), metric_region(fixed, mask, 20.0), settings)
    assert res.status == "worsened" and res.flagged, res.message
    assert res.metric_after >= res.metric_before - 0.5 * abs(res.metric_before)
    assert res.max_displacement_mm > settings.unchanged_tolerance_mm
    assert any(abs(v) > 0.1 for v in res.parameters)  # the optimiser did move ...
    assert res.kept_transform().GetParameters() == (0.0,) * 6  # ... and the move was not kept


def test_unrelated_image_kept_only_with_a_better_metric() -> None:
    """Without a required improvement, a move on noise is kept exactly when it lowers the metric."""
    fixed, mask = phantom("arterial")
    # the metric on the image's own grid (eval_spacing_mm=0): this noise case was chosen on that grid, where
    # the optimiser's move lowers it; on the default 2 mm grid the same move is "unchanged" (< 2 mm, no better)
    settings = RegistrationSettings(iterations=30, eval_spacing_mm=0.0)
    res = register_phase(fixed, _noise_like(fixed, 0), metric_region(fixed, mask, 20.0), settings)
    assert res.status == "registered", res.message
    assert res.metric_after < res.metric_before
    assert res.kept_parameters == res.parameters
    assert res.kept_transform().GetParameters() == res.parameters


def test_aligned_phases_are_left_unchanged_without_flag() -> None:
    fixed, mask = phantom("arterial", seed=1)
    moving, _ = phantom("excretory", seed=2)
    res = register_phase(fixed, moving, metric_region(fixed, mask, 20.0), RegistrationSettings())
    assert not res.flagged
    assert _mean_error(res.kept_transform(), sitk.Euler3DTransform(), mask) < 0.5


def test_registration_is_bitwise_deterministic() -> None:
    fixed, mask = phantom("arterial", seed=4)
    moving, _ = phantom("nephrographic", seed=5)
    moving = misalign(moving, rigid((0, 0, 2.0), (2.0, 1.0, 0), tumour_centre(mask)))
    region = metric_region(fixed, mask, 20.0)
    a = register_phase(fixed, moving, region, RegistrationSettings())
    b = register_phase(fixed, moving, region, RegistrationSettings())
    assert a.parameters == b.parameters
    assert a.metric_after == b.metric_after


def test_affine_option_also_recovers_a_rigid_misalignment() -> None:
    fixed, mask = phantom("arterial", seed=1)
    moving, _ = phantom("excretory", seed=2)
    truth = rigid((0.0, 0.0, 2.0), (2.5, 1.0, -1.0), tumour_centre(mask))
    moving = misalign(moving, truth)
    settings = RegistrationSettings(transform="affine")
    res = register_phase(fixed, moving, metric_region(fixed, mask, 20.0), settings)
    assert res.status == "registered" and res.transform_type == "AffineTransform"
    assert len(res.parameters) == 12
    assert _mean_error(res.kept_transform(), truth, mask) < min(fixed.GetSpacing())


def test_geometry_initializer_also_recovers_the_misalignment() -> None:
    fixed, mask = phantom("arterial", seed=1)
    moving, _ = phantom("nephrographic", seed=2)
    truth = rigid((0.0, 1.0, -2.0), (-2.0, 2.0, 1.0), tumour_centre(mask))
    moving = misalign(moving, truth)
    res = register_phase(fixed, moving, metric_region(fixed, mask, 20.0), RegistrationSettings(initializer="geometry"))
    assert res.status == "registered", res.message
    assert _mean_error(res.kept_transform(), truth, mask) < min(fixed.GetSpacing())
