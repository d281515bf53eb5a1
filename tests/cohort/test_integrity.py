"""Integrity rules (cohort.integrity, cohort.io.check_storage): files cut short, NaN voxels, zero-filled tails,
too few slices, implausible HU and clinical values — each with a negative control."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.integrity import (
    CheckOptions,
    check_case_clinical,
    check_case_images,
    nonfinite_problem,
    zero_tail_problem,
)
from rccgrade.cohort.io import check_storage, nifti_layout, read_image, read_mask
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case
from rccgrade.cohort.validate import validate_cohort
from rccgrade.errors import ImageError
from rccgrade.parallel import ParallelSettings

from .conftest import CaseWriter, make_ct, make_mask

SERIAL = ParallelSettings(backend="serial")


def _float_ct(seed: int = 0) -> sitk.Image:
    return sitk.Cast(make_ct(seed=seed), sitk.sitkFloat32)


def _with_array(ref: sitk.Image, arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


def _noise_ct(shape: tuple[int, int, int] = (12, 32, 32)) -> sitk.Image:
    """A CT whose gzip stream is long enough to cut in the middle of the voxel data."""
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 1000, size=shape).astype(np.int16)
    return sitk.GetImageFromArray(arr)


def _case(tmp_path: Path, arterial: sitk.Image, mask: sitk.Image | None = None, ext: str = ".mha") -> Case:
    a, m = tmp_path / f"a{ext}", tmp_path / f"m{ext}"
    sitk.WriteImage(arterial, str(a), useCompression=ext.endswith(".gz"))
    sitk.WriteImage(mask if mask is not None else make_mask(arterial), str(m), useCompression=ext.endswith(".gz"))
    return Case("p", {"arterial": a}, m, grade=2, high_grade=0)


def _cut(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# -- storage ----------------------------------------------------------------------------------------


def test_nifti_layout_agrees_with_nibabel(tmp_path: Path) -> None:
    """Independent reference: nibabel's reading of the same header."""
    nib = pytest.importorskip("nibabel")
    for dtype, ext in ((np.int16, ".nii"), (np.float32, ".nii.gz"), (np.uint8, ".nii")):
        path = tmp_path / f"x_{np.dtype(dtype).name}{ext}"
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 7, 9), dtype)), str(path))
        if ext.endswith(".gz"):
            with gzip.open(path) as fh:
                head = fh.read(540)
        else:
            head = path.read_bytes()[:540]
        offset, n_voxels, itemsize = nifti_layout(head)  # type: ignore[misc]
        loaded = nib.load(str(path))
        ref = loaded.header
        assert offset == int(loaded.dataobj.offset)
        assert n_voxels == int(np.prod(ref.get_data_shape()))
        assert itemsize == ref.get_data_dtype().itemsize
    assert nifti_layout(b"NRRD0004\n" + b"\0" * 600) is None


def test_complete_files_pass_the_storage_check(tmp_path: Path) -> None:
    img = _noise_ct()
    for name in ("a.nii.gz", "a.nii", "a.nrrd", "a.mha"):
        sitk.WriteImage(img, str(tmp_path / name), useCompression=name.endswith(".gz"))
        assert check_storage(tmp_path / name).ok, name
    # a gzip file of several members (as pigz or cat of two .gz produce) is complete too
    raw = (tmp_path / "a.nii").read_bytes()
    (tmp_path / "multi.nii.gz").write_bytes(gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]))
    found = check_storage(tmp_path / "multi.nii.gz")
    assert found.ok and found.stored_voxels == found.expected_voxels == 12 * 32 * 32


def test_truncated_gzip_and_nifti_are_caught_with_the_voxel_count(tmp_path: Path) -> None:
    img = _noise_ct()
    gz, raw = tmp_path / "a.nii.gz", tmp_path / "a.nii"
    sitk.WriteImage(img, str(gz), useCompression=True)
    sitk.WriteImage(img, str(raw))
    # control: ITK itself reads the cut file without complaint, zero-filling the rest (the reason for this check)
    _cut(gz)
    _cut(raw)
    silently = sitk.GetArrayFromImage(sitk.ReadImage(str(raw)))
    assert (silently == 0).sum() > silently.size // 3
    for path in (gz, raw):
        found = check_storage(path)
        assert not found.ok, path
        assert found.expected_voxels == 12 * 32 * 32 and 0 < found.stored_voxels < found.expected_voxels
        assert f"only {found.stored_voxels} of the {found.expected_voxels} voxels" in found.problem
    # a flipped byte in the CRC-32 trailer is corruption too
    sitk.WriteImage(img, str(gz), useCompression=True)
    data = bytearray(gz.read_bytes())
    data[-6] ^= 0xFF
    gz.write_bytes(bytes(data))
    assert "incorrect data check" in check_storage(gz).problem


