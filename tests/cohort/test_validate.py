"""Validation: one test per rule (each builds exactly such a broken case) and the acceptance test."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.dicom import write_dicom_series
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.validate import CheckOptions, validate_cohort
from rccgrade.parallel import ParallelSettings

from .conftest import CaseWriter, make_ct, make_mask

SERIAL = ParallelSettings(backend="serial")


def _with_array(ref: sitk.Image, arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    return img


# Each builder writes one broken case named after its rule and returns the manifest columns it needs.
def _file_missing(w: CaseWriter) -> None:
    w.write("file_missing", mask=None)


def _unreadable(w: CaseWriter) -> None:
    w.write("unreadable")
    (w.root / "unreadable" / "arterial.nrrd").write_bytes(b"NRRD0004\ngarbage\n\n\x00\x01")


def _not_3d(w: CaseWriter) -> None:
    w.write("not_3d", nephrographic=sitk.GetImageFromArray(np.zeros((16, 16), np.int16)))


def _not_scalar(w: CaseWriter) -> None:
    ct = make_ct()
    w.write("not_scalar", excretory=sitk.Compose(ct, ct, ct))


def _mask_empty(w: CaseWriter) -> None:
    w.write("mask_empty", mask=make_mask(make_ct(), value=0))


def _mask_not_binary(w: CaseWriter) -> None:
    ct = make_ct()
    arr = sitk.GetArrayFromImage(make_mask(ct))
    arr[0, 0, :4] = 2
    w.write("mask_not_binary", mask=_with_array(ct, arr))


def _mask_geometry_mismatch(w: CaseWriter) -> None:
    mask = make_mask(make_ct())
    mask.SetOrigin((-6.0, -6.0, 14.0))  # two slices off
    w.write("mask_geometry_mismatch", mask=mask)


def _phases_no_overlap(w: CaseWriter) -> None:
    far = make_ct(origin=(-6.0, -6.0, 510.0))  # half a metre away: another patient's scan?
    w.write("phases_no_overlap", excretory=far)


def _not_hu(w: CaseWriter) -> None:
    ct = make_ct()
    display = np.clip((sitk.GetArrayFromImage(ct).astype(np.float64) + 160) / 400 * 255, 0, 255)
    w.write("not_hu", arterial=_with_array(ct, display.astype(np.uint8)))


def _not_hu_raw(w: CaseWriter) -> None:
    ct = make_ct()
    raw = sitk.GetArrayFromImage(ct).astype(np.int32) + 1024  # intercept −1024 never applied
    w.write("not_hu_raw", nephrographic=_with_array(ct, raw.astype(np.uint16)))


def _grade_missing(w: CaseWriter) -> None:
    w.write("grade_missing", grade=None)


def _grade_out_of_range(w: CaseWriter) -> None:
    w.write("grade_out_of_range", grade=5)


def _duplicate_patient_id(w: CaseWriter) -> None:
    w.write("duplicate_patient_id")
    w.rows.append(dict(w.rows[-1]))


def _clinical_wrong_type(w: CaseWriter) -> None:
    w.write("clinical_wrong_type")


def _path_escapes_root(w: CaseWriter) -> None:
    row = w.write("path_escapes_root")
    outside = w.root.parent / f"{w.root.name}_outside"
    outside.mkdir(exist_ok=True)
    (w.root / row["arterial"]).rename(outside / "arterial.nrrd")
    row["arterial"] = f"../{outside.name}/arterial.nrrd"


BROKEN: dict[str, tuple[Callable[[CaseWriter], None], str, str]] = {
    # patient id: (builder, expected code, severity)
    "file_missing": (_file_missing, "file_missing", "error"),
    "unreadable": (_unreadable, "unreadable", "error"),
    "not_3d": (_not_3d, "not_3d", "error"),
    "not_scalar": (_not_scalar, "not_scalar", "error"),
    "mask_empty": (_mask_empty, "mask_empty", "error"),
    "mask_not_binary": (_mask_not_binary, "mask_not_binary", "error"),
    "mask_geometry_mismatch": (_mask_geometry_mismatch, "mask_geometry_mismatch", "error"),
    "phases_no_overlap": (_phases_no_overlap, "phases_no_overlap", "error"),
    "not_hu": (_not_hu, "not_hu", "error"),
    "not_hu_raw": (_not_hu_raw, "not_hu", "error"),
    "grade_missing": (_grade_missing, "grade_missing", "error"),
    "grade_out_of_range": (_grade_out_of_range, "grade_out_of_range", "error"),
    "duplicate_patient_id": (_duplicate_patient_id, "duplicate_patient_id", "error"),
    "clinical_wrong_type": (_clinical_wrong_type, "clinical_wrong_type", "error"),
    "path_escapes_root": (_path_escapes_root, "path_escapes_root", "warning"),
}

MESSAGE_HINTS = {
    "mask_not_binary": "--label",
    "mask_geometry_mismatch": "origin",
    "not_hu": "8-bit",
    "not_hu_raw": "uncalibrated",
    "unreadable": "NIfTI",
    "phases_no_overlap": "registration",
    "file_missing": "mask.nrrd",
    "clinical_wrong_type": "sixty",
}


def _ages(rows: list[dict]) -> list[object]:
    return ["sixty" if r["patient_id"] == "clinical_wrong_type" else 50 + i for i, r in enumerate(rows)]


def _manifest(w: CaseWriter) -> Path:
    return w.manifest(age=_ages(w.rows))


def test_good_case_is_usable_with_no_problem(case_writer: CaseWriter) -> None:
    case_writer.write("good")
    case_writer.write("good2", ext=".nii.gz", grade=4)
    report = validate_cohort(_manifest(case_writer), parallel=SERIAL)
    assert report.ok
    assert report.usable == ["good", "good2"]
    assert report.problems.empty
    assert report.clinical_types == {"age": "numeric"}


@pytest.mark.parametrize("pid", list(BROKEN))
def test_each_rule_names_the_broken_case(case_writer: CaseWriter, pid: str) -> None:
    builder, code, severity = BROKEN[pid]
    case_writer.write("good")
    builder(case_writer)
    numeric_age = CohortSettings(clinical_types={"age": "numeric"})  # two rows are too few to infer it
    report = validate_cohort(_manifest(case_writer), parallel=SERIAL, settings=numeric_age)
    mine = report.problems[report.problems["patient_id"] == pid]
    assert code in set(mine["code"]), mine.to_string()
    assert set(mine["code"]) <= {code, "duplicate_patient_id"}, f"unexpected extra problems: {mine.to_string()}"
    assert set(mine["severity"]) == {severity}
    assert (pid in report.unusable) == (severity == "error")
    assert report.usable[0] == "good"
    assert report.codes("good") == set()
    hint = MESSAGE_HINTS.get(pid)
    if hint:
        assert any(hint in f"{m} {f}" for m, f in zip(mine["message"], mine["file"], strict=True)), mine.to_string()


def test_label_option_selects_tumour_in_multilabel_mask(case_writer: CaseWriter) -> None:
    ct = make_ct()
    arr = sitk.GetArrayFromImage(make_mask(ct))
    arr[0, 0, :4] = 2
    case_writer.write("multi", mask=_with_array(ct, arr))
    manifest = _manifest(case_writer)
    assert validate_cohort(manifest, parallel=SERIAL).codes("multi") == {"mask_not_binary"}
    assert validate_cohort(manifest, label=1, parallel=SERIAL).ok
    assert validate_cohort(manifest, label=2, parallel=SERIAL).ok
    absent = validate_cohort(manifest, label=3, parallel=SERIAL)
    assert absent.codes("multi") == {"mask_empty"}
    assert "labels present: [1, 2]" in absent.problems["message"].iloc[0]


def test_mask_on_another_phase_and_geometry_tolerance(case_writer: CaseWriter) -> None:
    neph = make_ct(origin=(-6.0, -6.0, 20.0))  # overlaps the arterial scan
    mask = make_mask(neph)
    mask.SetOrigin((-6.0 + 1e-4, -6.0, 20.0))  # float32 round-off: within tolerance
    case_writer.write("p1", nephrographic=neph, mask=mask)
    manifest = _manifest(case_writer)
    assert validate_cohort(manifest, parallel=SERIAL).codes("p1") == {"mask_geometry_mismatch"}
    report = validate_cohort(manifest, parallel=SERIAL, settings=CohortSettings(mask_phase="nephrographic"))
    assert report.ok, report.problems.to_string()


def test_dicom_phases_and_multiple_series_warning(case_writer: CaseWriter) -> None:
    row = case_writer.write("dcm")
    folder = case_writer.root / "dcm" / "arterial_dicom"
    write_dicom_series(make_ct(), folder, patient_id="dcm", series_description="arterial", series_uid="1.2.3.1")
    scout = make_ct(size=(16, 16, 3), origin=(-6.0, -6.0, 900.0))  # elsewhere: would not overlap
    write_dicom_series(scout, folder, patient_id="dcm", series_description="scout", series_uid="1.2.3.2")
    row["arterial"] = "dcm/arterial_dicom"
    report = validate_cohort(_manifest(case_writer), parallel=SERIAL)
    assert report.usable == ["dcm"]
    assert report.codes("dcm") == {"multiple_series"}

    chosen = validate_cohort(case_writer.manifest(arterial_series_uid=["1.2.3.1"]), parallel=SERIAL)
    assert chosen.ok and chosen.problems.empty
    scout_chosen = validate_cohort(case_writer.manifest(arterial_series_uid=["1.2.3.2"]), parallel=SERIAL)
    assert scout_chosen.codes("dcm") == {"phases_no_overlap", "mask_geometry_mismatch"}
    wrong = validate_cohort(case_writer.manifest(arterial_series_uid=["9.9"]), parallel=SERIAL)
    assert wrong.codes("dcm") == {"unreadable"}
    assert "1.2.3.1 (8 files), 1.2.3.2 (3 files)" in wrong.problems["message"].iloc[0]


def test_a_crashing_check_stops_only_its_case(case_writer: CaseWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    from rccgrade.cohort import integrity as module

    case_writer.write("good")
    case_writer.write("boom")
    original = module._Checker.check_hu

    def flaky(self: module._Checker, name: str, vol: object) -> None:
        if self.case.patient_id == "boom":
            raise ZeroDivisionError("simulated bug")
        original(self, name, vol)

    monkeypatch.setattr(module._Checker, "check_hu", flaky)
    report = validate_cohort(_manifest(case_writer), parallel=SERIAL)
    assert report.usable == ["good"]
    assert report.codes("boom") == {"check_failed"}
    assert "simulated bug" in report.problems["message"].iloc[0]


def test_acceptance_cli_names_every_broken_case(case_writer: CaseWriter, tmp_path: Path) -> None:
    case_writer.write("good")
    for builder, _, _ in BROKEN.values():
        builder(case_writer)
    manifest = _manifest(case_writer)
    out = tmp_path / "out" / "validation.csv"
    result = CliRunner().invoke(app, ["validate", str(manifest), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "usable" in result.output and "unusable" in result.output

    table = pd.read_csv(out, keep_default_na=False)
    assert set(table.columns) >= {"patient_id", "status", "severity", "code", "file", "message"}
    status = table.groupby("patient_id")["status"].first()
    assert status["good"] == "usable"
    assert table.loc[table["patient_id"] == "good", "code"].tolist() == [""]
    for pid, (_, code, severity) in BROKEN.items():
        mine = table[table["patient_id"] == pid]
        assert code in set(mine["code"]), f"{pid}: {mine.to_string()}"
        assert status[pid] == ("unusable" if severity == "error" else "usable"), pid
    assert (status == "unusable").sum() == sum(sev == "error" for _, _, sev in BROKEN.values())


def test_cli_exit_zero_and_default_out(
    case_writer: CaseWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_writer.write("good")
    manifest = _manifest(case_writer)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["validate", str(manifest), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (work / "validation.csv").is_file()
    assert "1 cases: 1 usable, 0 unusable" in result.output
    missing = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2


def test_cohort_built_in_code(tmp_path: Path) -> None:
    from rccgrade.cohort.types import Case, Cohort

    ct, mask = make_ct(), make_mask(make_ct())
    for name, img in {"a": ct, "m": mask}.items():
        sitk.WriteImage(img, str(tmp_path / f"{name}.mha"))
    images = {p: tmp_path / "a.mha" for p in ("arterial", "nephrographic", "excretory")}
    cohort = Cohort(
        cases=[
            Case("ok", images, tmp_path / "m.mha", grade=2, high_grade=0),
            Case("bad", images, tmp_path / "gone.mha", grade=3, high_grade=1),
        ]
    )
    # Work items must pickle for the process and Dask backends.
    options = CheckOptions(label=2)
    assert pickle.loads(pickle.dumps((cohort.cases[0], options))) == (cohort.cases[0], options)
    report = validate_cohort(cohort, parallel=SERIAL)
    assert report.usable == ["ok"] and report.unusable == ["bad"]
    frame = report.to_frame()
    assert frame.loc[frame["patient_id"] == "bad", "code"].tolist() == ["file_missing"]
    path = report.write_csv(tmp_path / "v" / "validation.csv")
    assert pd.read_csv(path)["patient_id"].tolist() == ["ok", "bad"]
