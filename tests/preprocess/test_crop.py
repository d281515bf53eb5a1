"""The working-region crop: exact against whole-image processing, and its coverage check.

Planted bugs these tests catch: ``covers`` always True (a large translation then samples outside the crop);
a crop box one margin too small or a lost origin shift (registered crop no longer equals the same block of
the whole-image output; slice images differ); slice indices counted from the crop instead of the whole image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.cohort.types import Case, Cohort
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess import PreprocessSettings, run_preprocess
from rccgrade.preprocess.crop import covers, crop, crop_moving, work_box, work_margin_mm
from rccgrade.preprocess.paths import registered_paths
from rccgrade.preprocess.registration import _evaluation_grid
from rccgrade.preprocess.slices import load_slices

from .phantoms import misalign, phantom, rigid, tumour_centre


def _ramp(size=(60, 50, 40), spacing=(1.0, 1.2, 2.0)) -> sitk.Image:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in size[::-1]), indexing="ij")
    img = sitk.GetImageFromArray(np.sin(x / 3.0) * 100 + y * 2.0 + np.cos(z / 2.0) * 50)
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 5.0, 3.0))
    return img


def test_covers_and_exact_resampling_from_the_crop() -> None:
    whole = _ramp()
    reference = crop(whole, ([20, 15, 12], [40, 35, 28]))
    moving = crop_moving(whole, reference, reach_mm=6.0)
    assert moving.image.GetSize() < whole.GetSize()

    def resample(src: sitk.Image, tx: sitk.Transform) -> np.ndarray:
        out = sitk.Resample(src, reference, tx, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    near = sitk.Euler3DTransform()
    near.SetTranslation((3.7, -4.1, 2.9))
    near.SetRotation(0.02, -0.01, 0.03)
    assert covers(moving, reference, near)
    np.testing.assert_array_equal(resample(moving.image, near), resample(whole, near))

    far = sitk.TranslationTransform(3, (9.0, 0.0, 0.0))
    assert not covers(moving, reference, far)
    assert not np.array_equal(resample(moving.image, far), resample(whole, far))


def test_crop_reaching_the_image_edge_still_covers() -> None:
    whole = _ramp()
    reference = crop(whole, ([0, 0, 0], [10, 10, 6]))  # at the image's corner: nothing lies beyond
    moving = crop_moving(whole, reference, reach_mm=2.0)
    assert moving.start == (0, 0, 0)
    assert covers(moving, reference, sitk.TranslationTransform(3, (-5.0, -5.0, -5.0)))


def test_work_box_holds_every_margin() -> None:
    _, mask = phantom("arterial", size=(120, 120, 40), spacing=(1.0, 1.0, 2.0))
    settings = PreprocessSettings(output_margin_mm=10.0, registration={"metric_margin_mm": 5.0})
    margin = work_margin_mm(settings)
    assert margin == 37.0  # the ROI/QC context (dilated5mm: 5 + 30 + 2 mm) is the largest need here
    start, stop = work_box(mask, settings)
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)[:, ::-1]
    for i, sp in enumerate(mask.GetSpacing()):
        assert start[i] == max(0, idx[:, i].min() - int(np.ceil(margin / sp)) - 2)
        assert stop[i] == min(mask.GetSize()[i], idx[:, i].max() + 1 + int(np.ceil(margin / sp)) + 2)
    assert work_box(mask, PreprocessSettings(output_margin_mm=None)) is None


def test_evaluation_grid_spans_the_image() -> None:
    img = _ramp(spacing=(0.7, 0.7, 3.0))
    spacing, size = _evaluation_grid(img, 2.0)
    assert spacing == (2.0, 2.0, 3.0)
    for i in range(3):
        extent = (img.GetSize()[i] - 1) * img.GetSpacing()[i]
        assert extent - spacing[i] < (size[i] - 1) * spacing[i] <= extent + 1e-9
    assert _evaluation_grid(img, 0.0) == (img.GetSpacing(), img.GetSize())


def _big_case(root: Path) -> Case:
    folder = root / "big"
    folder.mkdir(parents=True)
    images = {}
    for i, phase in enumerate(("arterial", "nephrographic")):
        img, mask = phantom(phase, size=(120, 120, 50), spacing=(1.0, 1.0, 2.0), seed=i)
        if phase == "nephrographic":
            img = misalign(img, rigid((0.0, 0.0, 2.0), (2.0, -1.5, 1.0), tumour_centre(mask)))
        images[phase] = folder / f"{phase}.nii.gz"
        sitk.WriteImage(img, str(images[phase]))
        if phase == "arterial":
            sitk.WriteImage(mask, str(folder / "mask.nii.gz"))
    return Case(patient_id="big", images=images, mask=folder / "mask.nii.gz", mask_phase="arterial", grade=2)


def test_cropped_run_equals_whole_image_run(tmp_path: Path) -> None:
    case = _big_case(tmp_path / "data")
    cohort = Cohort(cases=[case], root=tmp_path / "data")
    serial = ParallelSettings(backend="serial")
    common = {"registration": {"metric_margin_mm": 5.0}, "rois": ["box", "tumour"], "qc": False}
    cropped = run_preprocess(cohort, tmp_path / "cropped", PreprocessSettings(output_margin_mm=10.0, **common), serial)
    whole = run_preprocess(cohort, tmp_path / "whole", PreprocessSettings(output_margin_mm=None, **common), serial)
    assert cropped.ok_ids == whole.ok_ids == ["big"]
    reg_mask = sitk.ReadImage(str(registered_paths(tmp_path / "cropped", "big")["mask"]))
    assert reg_mask.GetOrigin()[2] > -50.0 + 1.0  # cropped through-plane too (slice indices must be shifted back)

    a, b = registered_paths(tmp_path / "cropped", "big"), registered_paths(tmp_path / "whole", "big")
    for key in ("arterial", "nephrographic", "mask"):
        small, full = sitk.ReadImage(str(a[key])), sitk.ReadImage(str(b[key]))
        assert np.prod(small.GetSize()) < 0.7 * np.prod(full.GetSize())
        np.testing.assert_allclose(small.GetSpacing(), full.GetSpacing())
        start = full.TransformPhysicalPointToIndex(small.GetOrigin())
        block = crop(full, (list(start), [s + n for s, n in zip(start, small.GetSize(), strict=True)]))
        np.testing.assert_allclose(small.GetOrigin(), block.GetOrigin(), atol=1e-4)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(small), sitk.GetArrayFromImage(block))

    ra, rb = cropped.registration, whole.registration
    assert list(ra["status"]) == list(rb["status"]) == ["registered"]
    pa = np.array([float(v) for v in ra["parameters"].iloc[0].split(";")])
    pb = np.array([float(v) for v in rb["parameters"].iloc[0].split(";")])
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    pd.testing.assert_frame_equal(
        cropped.index.drop(columns=["path"]).reset_index(drop=True),
        whole.index.drop(columns=["path"]).reset_index(drop=True),
    )
    for roi in ("box", "tumour"):
        np.testing.assert_allclose(
            load_slices(tmp_path / "cropped", roi)["big"], load_slices(tmp_path / "whole", roi)["big"], atol=1e-6
        )
