"""The Pillow QC montage: outline pixels against scipy's erosion, tiles with the red tumour outline."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rccgrade.preprocess.qc_montage import TILE, outline, tile


def test_outline_is_the_mask_minus_its_4_connected_erosion() -> None:
    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((40, 30)) > 0.4)
    ref = mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    np.testing.assert_array_equal(outline(mask), ref)


def test_tile_letterboxes_and_draws_the_outline_in_red() -> None:
    img = np.linspace(0, 1, 50 * 100).reshape(50, 100)
    tumour = np.zeros((50, 100), bool)
    tumour[10:30, 20:60] = True
    out = tile(img, tumour)
    assert out.shape == (TILE, TILE, 3) and out.dtype == np.uint8
    red = (out[..., 0] == 230) & (out[..., 1] == 20) & (out[..., 2] == 20)
    rows, cols = np.nonzero(red)
    # 100 px wide -> 160: scale 1.6; the 50-row image is centred (40 white rows above)
    assert rows.min() == 40 + 16 and rows.max() == 40 + 47
    assert cols.min() == 32 and cols.max() == 95
    assert (out[:40] == 255).all() and (out[-40:] == 255).all()
    rgb = tile(np.stack([img, img, img]), None)
    assert not ((rgb[..., 0] == 230) & (rgb[..., 1] == 20)).any()
