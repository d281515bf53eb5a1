"""The dilated-ROI images written by the preprocessing stage extend exactly N mm in physical space (issue 18).

An anisotropic phantom (0.7 × 0.7 mm pixels, 5 mm slices) with a box tumour of known size goes through
``run_preprocess``; the ``dilated7mm`` slice images it writes are compared with a brute-force 3-D
Euclidean dilation written here (distance from each pixel centre to the nearest tumour voxel centre, in
mm, using the spacing). 7 mm is 10 pixels in-plane and reaches the neighbouring slice (5 mm away) with a
radius of √(7² − 5²) ≈ 4.9 mm = 6 pixels, so a spacing passed in the wrong axis order (x ↔ z) changes
every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.types import Case, Cohort
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess import PreprocessSettings, load_slices, run_preprocess
from rccgrade.preprocess.settings import RegistrationSettings

SPACING_XYZ = (0.7, 0.7, 5.0)
MARGIN_MM = 7.0
NX, NY, NZ = 96, 96, 9
HU_BODY, HU_TUMOUR = 60.0, 150.0
# tumour: a 20 × 16 pixel box (14 × 11.2 mm) on slices 3 and 4, a 4 × 4 box centred on it on slice 5
BIG = (slice(38, 58), slice(40, 56))
SMALL = (slice(46, 50), slice(46, 50))


def _phantom(tmp_path: Path) -> tuple[Case, np.ndarray]:
    mask = np.zeros((NZ, NY, NX), dtype=np.uint8)
    mask[3][BIG] = 1
    mask[4][BIG] = 1
    mask[5][SMALL] = 1
    hu = np.where(mask > 0, HU_TUMOUR, HU_BODY).astype(np.float32)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin((-33.6, -33.6, -22.5))
    m = sitk.GetImageFromArray(mask)
    m.CopyInformation(img)
    folder = tmp_path / "data" / "aniso"
    folder.mkdir(parents=True)
    sitk.WriteImage(img, str(folder / "arterial.nii.gz"))
    sitk.WriteImage(m, str(folder / "mask.nii.gz"))
    case = Case(
        patient_id="aniso",
        images={"arterial": folder / "arterial.nii.gz"},
        mask=folder / "mask.nii.gz",
        mask_phase="arterial",
        grade=2,
        high_grade=0,
    )
    return case, mask.astype(bool)


def _brute_force_dilation(mask: np.ndarray, z: int) -> np.ndarray:
    """Pixels of slice ``z`` within MARGIN_MM (Euclidean, physical) of any tumour voxel centre."""
    sx, sy, sz = SPACING_XYZ
    tz, ty, tx = np.nonzero(mask)
    yy, xx = np.mgrid[:NY, :NX]
    best = np.full((NY, NX), np.inf)
    for a, b, c in zip(tz, ty, tx, strict=True):
        d2 = ((z - a) * sz) ** 2 + ((yy - b) * sy) ** 2 + ((xx - c) * sx) ** 2
        np.minimum(best, d2, out=best)
    return best <= MARGIN_MM**2 + 1e-9


def _extent(region: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def test_dilated_roi_from_the_pipeline_extends_exactly_n_mm(tmp_path: Path) -> None:
    case, mask = _phantom(tmp_path)
    settings = PreprocessSettings(
        rois=[f"dilated{MARGIN_MM:g}mm"],
        inplane_spacing_mm=0.7,  # keep the grid: the output pixels are the input pixels
        image_size=40,  # = the dilated crop's longer side on the big slices: no resize there
        slice_selection="area_fraction",
        area_fraction=0.01,  # every tumour slice
        crop_margin_mm=0.0,
        qc=False,
        registration=RegistrationSettings(enabled=False),
    )
    res = run_preprocess(Cohort(cases=[case]), tmp_path / "out", settings, ParallelSettings(backend="serial"))
    assert res.ok_ids == ["aniso"]
    arr = load_slices(tmp_path / "out", "dilated7mm")["aniso"]
    assert arr.shape == (3, 3, 40, 40)  # slices 3, 4, 5
    window_lo = settings.window_level - settings.window_width / 2
    tumour_value = (HU_TUMOUR - window_lo) / settings.window_width
    px = SPACING_XYZ[0]

    for k, z in enumerate((3, 4)):
        image = arr[k, 0]
        kept = image > 0
        expected = _brute_force_dilation(mask, z)
        (r0, r1), (c0, c1) = _extent(expected)
        assert (r1 - r0, c1 - c0) == (40, 36)
        # the crop is the dilated region's bounding box, centred in the 40 × 40 output without scaling
        np.testing.assert_array_equal(kept[:, 2:38], expected[r0:r1, c0:c1], err_msg=f"slice {z}")
        assert not kept[:, :2].any() and not kept[:, 38:].any()
        # and in millimetres: N mm beyond the tumour on each of the four in-plane sides
        (tr0, tr1), (tc0, tc1) = _extent(np.isclose(image, tumour_value, atol=1e-4))
        (kr0, kr1), (kc0, kc1) = _extent(kept)
        assert ((tr1 - tr0), (tc1 - tc0)) == (20, 16)  # the tumour itself: 14 × 11.2 mm
        for side_px in (tr0 - kr0, kr1 - tr1, tc0 - kc0, kc1 - tc1):
            assert abs(side_px * px - MARGIN_MM) < 1e-9, (z, side_px)

    # slice 5: a 4 × 4 tumour; the big footprint 5 mm away reaches it with √(7² − 5²) mm = 6 pixels
    expected = _brute_force_dilation(mask, 5)
    (r0, r1), (c0, c1) = _extent(expected)
    assert (r1 - r0, c1 - c0) == (20 + 2 * 6, 16 + 2 * 6)
    kept = arr[2, 0] > 0
    (kr0, kr1), (kc0, kc1) = _extent(kept)
    scale = 40 / max(r1 - r0, c1 - c0)  # the longer side is resized to the output size
    assert (kr1 - kr0, kc1 - kc0) == (round((r1 - r0) * scale), round((c1 - c0) * scale))
