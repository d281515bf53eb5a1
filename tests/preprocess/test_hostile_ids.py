"""A hostile manifest: patient ids that look like paths never write or delete anything outside the output folder.

Ids: an absolute path to a real folder holding a sentinel file, ``../../../../ESC1``, ``..`` and ``NA``. For each
of ``validate``, ``preprocess`` and ``predict`` (and the preprocessing library itself, which must stay safe
even for ids that got past the manifest's rule) the suite checks that (a) nothing is written outside the
output folder, (b) nothing outside is deleted, (c) the exit code is non-zero or the row is failed with its
reason, (d) no traceback reaches stderr and (e) the message names the patient and the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.cohort.types import Case, Cohort
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess.pipeline import run_preprocess
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.preprocess.slices import load_slices

from .phantoms import write_case

SENTINEL = "do not delete me"
ESCAPE = "../../../../ESC1"


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``root``: relative path → (kind, size, mtime_ns)."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "dir" if p.is_dir() and not p.is_symlink() else "file"
            out[str(p.relative_to(root))] = (kind, 0 if kind == "dir" else st.st_size, st.st_mtime_ns)
    return out


def _changes_outside(before: dict[str, Any], after: dict[str, Any], inside: str) -> list[str]:
    """Paths added, removed or modified under the arena but not under ``inside`` (relative)."""

    def outside(rel: str) -> bool:
        # the output folder, what lies in it, and the folders leading to it (created for it) are allowed
        return not (rel == inside or rel.startswith(inside + os.sep) or inside.startswith(rel + os.sep))

    changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
    # a folder's mtime moves when a child is added to it: folders are judged by existence only
    changed = [p for p in changed if not (p in before and p in after and before[p][0] == after[p][0] == "dir")]
    return sorted(p for p in changed if outside(p))


def _flat(text: str) -> str:
    """Rich wraps long lines (even inside a path): compare without any whitespace."""
    return re.sub(r"\s+", "", text)


@pytest.fixture
def arena(tmp_path: Path) -> dict[str, Any]:
    """A folder tree: a victim folder with a sentinel, phantom images, and a deeply nested output folder."""
    root = tmp_path / "arena"
    victim = root / "victim"
    victim.mkdir(parents=True)
    (victim / "sentinel.txt").write_text(SENTINEL)
    data = root / "data"
    cases = [write_case(data, f"img{i}", seed=i + 1) for i in range(4)]
    # deep enough that "../../../../ESC1" from out/registered/ would still land inside the arena
    out = root / "w1" / "w2" / "w3" / "w4" / "out"
    ids = [str(victim), ESCAPE, "..", "NA"]
    return {"root": root, "victim": victim, "data": data, "cases": cases, "out": out, "ids": ids}


def _manifest(arena: dict[str, Any], ids: list[str], name: str = "manifest.csv") -> Path:
    rows = []
    for pid, case in zip(ids, arena["cases"], strict=False):
        rows.append(
            {
                "patient_id": pid,
                **{p: str(case.images[p]) for p in ("arterial", "nephrographic", "excretory")},
                "mask": str(case.mask),
                "grade": 2,
                "age": 60,
            }
        )
    path = arena["data"] / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _assert_clean(result: Any, arena: dict[str, Any], before: dict[str, Any], out_rel: str) -> None:
    after = _snapshot(arena["root"])
    assert _changes_outside(before, after, out_rel) == [], "written or deleted outside the output folder"
    assert (arena["victim"] / "sentinel.txt").read_text() == SENTINEL
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the library (defence in depth)


def test_preprocess_library_keeps_hostile_ids_inside_its_folder(arena: dict[str, Any]) -> None:
    """Ids that got past the manifest rule still map to files inside out_dir; a failed case deletes only its own.

    The absolute id's case fails (its mask is missing), so its clean-up runs: with the raw id as a path it
    would remove the victim folder. The other cases succeed and write their registered images, slices, cache
    and QC files: with the raw id as a path, ``../../../../ESC1`` would write outside ``out``.
    """
    cases: list[Case] = []
    for pid, case in zip(arena["ids"], arena["cases"], strict=True):
        cases.append(replace(case, patient_id=pid))
    cases[0] = replace(cases[0], mask=arena["data"] / "no_such_mask.nii.gz")
    before = _snapshot(arena["root"])
    settings = PreprocessSettings.model_validate({"registration": {"enabled": False}, "qc": True})
    result = run_preprocess(
        Cohort(cases=cases, root=arena["data"]), arena["out"], settings, ParallelSettings(backend="serial")
    )

    out_rel = str(arena["out"].relative_to(arena["root"]))
    assert _changes_outside(before, _snapshot(arena["root"]), out_rel) == []
    assert (arena["victim"] / "sentinel.txt").read_text() == SENTINEL
    assert not (arena["root"] / "w1" / "ESC1").exists() and not Path(str(arena["victim"]) + ".npy").exists()
    # every row accounted for, under its original id; the failure names the patient and the file
    status = result.status.set_index("patient_id")
    assert sorted(status.index) == sorted(arena["ids"])
    assert not status.loc[str(arena["victim"]), "ok"]
    assert str(arena["victim"]) in status.loc[str(arena["victim"]), "error"]
    assert "no_such_mask.nii.gz" in status.loc[str(arena["victim"]), "error"]
    assert status.loc[[ESCAPE, "..", "NA"], "ok"].all()
    # readers map the safe file names back to the original ids (NA stays an id, not a missing value)
    slices = load_slices(arena["out"], result.rois[0])
    assert sorted(slices) == sorted([ESCAPE, "..", "NA"])
    assert all(isinstance(a, np.ndarray) and a.ndim == 4 for a in slices.values())
    # radiomics finds the registered images of each id through the same mapping, and caches inside its folder
    from rccgrade.radiomics.extract import extract_radiomics, inputs_from_preprocess_dir
    from rccgrade.radiomics.settings import RadiomicsSettings

    listed = inputs_from_preprocess_dir(arena["out"], ["arterial"])
    assert sorted(i.patient_id for i in listed) == sorted([ESCAPE, "..", "NA"])
    params = arena["out"] / "params.yaml"
    params.write_text("imageType: {Original: {}}\nfeatureClass: {firstorder: [Mean]}\nsetting: {binWidth: 25}\n")
    rad = extract_radiomics(
        Cohort(cases=cases[1:], root=arena["data"]),
        arena["out"] / "radiomics",
        RadiomicsSettings(params=str(params), stability={"enabled": False}),
        ParallelSettings(backend="serial"),
        registered_dir=arena["out"] / "registered",
    )
    assert sorted(rad.features.index) == sorted([ESCAPE, "..", "NA"]) and rad.failures.empty
    assert _changes_outside(before, _snapshot(arena["root"]), out_rel) == []
    # a re-run is served from the cache files of the mapped names
    again = run_preprocess(
        Cohort(cases=cases[1:], root=arena["data"]), arena["out"], settings, ParallelSettings(backend="serial")
    )
    assert again.status["cached"].all()


# --------------------------------------------------------------------------- the command line


def test_validate_reports_hostile_ids_as_unusable(arena: dict[str, Any], tmp_path: Path) -> None:
    manifest = _manifest(arena, arena["ids"])
    before = _snapshot(arena["root"])
    out = arena["out"] / "validation.csv"
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["validate", str(manifest), "--out", str(out), "-j", "1"])
    assert result.exit_code == 1, result.output
    _assert_clean(result, arena, before, str(arena["out"].relative_to(arena["root"])))
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    bad = table[table["code"] == "bad_patient_id"]
    assert sorted(set(bad["patient_id"])) == sorted([str(arena["victim"]), ESCAPE, ".."])
    assert set(table.loc[table["patient_id"] == "NA", "status"]) == {"usable"}  # NA is an id, not a missing value
    text = _flat(result.stdout)
    assert "bad_patient_id" in text and _flat(ESCAPE) in text and _flat(str(arena["victim"])) in text


def test_preprocess_refuses_hostile_ids_naming_patient_and_manifest(arena: dict[str, Any]) -> None:
    manifest = _manifest(arena, arena["ids"])
    before = _snapshot(arena["root"])
    result = CliRunner().invoke(app, ["preprocess", str(manifest), "--out", str(arena["out"]), "-j", "1"])
    assert result.exit_code == 2, result.output
    _assert_clean(result, arena, before, str(arena["out"].relative_to(arena["root"])))
    err = _flat(result.stderr)
    assert _flat(ESCAPE) in err and _flat(str(arena["victim"])) in err and _flat(str(manifest)) in err
    assert "line2" in err  # the manifest row


def test_preprocess_missing_file_error_names_patient_and_path(arena: dict[str, Any]) -> None:
    """The per-case error starts with "[patient …, file …]"; Rich must not swallow it as markup."""
    ids = ["P01", "P02"]
    manifest = _manifest(arena, ids)
    frame = pd.read_csv(manifest, dtype=str)
    missing = arena["data"] / "gone" / "arterial.nii.gz"
    frame.loc[1, "arterial"] = str(missing)
    frame.to_csv(manifest, index=False)
    settings = arena["root"] / "fast.yaml"
    settings.write_text("preprocess:\n  registration:\n    enabled: false\n  qc: false\n")
    before = _snapshot(arena["root"])
    result = CliRunner(env={"COLUMNS": "1000"}).invoke(  # wide: table cells not folded
        app, ["preprocess", str(manifest), "--out", str(arena["out"]), "-j", "1", "--config", str(settings)]
    )
    assert result.exit_code == 1, result.output
    after = _snapshot(arena["root"])
    assert _changes_outside(before, after, str(arena["out"].relative_to(arena["root"]))) == []
    assert "Traceback" not in result.output
    # the results table (stdout; the log on stderr says it too, so it is not looked at here)
    table = _flat(result.stdout)
    assert "patientP02" in table and _flat(str(missing)) in table


@pytest.fixture(scope="module")
def clinical_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clinical-only bundle (age), fitted on 60 synthetic patients."""
    from rccgrade.models.arms import fit_arms
    from rccgrade.models.bundle import bundle_from_arms
    from rccgrade.models.settings import ModelSettings

    rng = np.random.default_rng(0)
    ids = pd.Index([f"t{i:02d}" for i in range(60)], name="patient_id")
    age = rng.normal(60, 10, 60)
    y = pd.Series((rng.random(60) < 1 / (1 + np.exp(-(age - 60) / 5))).astype(int), index=ids, name="high_grade")
    table = pd.DataFrame({"clin:age": age}, index=ids)
    settings = ModelSettings(
        arms=["clinical"], param_grids={"logistic": {"C": [1.0]}}, cv_folds=3, selection={"lasso_cs": 4, "lasso_cv": 3}
    )
    res = fit_arms(table, y, list(ids[:45]), settings, seed=0)
    return bundle_from_arms(
        res, "clinical", table, tmp_path_factory.mktemp("bundle") / "clinical", feature_settings={"cohort": {}}
    )