def test_readers_refuse_a_truncated_nifti_naming_patient_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a.nii.gz"
    sitk.WriteImage(_noise_ct(), str(path), useCompression=True)
    _cut(path, 0.6)
    with pytest.raises(ImageError, match=r"cut short") as info:
        read_image(path, patient_id="P7")
    assert "patient P7" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(ImageError, match=r"mask is incomplete"):
        read_mask(path, patient_id="P7")


# -- image rules ------------------------------------------------------------------------------------


def test_truncated_image_and_mask_are_errors(tmp_path: Path) -> None:
    ct = _noise_ct()
    mask_arr = np.zeros((12, 32, 32), np.uint8)
    mask_arr[3:10, 8:24, 8:24] = 1
    case = _case(tmp_path, ct, _with_array(ct, mask_arr), ext=".nii.gz")
    assert [p.code for p in check_case_images(case) if p.severity == "error"] == []  # control: intact
    _cut(case.images["arterial"])
    problems = check_case_images(case)
    assert [p.code for p in problems] == ["truncated"]
    assert problems[0].file == str(case.images["arterial"]) and "voxels" in problems[0].message
    _cut(case.mask, 0.7)
    codes = {(p.code, Path(p.file).name) for p in check_case_images(case)}
    assert ("truncated", "m.nii.gz") in codes


def test_zero_filled_tail_is_caught_where_storage_cannot_tell(tmp_path: Path) -> None:
    ct = make_ct()
    arr = sitk.GetArrayFromImage(ct)
    arr[-2:] = 0  # what a reader leaves after a cut: the last slices exactly 0
    problems = check_case_images(_case(tmp_path, _with_array(ct, arr)))
    assert [p.code for p in problems] == ["truncated"]
    assert "2 slice(s) of exactly 0" in problems[0].message
    assert zero_tail_problem(sitk.GetArrayFromImage(ct)) is None  # control: a real CT
    soft = np.full((4, 8, 8), 40, np.int16)
    soft[-1] = 0
    assert zero_tail_problem(soft) is None  # no air anywhere: cannot tell, no claim


def test_all_nan_image_is_an_error_not_a_hu_verdict(tmp_path: Path) -> None:
    ct = _float_ct()
    nan = _with_array(ct, np.full(sitk.GetArrayViewFromImage(ct).shape, np.nan, np.float32))
    problems = check_case_images(_case(tmp_path, nan, make_mask(ct)))
    assert [p.code for p in problems] == ["nonfinite_voxels"]
    assert "no finite voxel" in problems[0].message and problems[0].severity == "error"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_inside_the_tumour_is_an_error(tmp_path: Path, value: float) -> None:
    ct = _float_ct()
    arr = sitk.GetArrayFromImage(ct)
    arr[4, 7, 7] = value  # inside the tumour block of make_mask
    problems = check_case_images(
        _case(tmp_path, _with_array(ct, arr), make_mask(ct)), CheckOptions(max_nonfinite_fraction=0.5)
    )
    assert [(p.code, p.severity) for p in problems] == [("nonfinite_voxels", "error")]
    assert "inside the tumour mask" in problems[0].message


def test_nonfinite_outside_the_tumour_follows_the_tolerance(tmp_path: Path) -> None:
    ct = _float_ct()
    arr = sitk.GetArrayFromImage(ct)
    arr[0, 0, 0] = np.nan  # air corner, outside the tumour
    case = _case(tmp_path, _with_array(ct, arr), make_mask(ct))
    assert [(p.code, p.severity) for p in check_case_images(case)] == [("nonfinite_voxels", "error")]
    tolerant = CheckOptions(max_nonfinite_fraction=0.01)
    assert [(p.code, p.severity) for p in check_case_images(case, tolerant)] == [("nonfinite_voxels", "warning")]
    assert nonfinite_problem(sitk.GetArrayFromImage(ct)) is None  # control: all finite
    assert nonfinite_problem(np.zeros((2, 2, 2), np.int16)) is None


def _slab_mask(ct: sitk.Image) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
    arr[:, 5:11, 5:11] = 1
    return _with_array(ct, arr)


