"""KiTS and nnU-Net trees (a few tiny cases) import into manifests that pass validate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.io import read_mask
from rccgrade.cohort.layouts import import_kits, import_nnunet
from rccgrade.cohort.manifest import load_cohort
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.validate import validate_cohort
from rccgrade.errors import CohortError
from rccgrade.parallel import ParallelSettings

from .conftest import make_ct

SERIAL = ParallelSettings(backend="serial")


def _labels(ct: sitk.Image, tumour_value: int = 2) -> tuple[sitk.Image, np.ndarray]:
    """Kidney 1, tumour ``tumour_value``, cyst 3; returns the image and the tumour array."""
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, dtype=np.uint8)
    arr[1:7, 3:13, 3:13] = 1
    arr[2:6, 5:11, 5:11] = tumour_value
    arr[3:5, 3:5, 11:13] = 3
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ct)
    return img, (arr == tumour_value).astype(np.uint8)


def _kits(root: Path, grades: list[object]) -> np.ndarray:
    records = []
    for i, grade in enumerate(grades):
        case = root / "data" / f"case_{i:05d}"
        case.mkdir(parents=True)
        ct = make_ct(seed=i)
        sitk.WriteImage(ct, str(case / "imaging.nii.gz"))
        seg, tumour = _labels(ct)
        sitk.WriteImage(seg, str(case / "segmentation.nii.gz"))
        records.append(
            {
                "case_id": case.name,
                "age_at_nephrectomy": 50 + i,
                "gender": "male" if i % 2 else "female",
                "comorbidities": {"diabetes_mellitus": bool(i % 2), "hypertension": True},
                "tumor_isup_grade": grade,
                "pathology_t_stage": "1a",
                "tumor_histologic_subtype": "clear_cell_rcc" if i < 2 else "papillary",
                "vital_days_after_surgery": 1000,
            }
        )
    (root / "data" / "case_09999").mkdir()  # a test case: imaging only
    sitk.WriteImage(make_ct(), str(root / "data" / "case_09999" / "imaging.nii.gz"))
    (root / "data" / "kits.json").write_text(json.dumps(records))
    return tumour


def test_kits_imports_grades_clinical_columns_and_passes_validate(tmp_path: Path) -> None:
    tumour = _kits(tmp_path, [2, 4, 3])
    result = import_kits(tmp_path / "data")
    manifest, log_path = result.write(tmp_path / "out" / "kits.csv")
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert list(frame["patient_id"]) == ["case_00000", "case_00001", "case_00002"]
    assert list(frame["grade"]) == ["2", "4", "3"]
    assert list(frame["label"]) == ["2", "2", "2"]
    assert set(frame["nephrographic"]) == {""} and set(frame["excretory"]) == {""}
    assert {"age_at_nephrectomy", "gender", "comorbidities.diabetes_mellitus"} <= set(frame.columns)
    # pathology and outcome fields are known only after surgery: never clinical predictors
    assert not {"pathology_t_stage", "tumor_histologic_subtype", "vital_days_after_surgery"} & set(frame.columns)
    assert list(frame["comorbidities.diabetes_mellitus"]) == ["0", "1", "0"]
    everything = import_kits(tmp_path / "data", all_clinical=True).manifest.columns
    assert "comorbidities.hypertension" in everything
    assert not {"pathology_t_stage", "tumor_histologic_subtype", "vital_days_after_surgery"} & set(everything)
    assert pd.read_csv(log_path).set_index("entry").loc["case_09999", "status"] == "skipped"

    settings = CohortSettings(phases=["arterial"])
    report = validate_cohort(manifest, settings=settings, parallel=SERIAL)
    assert report.ok, report.problems
    case = load_cohort(manifest, settings=settings)["case_00000"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(case.mask, label=case.label)), tumour)


def test_kits_missing_grade_is_left_empty_and_said(tmp_path: Path) -> None:
    _kits(tmp_path, [2, None, 3])
    result = import_kits(tmp_path / "data", subtype="clear_cell_rcc")
    assert list(result.manifest["grade"]) == [2, ""]
    assert "case_00002" in result.skipped and "papillary" in result.skipped["case_00002"]
    assert any("1 of 2 cases have no ISUP grade" in n for n in result.notes)


def _nnunet(root: Path, n: int = 2) -> list[np.ndarray]:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    tumours = []
    for i in range(n):
        for ch in range(3):
            sitk.WriteImage(make_ct(seed=10 * i + ch), str(root / "imagesTr" / f"RCC_{i:03d}_{ch:04d}.nii.gz"))
        seg, tumour = _labels(make_ct(seed=10 * i), tumour_value=3 - 1)
        sitk.WriteImage(seg, str(root / "labelsTr" / f"RCC_{i:03d}.nii.gz"))
        tumours.append(tumour)
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT", "1": "CT", "2": "CT"},
                "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
                "numTraining": n,
                "file_ending": ".nii.gz",
            }
        )
    )
    return tumours


def test_nnunet_channels_map_to_phases_and_pass_validate(tmp_path: Path) -> None:
    tumours = _nnunet(tmp_path / "Dataset001_RCC")
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(
        app,
        [
            "import-nnunet",
            str(tmp_path / "Dataset001_RCC"),
            "--out",
            str(out),
            "--channels",
            "nephrographic,arterial,excretory",
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame["arterial"]) == [
        "Dataset001_RCC/imagesTr/RCC_000_0001.nii.gz",
        "Dataset001_RCC/imagesTr/RCC_001_0001.nii.gz",
    ]
    assert frame["nephrographic"].iloc[0].endswith("RCC_000_0000.nii.gz")
    assert list(frame["label"]) == ["2", "2"]
    report = validate_cohort(out, settings=CohortSettings(require_labels=False), parallel=SERIAL)
    assert report.ok, report.problems
    case = load_cohort(out, settings=CohortSettings(require_labels=False))["RCC_001"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(case.mask, label=case.label)), tumours[1])


def test_nnunet_refuses_a_wrong_channel_count(tmp_path: Path) -> None:
    _nnunet(tmp_path / "ds")
    with pytest.raises(CohortError, match="3 channel"):
        import_nnunet(tmp_path / "ds", channels=["arterial", "excretory"])


def test_nnunet_v1_labels_and_explicit_tumour_label(tmp_path: Path) -> None:
    root = tmp_path / "Task001"
    _nnunet(root, n=1)
    three = {"0": "CT", "1": "CT", "2": "CT"}
    phases = ["arterial", "nephrographic", "excretory"]
    # v1 layout: "labels" maps value -> name
    (root / "dataset.json").write_text(
        json.dumps({"modality": three, "labels": {"0": "background", "1": "kidney", "2": "Kidney Tumour"}})
    )
    assert list(import_nnunet(root, channels=phases).manifest["label"]) == [2]
    # no label named like a tumour: the user must say which
    (root / "dataset.json").write_text(json.dumps({"modality": three, "labels": {"0": "bg", "1": "a", "2": "b"}}))
    with pytest.raises(CohortError, match="tumour label"):
        import_nnunet(root, channels=phases)
    assert list(import_nnunet(root, channels=phases, tumour_label=2).manifest["label"]) == [2]
    with pytest.raises(CohortError, match="label 5 is not in"):
        import_nnunet(root, channels=phases, tumour_label=5)
    # one channel declared but three files per case: the case is skipped, with the reason
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "CT"}, "labels": {"2": "tumor"}}))
    result = import_nnunet(root, channels=["arterial"])
    assert result.manifest.empty and "unexpected" in result.skipped["RCC_000"]