def test_predict_refuses_hostile_ids_naming_patient_and_manifest(arena: dict[str, Any], clinical_bundle: Path) -> None:
    manifest = _manifest(arena, arena["ids"])
    before = _snapshot(arena["root"])
    preds = arena["out"] / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(clinical_bundle), str(manifest), "--out", str(preds)])
    assert result.exit_code != 0, result.output
    _assert_clean(result, arena, before, str(arena["out"].relative_to(arena["root"])))
    err = _flat(result.stderr)
    assert _flat(ESCAPE) in err and _flat(str(arena["victim"])) in err and _flat(str(manifest)) in err


def test_predict_keeps_na_as_a_patient_id(arena: dict[str, Any], clinical_bundle: Path) -> None:
    """The control: the same command with plain ids (one of them "NA") predicts every patient."""
    manifest = _manifest(arena, ["NA", "null", "001", "P4"])
    preds = arena["out"] / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(clinical_bundle), str(manifest), "--out", str(preds)])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(preds, dtype={"patient_id": str}, keep_default_na=False)
    assert sorted(got["patient_id"]) == sorted(["NA", "null", "001", "P4"])


@pytest.mark.parametrize("command", ["validate", "preprocess", "predict"])
def test_non_utf8_manifest_is_a_clear_error(arena: dict[str, Any], clinical_bundle: Path, command: str) -> None:
    manifest = _manifest(arena, ["P1", "P2"])
    manifest.write_bytes(manifest.read_bytes().replace(b"P2", "Pé".encode("cp1252")))
    args = {
        "validate": ["validate", str(manifest), "--out", str(arena["out"] / "v.csv"), "-j", "1"],
        "preprocess": ["preprocess", str(manifest), "--out", str(arena["out"]), "-j", "1"],
        "predict": ["predict", str(clinical_bundle), str(manifest), "--out", str(arena["out"] / "p.csv")],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "UnicodeDecodeError" not in result.output
    err = _flat(result.stderr)
    assert "notUTF-8" in err and _flat(str(manifest)) in err and "line3" in err
