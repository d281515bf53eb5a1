"""The cheap parts of registration against naive references: block-average pyramid, bounding box and centroid
from projections, and the quality-control metric on crops (same value as on the whole images)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from rccgrade.preprocess.pyramid import axis_factors, build_levels
from rccgrade.preprocess.registration import _centroid, evaluate_metric, metric_region, qc_metrics, region_bbox
from rccgrade.preprocess.settings import RegistrationSettings

from .phantoms import misalign, phantom, rigid, tumour_centre


def test_axis_factors_keep_thick_slices() -> None:
    assert axis_factors((0.7, 0.7, 1.25), 2) == [2, 2, 1]
    assert axis_factors((0.7, 0.7, 1.25), 4) == [4, 4, 2]
    assert axis_factors((0.7, 0.7, 5.0), 4) == [4, 4, 1]
    assert axis_factors((1.0, 1.0, 1.0), 1) == [1, 1, 1]


def test_pyramid_level_is_the_block_mean() -> None:
    """Reference: numpy mean over 2×2×1 blocks, and the region resampled by nearest neighbour."""
    fixed, mask = phantom("arterial", size=(20, 18, 6), spacing=(0.7, 0.7, 1.25))
    region = metric_region(fixed, mask, 5.0)
    (level,) = build_levels(fixed, fixed, region, [2], [0.0])
    arr = sitk.GetArrayFromImage(fixed).astype(np.float64)
    blocks = arr.reshape(6, 9, 2, 10, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(sitk.GetArrayFromImage(level.fixed), blocks, rtol=1e-5, atol=1e-3)
    assert level.fixed.GetSpacing() == (1.4, 1.4, 1.25)
    # the block centre: half a fine voxel past the first fine voxel centre
    assert np.allclose(level.fixed.GetOrigin(), np.add(fixed.GetOrigin(), (0.35, 0.35, 0.0)))
    assert level.region.GetSize() == level.fixed.GetSize()
    # full resolution: the images themselves
    (full,) = build_levels(fixed, fixed, region, [1], [0.0])
    assert full.fixed is fixed and full.region is region


def test_bbox_and_centroid_match_label_statistics() -> None:
    _, mask = phantom("arterial", seed=3)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    bb = stats.GetBoundingBox(1)
    lo, hi = region_bbox(mask)  # type: ignore[misc]
    assert lo == list(bb[:3]) and hi == [bb[i] + bb[i + 3] - 1 for i in range(3)]
    np.testing.assert_allclose(_centroid(mask), stats.GetCentroid(1), atol=1e-9)
    assert region_bbox(sitk.Image(4, 4, 4, sitk.sitkUInt8)) is None


def test_qc_metric_on_crops_equals_the_metric_on_whole_images() -> None:
    """The crops drop no evaluated point or interpolation neighbour: same values as on the whole images."""
    fixed, mask = phantom("arterial", seed=1)
    moving, _ = phantom("nephrographic", seed=2)
    truth = rigid((2.0, -1.0, 1.5), (2.0, -3.0, 1.0), tumour_centre(mask))
    moving = misalign(moving, truth)
    settings = RegistrationSettings()
    fixed = sitk.Clamp(fixed, sitk.sitkFloat32, *settings.clip_hu)
    moving = sitk.Clamp(moving, sitk.sitkFloat32, *settings.clip_hu)
    region = metric_region(fixed, mask, 8.0)
    identity = sitk.Euler3DTransform()
    identity.SetCenter(tumour_centre(mask))
    whole = [evaluate_metric(fixed, moving, region, t, settings, settings.eval_offsets) for t in (identity, truth)]
    cropped = qc_metrics(fixed, moving, region, [identity, truth], settings)
    np.testing.assert_allclose(cropped, whole, rtol=1e-6)
    assert cropped[1] < cropped[0]  # the true transform scores better than identity
