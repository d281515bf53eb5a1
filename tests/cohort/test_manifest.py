"""Manifest loading: structure errors, labels, clinical typing and missing counts, per-row issues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rccgrade.cohort.manifest import load_cohort
from rccgrade.cohort.settings import CohortSettings
from rccgrade.errors import CohortError

HEADER = "patient_id,arterial,nephrographic,excretory,mask"


def _manifest(tmp_path: Path, text: str, name: str = "manifest.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _codes(cohort, pid: str) -> set[str]:
    return {p.code for p in cohort.issues if p.patient_id == pid}


def test_structural_problems_raise(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="manifest not found"):
        load_cohort(tmp_path / "nope.csv")
    with pytest.raises(CohortError, match="no 'patient_id' column"):
        load_cohort(_manifest(tmp_path, "id,arterial,nephrographic,excretory,mask\n1,a,b,c,m\n"))
    with pytest.raises(CohortError, match=r"lacks image column\(s\) \['excretory', 'mask'\]"):
        load_cohort(_manifest(tmp_path, "patient_id,arterial,nephrographic,grade\n1,a,b,2\n"))
    with pytest.raises(CohortError, match="no rows"):
        load_cohort(_manifest(tmp_path, HEADER + ",grade\n"))
    with pytest.raises(CohortError, match="mask phase 'venous'"):
        load_cohort(_manifest(tmp_path, HEADER + "\n1,a,b,c,m\n"), settings=CohortSettings(mask_phase="venous"))


def test_paths_ids_and_reserved_columns(tmp_path: Path) -> None:
    text = (
        "Patient_ID,Arterial,nephrographic,excretory,mask,grade,split,center,arterial_series_uid\n"
        "001,p1/a.nii.gz,p1/n.nii.gz,p1/e.nii.gz,p1/m.nii.gz,3,TRAIN,A,1.2.3\n"
        "002,../outside/a.nii.gz,/abs/n.nii.gz,p2/e.nii.gz,p2/m.nii.gz,1,test,B,\n"
    )
    cohort = load_cohort(_manifest(tmp_path, text))
    assert cohort.patient_ids == ["001", "002"]  # ids stay strings
    c1, c2 = cohort.cases
    assert c1.images["arterial"] == tmp_path / "p1" / "a.nii.gz"
    assert c1.mask == tmp_path / "p1" / "m.nii.gz"
    assert c1.split == "train" and c1.center == "A" and c1.series_uids == {"arterial": "1.2.3"}
    assert c1.row == 2 and c2.row == 3
    assert c2.images["nephrographic"] == Path("/abs/n.nii.gz")
    escapes = [p for p in cohort.issues if p.code == "path_escapes_root"]
    assert len(escapes) == 1 and escapes[0].patient_id == "002" and escapes[0].severity == "warning"
    assert "outside/a.nii.gz" in escapes[0].message
    assert cohort.clinical_types == {}
    assert list(cohort.splits()) == ["train", "test"]


def test_labels_from_grade_or_high_grade(tmp_path: Path) -> None:
    text = (
        HEADER + ",grade,high_grade\n"
        "g1,a,n,e,m,1,\n"
        "g2,a,n,e,m,2,\n"
        "g3,a,n,e,m,3,\n"
        "g4,a,n,e,m,4.0,\n"
        "h0,a,n,e,m,,0\n"
        "h1,a,n,e,m,,1\n"
        "both,a,n,e,m,3,1\n"
        "conflict,a,n,e,m,2,1\n"
        "g5,a,n,e,m,5,\n"
        "gx,a,n,e,m,G3,\n"
        "hx,a,n,e,m,,2\n"
        "none,a,n,e,m,,\n"
    )
    cohort = load_cohort(_manifest(tmp_path, text))
    labels = cohort.labels()
    assert labels.loc[["g1", "g2", "g3", "g4", "h0", "h1", "both"]].tolist() == [0, 0, 1, 1, 0, 1, 1]
    assert [cohort[p].grade for p in ("g1", "g4", "h1")] == [1, 4, None]
    assert _codes(cohort, "conflict") == {"label_conflict"}
    assert _codes(cohort, "g5") == {"grade_out_of_range"}
    assert _codes(cohort, "gx") == {"grade_out_of_range"}
    assert _codes(cohort, "hx") == {"grade_out_of_range"}
    assert _codes(cohort, "none") == {"grade_missing"}
    assert pd.isna(labels.loc["none"]) and pd.isna(labels.loc["g5"])
    for pid in ("g1", "g2", "g3", "g4", "h0", "h1", "both"):
        assert _codes(cohort, pid) == set(), pid
    relaxed = load_cohort(_manifest(tmp_path, text), settings=CohortSettings(require_labels=False))
    assert [p.severity for p in relaxed.issues if p.patient_id == "none"] == ["warning"]


def test_clinical_typing_and_missing_counts(tmp_path: Path) -> None:
    text = (
        HEADER + ",grade,age,sex,size_cm,stage,ecog\n"
        "p1,a,n,e,m,1,61,M,4.5,T1,0\n"
        "p2,a,n,e,m,2,NA,F,,T2,1\n"
        "p3,a,n,e,m,3,70,,3.1,T3,1\n"
        "p4,a,n,e,m,4,55,M,7,,2\n"
        "p5,a,n,e,m,2,48,F,2.2,T1,unknown\n"
    )
    cohort = load_cohort(_manifest(tmp_path, text))
    # ecog: 4 of 5 present values parse (80%) → numeric, the typo is reported, not silently categorical.
    assert cohort.clinical_types == {
        "age": "numeric",
        "sex": "categorical",
        "size_cm": "numeric",
        "stage": "categorical",
        "ecog": "numeric",
    }
    missing = cohort.clinical_missing()
    assert missing.to_dict() == {
        "age": 1,
        "sex": 1,
        "size_cm": 1,
        "stage": 1,
        "ecog": 1,
    }  # the unparsable value counts as missing
    frame = cohort.clinical_frame()
    assert frame["age"].dtype == np.float64 and frame.loc["p1", "age"] == 61.0
    assert isinstance(frame["sex"].dtype, pd.CategoricalDtype)
    wrong = [p for p in cohort.issues if p.code == "clinical_wrong_type"]
    assert [(p.patient_id, p.severity) for p in wrong] == [("p5", "error")]
    assert "'ecog'" in wrong[0].message and "unknown" in wrong[0].message

    declared = CohortSettings(clinical_types={"ecog": "categorical", "age": "numeric", "sex": "numeric"})
    cohort2 = load_cohort(_manifest(tmp_path, text), settings=declared)
    assert cohort2.clinical_types["ecog"] == "categorical"
    bad_sex = [p.patient_id for p in cohort2.issues if p.code == "clinical_wrong_type"]
    assert bad_sex == ["p1", "p2", "p4", "p5"]  # declared numeric, values M/F do not parse

    strict = load_cohort(_manifest(tmp_path, text), settings=CohortSettings(numeric_parse_fraction=1.0))
    assert strict.clinical_types["ecog"] == "categorical"
    chosen = load_cohort(_manifest(tmp_path, text), settings=CohortSettings(clinical_columns=["age"]))
    assert list(chosen.clinical_types) == ["age"]
    with pytest.raises(CohortError, match="weight"):
        load_cohort(_manifest(tmp_path, text), settings=CohortSettings(clinical_columns=["weight"]))


def test_clinical_csv_join(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, HEADER + ",grade\np1,a,n,e,m,1\np2,a,n,e,m,3\n")
    clin = _manifest(tmp_path, "patient_id,age,sex\np2,70,F\np1,60,M\np9,1,M\n", "clinical.csv")
    cohort = load_cohort(manifest, clinical_csv=clin)
    assert cohort["p1"].clinical == {"age": 60.0, "sex": "M"}
    assert cohort["p2"].clinical == {"age": 70.0, "sex": "F"}
    partial = _manifest(tmp_path, "patient_id,age\np1,60\n", "partial.csv")
    cohort = load_cohort(manifest, clinical_csv=partial)
    assert cohort.clinical_missing().to_dict() == {"age": 1}
    dup = _manifest(tmp_path, "patient_id,age\np1,60\np1,61\n", "dup.csv")
    with pytest.raises(CohortError, match="more than once"):
        load_cohort(manifest, clinical_csv=dup)
    clash = _manifest(tmp_path, "patient_id,grade\np1,2\n", "clash.csv")
    with pytest.raises(CohortError, match="both the manifest and the clinical CSV"):
        load_cohort(manifest, clinical_csv=clash)


def test_row_problems_do_not_raise(tmp_path: Path) -> None:
    text = (
        HEADER + ",grade,split,label\n"
        "p1,a,n,e,m,1,train,\n"
        "p1,a,n,e,m,2,test,\n"
        ",a,n,e,m,2,,\n"
        "p3,,n,e,,2,validation,x\n"
        "p4,a,n,e,m,2,,2\n"
    )
    cohort = load_cohort(_manifest(tmp_path, text), settings=CohortSettings(label=7))
    assert len(cohort) == 5
    dups = [(p.patient_id, p.row) for p in cohort.issues if p.code == "duplicate_patient_id"]
    assert dups == [("p1", 2), ("p1", 3)]
    assert _codes(cohort, "(line 4)") == {"patient_id_missing"}
    assert _codes(cohort, "p3") == {"phase_missing", "mask_missing", "split_invalid", "label_invalid"}
    assert cohort["p4"].label == 2 and cohort["p1"].label == 7
    assert "arterial" not in cohort["p3"].images


def test_ids_are_read_as_written(tmp_path: Path) -> None:
    """NA, null, None and 001 are patient ids, not missing values or numbers; clinical "NA" is still missing."""
    text = HEADER + ",grade,age\nNA,a,b,c,m,2,NA\nnull,a,b,c,m,2,61\nNone,a,b,c,m,3,\n001,a,b,c,m,1,70\n"
    cohort = load_cohort(_manifest(tmp_path, text))
    assert cohort.patient_ids == ["NA", "null", "None", "001"]
    assert [c.clinical["age"] for c in cohort.cases] == [None, 61.0, None, 70.0]
    assert not [p for p in cohort.issues if p.severity == "error"]


def test_bad_ids_raise_by_default_and_are_reported_on_request(tmp_path: Path) -> None:
    text = HEADER + ",grade\nok1,a,b,c,m,2\n/abs/dir,a,b,c,m,2\n../../../../ESC1,a,b,c,m,2\n..,a,b,c,m,2\n"
    manifest = _manifest(tmp_path, text)
    with pytest.raises(CohortError) as exc:
        load_cohort(manifest)
    msg = str(exc.value)
    assert "3 patient id(s)" in msg and str(manifest) in msg
    assert "line 3: patient_id '/abs/dir'" in msg and "'../../../../ESC1'" in msg and "line 5: patient_id '..'" in msg
    cohort = load_cohort(manifest, bad_ids="report")
    assert cohort.patient_ids == ["ok1", "/abs/dir", "../../../../ESC1", ".."]
    assert _codes(cohort, "ok1") == set()
    for pid in ("/abs/dir", "../../../../ESC1", ".."):
        assert _codes(cohort, pid) == {"bad_patient_id"}


def test_encoding_utf8_with_bom_is_read_and_other_encodings_are_refused(tmp_path: Path) -> None:
    text = HEADER + ",grade,site\nP1,a,b,c,m,2,Zürich\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    cohort = load_cohort(bom)
    assert cohort.patient_ids == ["P1"] and cohort.cases[0].clinical["site"] == "Zürich"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.encode("cp1252"))
    with pytest.raises(CohortError, match=r"not UTF-8 text \(byte 0xFC on line 2") as exc:
        load_cohort(latin)
    assert str(latin) in str(exc.value)