def test_too_few_slices_is_not_3d(tmp_path: Path) -> None:
    thin = make_ct(size=(16, 16, 2))
    problems = check_case_images(_case(tmp_path, thin, _slab_mask(thin)))
    assert {p.code for p in problems} == {"not_3d"} and "at least 3" in problems[0].message
    assert check_case_images(_case(tmp_path, thin, _slab_mask(thin)), CheckOptions(min_slices=2)) == []
    one = make_ct(size=(16, 16, 1))
    problems = check_case_images(_case(tmp_path, one, _slab_mask(one)), CheckOptions(min_slices=2))
    assert {p.code for p in problems} == {"not_3d"} and "a single slice" in problems[0].message


def test_values_beyond_any_ct_scale_are_not_hu(tmp_path: Path) -> None:
    ct = _float_ct()
    arr = sitk.GetArrayFromImage(ct)
    arr[0, 0, 0] = 3e5
    problems = check_case_images(_case(tmp_path, _with_array(ct, arr), make_mask(ct)))
    assert [p.code for p in problems] == ["not_hu"] and "beyond" in problems[0].message


# -- clinical values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("age", 1e30, "clinical_out_of_range"),
        ("Age", 150.0, "clinical_out_of_range"),
        ("age", -1.0, "clinical_out_of_range"),
        ("age", float("inf"), "clinical_not_finite"),
        ("crp", float("-inf"), "clinical_not_finite"),
        ("crp", 1e30, "clinical_out_of_range"),  # no range for crp: the generic limit
        ("age", 64.0, None),
        ("crp", 250.0, None),
        ("age", float("nan"), None),  # missing: imputed, not an error
    ],
)
def test_clinical_rules(column: str, value: float, code: str | None) -> None:
    case = Case("P1", {}, Path(""), clinical={column: value}, row=5)
    problems = check_case_clinical(case, {column: "numeric"})
    if code is None:
        assert problems == []
    else:
        assert [(p.code, p.severity, p.row) for p in problems] == [(code, "error", 5)]
        assert f"'{column}'" in problems[0].message


def test_clinical_ranges_are_settings() -> None:
    case = Case("P1", {}, Path(""), clinical={"platelets": 9000.0, "age": 130.0})
    settings = CohortSettings(clinical_ranges={"platelets": (10, 1500), "age": (0, 140)})
    assert [
        p.message.split("'")[1] for p in check_case_clinical(case, {"platelets": "numeric", "age": "numeric"}, settings)
    ] == ["platelets"]
    assert check_case_clinical(case, {"platelets": "categorical", "age": "numeric"}, settings) == []
    with pytest.raises(ValueError, match="low <= high"):
        CohortSettings(clinical_ranges={"age": (120, 0)})


# -- validate, end to end ---------------------------------------------------------------------------


def _hostile_cohort(w: CaseWriter) -> dict[str, str]:
    """Good and broken cases; returns patient → the file the problem is in."""
    w.write("good", ext=".nii.gz")
    bad: dict[str, str] = {}
    row = w.write("truncated_gz", ext=".nii.gz", arterial=_noise_ct((8, 16, 16)))
    _cut(w.root / row["arterial"])
    bad["truncated_gz"] = row["arterial"]
    ct = _float_ct()
    row = w.write(
        "all_nan",
        ext=".nrrd",
        arterial=_with_array(ct, np.full(sitk.GetArrayViewFromImage(ct).shape, np.nan, np.float32)),
        mask=make_mask(ct),
    )
    bad["all_nan"] = row["arterial"]
    return bad


def test_validate_cli_rejects_truncated_and_all_nan(case_writer: CaseWriter, tmp_path: Path) -> None:
    bad = _hostile_cohort(case_writer)
    manifest = case_writer.manifest(age=[60, 61, 62])
    out = tmp_path / "v.csv"
    result = CliRunner().invoke(
        app, ["validate", str(manifest), "--out", str(out), "--workers", "1"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    squashed = re.sub(r"[\s│]", "", result.output)
    for pid, rel in bad.items():
        assert pid in result.output
        assert str(case_writer.root / rel) in squashed, pid
    report = validate_cohort(manifest, parallel=SERIAL)
    assert report.usable == ["good"]
    assert report.codes("truncated_gz") == {"truncated"}
    assert report.codes("all_nan") == {"nonfinite_voxels"}


def test_validate_reports_implausible_clinical_values(case_writer: CaseWriter) -> None:
    for pid in ("ok", "huge", "old"):
        case_writer.write(pid)
    manifest = case_writer.manifest(age=["60", "1e30", "150"])
    report = validate_cohort(manifest, parallel=SERIAL, settings=CohortSettings(clinical_types={"age": "numeric"}))
    assert report.usable == ["ok"]
    assert report.codes("huge") == {"clinical_out_of_range"} == report.codes("old")
