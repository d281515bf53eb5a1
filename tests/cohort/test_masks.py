"""DICOM-SEG, RTSTRUCT and Slicer .seg.nrrd masks read back onto the CT grid they were drawn on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from rccgrade.cohort import masks
from rccgrade.cohort.dicom import write_dicom_series
from rccgrade.cohort.io import read_dicom_series, read_mask
from rccgrade.errors import ImageError


def _rotation(ax: float, az: float) -> np.ndarray:
    a, b = np.radians(ax), np.radians(az)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def _ct(size=(24, 20, 12), spacing=(1.5, 1.2, 2.5), origin=(-20.0, -15.0, -14.0), rot=(15.0, 25.0)) -> sitk.Image:
    img = sitk.Image(list(size), sitk.sitkInt16)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(tuple(_rotation(*rot).ravel()))
    arr = np.full(size[::-1], 40, dtype=np.int16)
    arr[:, :, :3] = -1000
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def _centres(img: sitk.Image) -> np.ndarray:
    """Physical centre of every voxel, array (z, y, x, 3)."""
    size = img.GetSize()
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(float)
    m = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    return idx @ m.T + np.asarray(img.GetOrigin())


def _sphere(img: sitk.Image, centre: np.ndarray, radius: float) -> np.ndarray:
    return (np.linalg.norm(_centres(img) - centre, axis=-1) <= radius).astype(np.uint8)


def _centre_of(img: sitk.Image) -> np.ndarray:
    size = np.asarray(img.GetSize(), dtype=float)
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2 + 0.3)))


@pytest.fixture
def ct_series(tmp_path: Path) -> tuple[Path, sitk.Image]:
    folder = write_dicom_series(_ct(), tmp_path / "ct" / "arterial", patient_id="PX", series_description="arterial")
    return folder, read_dicom_series(folder, patient_id="PX")


def _write_seg(ct_folder: Path, labels: np.ndarray, out: Path, names: list[str]) -> Path:
    """A DICOM-SEG made with highdicom from the CT files and a (z, y, x) label array (1..n = names)."""
    import highdicom as hd

    sources = sorted((pydicom.dcmread(p) for p in ct_folder.iterdir()), key=lambda d: int(d.InstanceNumber))
    for ds in sources:  # type-2 study/patient attributes a SEG copies from its source (empty is allowed)
        for name in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber", "StudyID"):
            setattr(ds, name, getattr(ds, name, ""))
        ds.PatientName = "PX^"
        ds.ReferringPhysicianName = getattr(ds, "ReferringPhysicianName", "")
    category = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=name,
            segmented_property_category=category,
            segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, name in enumerate(names)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=90,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


def _write_rtstruct(ct: sitk.Image, ct_folder: Path, rois: dict[str, list[np.ndarray]], out: Path) -> Path:
    """An RTSTRUCT written with pydicom: ROI name → closed planar contours (n, 3) in LPS mm."""
    first = pydicom.dcmread(next(iter(sorted(ct_folder.iterdir()))), stop_before_pixels=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = masks.RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = masks.RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID = first.PatientID
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi_seq, contour_seq = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        roi_seq.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        items = []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.4f}" for v in pts.ravel()]
            items.append(c)
        rc.ContourSequence = Sequence(items)
        contour_seq.append(rc)
    ds.StructureSetROISequence = Sequence(roi_seq)
    ds.ROIContourSequence = Sequence(contour_seq)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def _sphere_contours(ct: sitk.Image, centre: np.ndarray, radius: float, n: int = 90) -> list[np.ndarray]:
    """Circles where the sphere cuts each slice plane of ``ct`` (points in LPS mm)."""
    d = np.asarray(ct.GetDirection()).reshape(3, 3)
    u, v, normal = d[:, 0], d[:, 1], d[:, 2]
    out = []
    for k in range(ct.GetSize()[2]):
        p = np.asarray(ct.TransformIndexToPhysicalPoint((0, 0, k)))
        dist = float((centre - p) @ normal)
        if abs(dist) >= radius:
            continue
        r = np.sqrt(radius**2 - dist**2)
        c = centre - dist * normal
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        out.append(c + r * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v))
    return out


def _image_like(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(like)
    return img


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float(np.sum(a & b)) / float(np.sum(a) + np.sum(b))


def test_dicom_seg_on_an_oblique_series_reads_back_exactly(tmp_path: Path, ct_series) -> None:
    folder, ct = ct_series
    tumour = _sphere(ct, _centre_of(ct), 7.0)
    kidney = np.zeros_like(tumour)
    kidney[2:5, 3:9, 4:10] = 1
    kidney[tumour == 1] = 0
    seg = _write_seg(folder, kidney + 2 * tumour, tmp_path / "seg" / "mask.dcm", ["Kidney", "Tumor"])
    assert masks.mask_kind(seg) == "seg"
    got = read_mask(seg, segment="tumour", reference=ct, patient_id="PX")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), tumour)
    assert got.GetDirection() == ct.GetDirection() and got.GetOrigin() == ct.GetOrigin()
    # a reoriented reference (as preprocessing's canonical orientation makes) receives the same voxels
    flipped = sitk.Flip(ct, [True, False, True])
    on_flipped = read_mask(seg, segment="tumor", reference=flipped, patient_id="PX")
    expected = sitk.GetArrayFromImage(sitk.Flip(_image_like(tumour, ct), [True, False, True]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_flipped), expected)
    by_number = read_mask(seg, label=1, reference=ct, patient_id="PX")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_number), kidney)
    # without a reference: the SEG's own grid (empty frames omitted) still puts every voxel in place
    native = read_mask(seg, segment="Tumor", patient_id="PX")
    back = sitk.Resample(native, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), tumour)
    with pytest.raises(ImageError, match=r"segments present: 1 'Kidney', 2 'Tumor'") as info:
        read_mask(seg, segment="liver", reference=ct, patient_id="PX")
    assert "PX" in str(info.value) and "mask.dcm" in str(info.value)
    with pytest.raises(ImageError, match="several segments"):
        read_mask(seg, reference=ct, patient_id="PX")


def test_dicom_seg_drawn_on_another_phase_lands_on_that_phase_grid(tmp_path: Path) -> None:
    """A SEG of the nephrographic series (other grid) read with the nephrographic image as reference."""
    neph_img = _ct(size=(20, 18, 10), spacing=(1.2, 1.2, 3.0), origin=(-12.0, -10.0, -9.0), rot=(5.0, -10.0))
    neph_folder = write_dicom_series(neph_img, tmp_path / "neph", patient_id="PX", series_description="neph")
    neph = read_dicom_series(neph_folder)
    tumour = _sphere(neph, _centre_of(neph), 6.0)
    seg = _write_seg(neph_folder, tumour, tmp_path / "seg.dcm", ["Tumor"])
    got = read_mask(seg, reference=neph)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), tumour)
    far = _ct(origin=(400.0, 400.0, 400.0))
    with pytest.raises(ImageError, match="does not overlap"):
        read_mask(seg, reference=far, patient_id="PX")


def test_rtstruct_sphere_rasterises_onto_an_oblique_grid(tmp_path: Path, ct_series) -> None:
    folder, ct = ct_series
    centre, radius = _centre_of(ct), 8.0
    known = _sphere(ct, centre, radius)
    box = [np.array([[-5.0, -5.0, z], [5.0, -5.0, z], [5.0, 5.0, z], [-5.0, 5.0, z]]) for z in (0.0,)]
    rs = _write_rtstruct(
        ct,
        folder,
        {"Kidney L": box, "TUMOR": _sphere_contours(ct, centre, radius)},
        tmp_path / "ct" / "rtstruct" / "rs.dcm",
    )
    got = read_mask(rs, segment="Tumour", reference=ct, patient_id="PX")
    arr = sitk.GetArrayFromImage(got).astype(bool)
    assert _dice(arr, known.astype(bool)) >= 0.98
    assert got.GetDirection() == ct.GetDirection()
    # no reference given: the CT series is found beside the RTSTRUCT by its SeriesInstanceUID
    found = read_mask(rs, segment="tumor", patient_id="PX")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(found), sitk.GetArrayFromImage(got))
    # a contour that is not in a slice plane of this grid (the box is axial, the series oblique)
    with pytest.raises(ImageError, match="not in a slice plane"):
        read_mask(rs, segment="kidney l", reference=ct, patient_id="PX")
    with pytest.raises(ImageError, match=r"segments present: 1 'Kidney L', 2 'TUMOR'"):
        read_mask(rs, segment="GTV", reference=ct, patient_id="PX")


def test_rtstruct_hole_stays_empty(tmp_path: Path) -> None:
    ct = _ct(rot=(0.0, 0.0))
    folder = write_dicom_series(ct, tmp_path / "ct", patient_id="PX", series_description="a")
    ct = read_dicom_series(folder)
    p = np.asarray(ct.TransformIndexToPhysicalPoint((0, 0, 5)))

    def square(lo: float, hi: float) -> np.ndarray:  # in voxel units of x/y around slice 5
        return np.array([p + np.array([a * 1.5, b * 1.2, 0.0]) for a, b in ((lo, lo), (hi, lo), (hi, hi), (lo, hi))])

    rs = _write_rtstruct(ct, folder, {"ring": [square(2.5, 12.5), square(5.5, 9.5)]}, tmp_path / "rs.dcm")
    arr = sitk.GetArrayFromImage(read_mask(rs, reference=ct))
    expected = np.zeros_like(arr)
    expected[5, 3:13, 3:13] = 1
    expected[5, 6:10, 6:10] = 0
    np.testing.assert_array_equal(arr, expected)


def test_slicer_seg_nrrd_segment_by_name(tmp_path: Path) -> None:
    ct = _ct()
    labels = np.zeros(ct.GetSize()[::-1], dtype=np.uint8)
    labels[2:6, 4:9, 5:12] = 1
    labels[6:9, 10:14, 8:15] = 3
    img = sitk.GetImageFromArray(labels)
    img.CopyInformation(ct)
    for n, (name, value) in enumerate([("Kidney", 1), ("Tumour", 3)]):
        img.SetMetaData(f"Segment{n}_Name", name)
        img.SetMetaData(f"Segment{n}_LabelValue", str(value))
        img.SetMetaData(f"Segment{n}_Layer", "0")
    path = tmp_path / "case.seg.nrrd"
    sitk.WriteImage(img, str(path), True)
    got = read_mask(path, segment="TUMOR", reference=ct, patient_id="PX")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), (labels == 3).astype(np.uint8))
    assert masks.mask_kind(path) == "slicer"
    with pytest.raises(ImageError, match=r"1 'Kidney', 3 'Tumour'"):
        read_mask(path, segment="lesion", patient_id="PX")


def test_segment_name_on_a_plain_label_image_is_refused(tmp_path: Path) -> None:
    ct = _ct()
    path = tmp_path / "m.nii.gz"
    m = sitk.GetImageFromArray(np.ones(ct.GetSize()[::-1], dtype=np.uint8))
    m.CopyInformation(ct)
    sitk.WriteImage(m, str(path))
    assert masks.mask_kind(path) is None
    with pytest.raises(ImageError, match="plain label image"):
        read_mask(path, segment="tumor")


def test_grid_alignment() -> None:
    a = _ct()
    b = _ct()
    b.SetOrigin(a.TransformIndexToPhysicalPoint((2, -3, 1)))
    assert masks.grids_aligned(a, b)
    b.SetOrigin(a.TransformContinuousIndexToPhysicalPoint((2.5, 0, 0)))
    assert not masks.grids_aligned(a, b)
    flipped = sitk.Flip(a, [True, False, True])  # same lattice, reversed axes
    assert masks.grids_aligned(a, flipped) and masks.grids_aligned(flipped, a)
    coarse = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    coarse.SetSpacing([2 * v for v in a.GetSpacing()])
    coarse.SetDirection(a.GetDirection())
    coarse.SetOrigin(a.GetOrigin())
    assert not masks.grids_aligned(coarse, a)  # a sub-lattice is not the same grid


def test_validate_reads_a_seg_mask_by_the_manifest_segment_column(tmp_path: Path, ct_series) -> None:
    from rccgrade.cohort.settings import CohortSettings
    from rccgrade.cohort.validate import validate_cohort
    from rccgrade.parallel import ParallelSettings

    folder, ct = ct_series
    tumour = _sphere(ct, _centre_of(ct), 7.0)
    kidney = np.zeros_like(tumour)
    kidney[2:5, 3:9, 4:10] = 1
    kidney[tumour == 1] = 0
    _write_seg(folder, kidney + 2 * tumour, tmp_path / "seg" / "mask.dcm", ["Kidney", "Tumor"])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "patient_id,arterial,mask,mask_segment,grade\nPX,ct/arterial,seg/mask.dcm,Tumour,2\n"
        "PY,ct/arterial,seg/mask.dcm,liver,2\nPZ,ct/arterial,seg/mask.dcm,,2\n"
    )
    settings = CohortSettings(phases=["arterial"])
    report = validate_cohort(manifest, settings=settings, parallel=ParallelSettings(backend="serial"))
    assert report.usable == ["PX"]
    assert report.codes("PY") == {"mask_unreadable"}
    message = report.problems.loc[report.problems["patient_id"] == "PY", "message"].iloc[0]
    assert "1 'Kidney', 2 'Tumor'" in message
    assert report.codes("PZ") == {"mask_unreadable"}  # two segments, none chosen
    # the settings default (--mask-segment) applies where the column is empty
    settings = CohortSettings(phases=["arterial"], mask_segment="kidney")
    report = validate_cohort(manifest, settings=settings, parallel=ParallelSettings(backend="serial"))
    assert report.usable == ["PX", "PZ"]


def test_slicer_overlapping_segments_on_layers(tmp_path: Path) -> None:
    """Slicer stores overlapping segments on separate layers (components), label values may repeat."""
    ct = _ct()
    shape = ct.GetSize()[::-1]
    kidney = np.zeros(shape, dtype=np.uint8)
    kidney[2:9, 3:15, 4:18] = 1
    tumour = np.zeros(shape, dtype=np.uint8)
    tumour[4:7, 6:10, 8:12] = 1  # inside the kidney: overlaps
    img = sitk.GetImageFromArray(np.stack([kidney, tumour], axis=-1), isVector=True)
    img.CopyInformation(ct)
    for n, name in enumerate(["Kidney", "Tumor"]):
        img.SetMetaData(f"Segment{n}_Name", name)
        img.SetMetaData(f"Segment{n}_LabelValue", "1")
        img.SetMetaData(f"Segment{n}_Layer", str(n))
    path = tmp_path / "layers.seg.nrrd"
    sitk.WriteImage(img, str(path), True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, segment="tumor")), tumour)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, segment="kidney")), kidney)
    with pytest.raises(ImageError, match="several layers"):
        read_mask(path, label=1)


def test_validate_wants_the_phase_a_seg_was_drawn_on(tmp_path: Path) -> None:
    """A SEG of the nephrographic series: usable with mask_phase nephrographic, refused as arterial."""
    from rccgrade.cohort.settings import CohortSettings
    from rccgrade.cohort.validate import validate_cohort
    from rccgrade.parallel import ParallelSettings

    art = write_dicom_series(_ct(), tmp_path / "art", patient_id="PX", series_description="art")
    neph_img = _ct(size=(20, 18, 10), spacing=(1.2, 1.2, 3.0), origin=(-12.0, -10.0, -9.0), rot=(5.0, -10.0))
    neph_folder = write_dicom_series(neph_img, tmp_path / "neph", patient_id="PX", series_description="neph")
    neph = read_dicom_series(neph_folder)
    _write_seg(neph_folder, _sphere(neph, _centre_of(neph), 6.0), tmp_path / "seg.dcm", ["Tumor"])
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"patient_id,arterial,nephrographic,mask,grade\nPX,{art.name},{neph_folder.name},seg.dcm,3\n")
    serial = ParallelSettings(backend="serial")
    phases = ["arterial", "nephrographic"]
    ok = validate_cohort(manifest, settings=CohortSettings(phases=phases, mask_phase="nephrographic"), parallel=serial)
    assert ok.ok, ok.problems
    wrong = validate_cohort(manifest, settings=CohortSettings(phases=phases), parallel=serial)
    assert wrong.codes("PX") == {"mask_unreadable"}
    assert "drawn on series" in wrong.problems["message"].iloc[0]
