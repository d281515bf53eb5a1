"""Slice images: window, slice selection, aspect-preserving resize, channel strategies, loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rccgrade.errors import PreprocessError
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import (
    build_slice_images,
    channel_plan,
    load_slices,
    resize_pad,
    select_slices,
    window,
)


def test_window_level_40_width_400() -> None:
    hu = np.array([-1000.0, -160.0, 40.0, 140.0, 240.0, 3000.0])
    np.testing.assert_allclose(window(hu, 40, 400), [0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    assert window(hu, 40, 400).dtype == np.float32


@pytest.mark.parametrize(
    ("method", "expected"),
    [("largest", [3]), ("topk", [2, 3]), ("area_fraction", [2, 3, 5])],
)
def test_select_slices(method: str, expected: list[int]) -> None:
    areas = np.array([0, 10, 60, 100, 40, 60, 0])
    # top-2: 100 at 3, then the tie of 60 at 2 and 5 goes to the lower index
    assert select_slices(areas, method, top_k=2, area_fraction=0.6) == expected


def test_select_slices_empty_mask_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        select_slices(np.zeros(5))


def test_resize_pad_preserves_aspect_and_zeroes_outside() -> None:
    img = np.ones((1, 10, 20), dtype=np.float32)
    keep = np.ones((10, 20), dtype=bool)
    keep[:, :10] = False
    out, kept = resize_pad(img, keep, 40)
    assert out.shape == (1, 40, 40)
    # 10×20 → 20×40, centred vertically: rows 10..29
    assert not out[0, :10].any() and not out[0, 30:].any()
    np.testing.assert_array_equal(out[0, 10:30, 20:], 1.0)
    np.testing.assert_array_equal(out[0, 10:30, :20], 0.0)
    assert kept.sum() == 20 * 20


def test_resize_pad_matches_naive_bilinear() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((1, 6, 6))
    out, _ = resize_pad(img, np.ones((6, 6), bool), 12)

    def naive(y: float, x: float) -> float:
        y = min(max(y, 0), 5)
        x = min(max(x, 0), 5)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        y1, x1 = min(y0 + 1, 5), min(x0 + 1, 5)
        fy, fx = y - y0, x - x0
        a = img[0]
        return (1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1]) + fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1])

    for i, j in [(0, 0), (3, 7), (11, 11), (5, 2)]:
        assert out[0, i, j] == pytest.approx(naive((i + 0.5) / 2 - 0.5, (j + 0.5) / 2 - 0.5), abs=1e-6)


def test_channel_plans() -> None:
    all3 = ["arterial", "nephrographic", "excretory"]
    assert channel_plan(all3, "repeat") == [(p, 0) for p in all3]
    assert channel_plan(["arterial"], "repeat") == [("arterial", 0)] * 3
    assert channel_plan(["arterial"], "adjacent") == [("arterial", -1), ("arterial", 0), ("arterial", 1)]
    assert channel_plan(["arterial", "excretory"], "repeat") == [
        ("arterial", 0),
        ("arterial", 0),
        ("excretory", 0),
    ]
    assert channel_plan(["nephrographic"], "repeat") == [("nephrographic", 0)] * 3
    with pytest.raises(ValueError):
        channel_plan([], "repeat")


def _volumes(nz: int = 5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    z, y, x = np.meshgrid(np.arange(nz), np.arange(40), np.arange(40), indexing="ij")
    tumour = ((y - 20) ** 2 / 64 + (x - 18) ** 2 / 100 <= 1) & (np.abs(z - 2) <= 1)
    tumour[1] &= (y[1] - 20) ** 2 / 16 + (x[1] - 18) ** 2 / 16 <= 1
    vols = {
        "arterial": np.where(tumour, 140.0, 40.0) + z * 10.0,
        "nephrographic": np.where(tumour, 100.0, 40.0),
        "excretory": np.where(tumour, 60.0, 40.0),
    }
    return vols, tumour


def test_build_slice_images_shapes_and_background() -> None:
    vols, tumour = _volumes()
    s = PreprocessSettings(image_size=32)
    out = build_slice_images(vols, tumour, (3.0, 1.0, 1.0), s)
    assert list(out.arrays) == ["box", "tumour", "dilated5mm"]
    assert out.slice_indices == [2]
    for arr in out.arrays.values():
        assert arr.shape == (1, 3, 32, 32) and arr.dtype == np.float32
        assert arr.min() >= 0 and arr.max() <= 1
    # tumour ROI: background zero outside; inside = windowed HU of each phase
    t = out.arrays["tumour"][0]
    keep = out.keep_masks["tumour"][0]
    assert not t[:, ~keep].any()
    np.testing.assert_allclose(t[:, 16, 16], window(np.array([160.0, 100.0, 60.0]), 40, 400), atol=1e-6)
    # the dilated ROI keeps more pixels than the tumour, in a wider crop (so the tumour looks smaller)
    assert out.tumour_masks["dilated5mm"][0].sum() < out.tumour_masks["tumour"][0].sum()


def test_single_phase_strategies_do_not_crash() -> None:
    vols, tumour = _volumes()
    only = {"arterial": vols["arterial"]}
    rep = build_slice_images(only, tumour, (3.0, 1.0, 1.0), PreprocessSettings(image_size=24))
    arr = rep.arrays["box"][0]
    np.testing.assert_array_equal(arr[0], arr[1])
    np.testing.assert_array_equal(arr[0], arr[2])
    adj = build_slice_images(
        only, tumour, (3.0, 1.0, 1.0), PreprocessSettings(image_size=24, missing_phases="adjacent")
    )
    a = adj.arrays["box"][0]
    assert adj.channels == "arterial[-1],arterial[+0],arterial[+1]"
    # arterial HU rise by 10 per slice: the three channels differ in that order
    assert a[0].mean() < a[1].mean() < a[2].mean()


def test_topk_selection_gives_k_slices() -> None:
    vols, tumour = _volumes()
    out = build_slice_images(
        vols, tumour, (3.0, 1.0, 1.0), PreprocessSettings(image_size=16, slice_selection="topk", top_k=2)
    )
    assert out.slice_indices == [2, 3]
    assert out.arrays["tumour"].shape == (2, 3, 16, 16)


def test_load_slices_reads_index_and_reports_missing(tmp_path: Path) -> None:
    with pytest.raises(PreprocessError, match="no slice index"):
        load_slices(tmp_path, "box")
    (tmp_path / "slices" / "box").mkdir(parents=True)
    arr = np.zeros((1, 3, 8, 8), np.float32)
    np.save(tmp_path / "slices" / "box" / "007.npy", arr)
    pd.DataFrame(
        [{"patient_id": "007", "roi": "box", "path": "slices/box/007.npy", "n_slices": 1, "slice_indices": "4"}]
    ).to_csv(tmp_path / "slices" / "index.csv", index=False)
    got = load_slices(tmp_path, "box")
    assert list(got) == ["007"]  # leading zeros kept
    with pytest.raises(PreprocessError, match="available"):
        load_slices(tmp_path, "dilated5mm")
