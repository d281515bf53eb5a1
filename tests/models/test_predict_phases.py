"""`predict` on new patients who lack a phase the model was trained with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from rccgrade.errors import CohortError
from rccgrade.models.predict import bundle_cohort


def _manifest(tmp_path: Path, columns: list[str]) -> Path:
    rows = ["patient_id," + ",".join(columns)]
    for pid in ("a", "b"):
        rows.append(pid + "," + ",".join(f"{pid}/{c}.nii.gz" for c in columns))
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_missing_phase_is_read_as_absent_not_refused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, ["arterial", "nephrographic", "mask"])
    bundle = SimpleNamespace(
        feature_settings={"cohort": {"phases": ["arterial", "nephrographic", "excretory"]}}, feature_names=[], meta={}
    )
    cohort = bundle_cohort(bundle, manifest)  # type: ignore[arg-type]
    assert cohort.patient_ids == ["a", "b"]
    assert all(set(case.images) == {"arterial", "nephrographic"} for case in cohort)


def test_without_phase_handling_the_manifest_would_be_refused(tmp_path: Path) -> None:
    """The control: the same manifest read with the training phases as they were is an error."""
    from rccgrade.cohort.manifest import load_cohort
    from rccgrade.cohort.settings import CohortSettings

    manifest = _manifest(tmp_path, ["arterial", "nephrographic", "mask"])
    settings = CohortSettings(phases=["arterial", "nephrographic", "excretory"], require_labels=False)
    with pytest.raises(CohortError, match="excretory"):
        load_cohort(manifest, settings=settings)
