"""Contract of preprocess.roi beyond the brute-force dilation tests (kills ``make mutation`` survivors).

Margins of at most 1 mm still dilate, mismatched spacings fail loudly, kept-pixel masks are boolean and
exactly the shape of their crop, and every axis of a box is grown independently.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from rccgrade.preprocess.roi import bounding_box, dilate_mm, grow_box, roi_crop, roi_volume
from rccgrade.preprocess.settings import parse_roi


def test_sub_millimetre_and_one_millimetre_margins_dilate() -> None:
    mask = np.zeros((7, 9, 9), dtype=bool)
    mask[3, 4, 4] = True
    grown = dilate_mm(mask, (0.5, 0.5, 0.5), 1.0)  # 2 voxels along each axis
    assert grown.sum() > 1 and grown[3, 4, 6] and grown[3, 4, 2] and grown[1, 4, 4] and not grown[3, 4, 7]
    half = dilate_mm(mask, (0.5, 0.5, 0.5), 0.5)
    assert half.sum() == 7  # the voxel and its 6 face neighbours
    same = dilate_mm(mask, (1.0, 1.0, 1.0), 0.0)
    np.testing.assert_array_equal(same, mask)
    assert same is not mask


def test_mismatched_spacing_fails_with_the_shapes_named() -> None:
    mask = np.zeros((4, 5, 5), dtype=bool)
    mask[2, 2, 2] = True
    with pytest.raises(ValueError, match=re.escape("spacing (1.0, 1.0) does not match a 3-D mask")):
        dilate_mm(mask, (1.0, 1.0), 2.0)
    with pytest.raises(ValueError):
        grow_box(((1, 1), (3, 3)), (1.0,), 2.0, (10, 10))  # one spacing for a 2-D box
    with pytest.raises(ValueError):
        grow_box(((1, 1), (3, 3)), (1.0, 1.0), 2.0, (10,))  # one extent for a 2-D box


def test_kept_pixel_masks_are_boolean_and_match_their_crop() -> None:
    tumour = np.zeros((20, 30), dtype=bool)
    tumour[5:9, 12:20] = True
    for name in ("box", "box2mm", "tumour", "dilated3mm"):
        spec = parse_roi(name)
        roi2d = roi_volume(tumour[None], (1.0, 1.0, 1.0), spec)[0]
        assert roi2d.dtype == bool
        crop, keep = roi_crop(tumour, roi2d, (1.0, 1.0), spec)
        assert keep.dtype == bool, name
        assert keep.shape == (crop[0].stop - crop[0].start, crop[1].stop - crop[1].start), name
    crop, keep = roi_crop(tumour, tumour, (1.0, 1.0), parse_roi("box2mm"))
    assert (crop[0].start, crop[0].stop, crop[1].start, crop[1].stop) == (3, 11, 10, 22)
    assert keep.shape == (8, 12) and keep.all()
    assert bounding_box(tumour) == ((5, 12), (9, 20))
    with pytest.raises(ValueError, match=r"^empty mask has no bounding box$"):
        bounding_box(np.zeros((3, 3), dtype=bool))
