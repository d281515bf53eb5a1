"""The cohort contract: a :class:`Cohort` of :class:`Case` objects read from a manifest.

A case points at image files (or DICOM series folders); nothing is loaded until a stage asks,
so a cohort of 500 patients is cheap to build and to pass between processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

PHASES: tuple[str, ...] = ("arterial", "nephrographic", "excretory")
"""The three contrast phases, in channel order (arterial = corticomedullary)."""

ClinicalKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Case:
    """One patient of a cohort.

    Attributes:
        patient_id: Unique identifier from the manifest.
        images: Phase name → image path (file or DICOM folder). A phase may be absent.
        mask: Path of the tumour mask, in the space of ``mask_phase``.
        mask_phase: Phase the mask was drawn on (default arterial).
        grade: WHO/ISUP grade 1–4, or None when only ``high_grade`` was given or it is missing.
        high_grade: 1 for ISUP 3–4, 0 for ISUP 1–2, None when unknown.
        split: ``"train"``, ``"test"`` or None when the study chooses the split.
        center: Centre / scanner label, or None.
        clinical: Clinical variable name → value (float, str or None when missing).
        label: Label value of the tumour in a multi-label mask, or None for a binary mask.
        mask_segment: Segment / ROI name of the tumour in a DICOM-SEG, RTSTRUCT or Slicer
            ``.seg.nrrd`` mask (see :mod:`rccgrade.cohort.masks`), or None.
        series_uids: Phase → DICOM SeriesInstanceUID to read when a folder holds several series
            (key ``"mask"`` for a DICOM mask folder).
        row: Line of the manifest this case came from (header = line 1), or None for cases built
            in code. Tells apart rows that share a patient id.
    """

    patient_id: str
    images: dict[str, Path]
    mask: Path
    mask_phase: str = "arterial"
    grade: int | None = None
    high_grade: int | None = None
    split: str | None = None
    center: str | None = None
    clinical: dict[str, float | str | None] = field(default_factory=dict)
    label: int | None = None
    mask_segment: str | None = None
    series_uids: dict[str, str] = field(default_factory=dict)
    row: int | None = None

    @property
    def phases(self) -> tuple[str, ...]:
        """Phases present for this case, in canonical order."""
        return tuple(p for p in PHASES if p in self.images) + tuple(p for p in self.images if p not in PHASES)


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One problem found in a case (or in the manifest row it came from).

    Attributes:
        patient_id: The patient concerned.
        code: Machine-readable rule name (``file_missing``, ``mask_not_binary`` …).
        severity: ``"error"`` makes the case unusable; ``"warning"`` is reported only.
        message: What is wrong and how to fix it.
        file: The file concerned ("" when the problem is in the manifest row itself).
        row: Manifest line of the case (None for cases built in code).
    """

    patient_id: str
    code: str
    severity: Severity
    message: str
    file: str = ""
    row: int | None = None


@dataclass
class Cohort:
    """A list of cases plus what is known about the manifest they came from.

    Attributes:
        cases: The patients, in manifest order.
        root: Folder the manifest's relative paths are resolved against.
        manifest: Path of the manifest CSV (None for cohorts built in code).
        clinical_types: Clinical column → ``"numeric"`` or ``"categorical"``.
        issues: Per-case problems found while reading the manifest (bad grade, duplicate id,
            wrong clinical type …). Loading never raises for these; validation reports them.
    """

    cases: list[Case]
    root: Path = Path(".")
    manifest: Path | None = None
    clinical_types: dict[str, ClinicalKind] = field(default_factory=dict)
    issues: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, patient_id: str) -> Case:
        for case in self.cases:
            if case.patient_id == patient_id:
                return case
        raise KeyError(patient_id)

    @property
    def patient_ids(self) -> list[str]:
        """Patient identifiers in manifest order."""
        return [c.patient_id for c in self.cases]

    def labels(self) -> pd.Series:
        """``high_grade`` per patient (nullable Int64), indexed by ``patient_id``."""
        return pd.Series(
            [c.high_grade for c in self.cases],
            index=pd.Index(self.patient_ids, name="patient_id"),
            name="high_grade",
            dtype="Int64",
        )

    def splits(self) -> pd.Series:
        """Manifest split per patient (``train``/``test``/None), indexed by ``patient_id``."""
        return pd.Series(
            [c.split for c in self.cases],
            index=pd.Index(self.patient_ids, name="patient_id"),
            name="split",
            dtype="object",
        )

    def centers(self) -> pd.Series:
        """Centre label per patient, indexed by ``patient_id``."""
        return pd.Series(
            [c.center for c in self.cases],
            index=pd.Index(self.patient_ids, name="patient_id"),
            name="center",
            dtype="object",
        )

    def clinical_frame(self) -> pd.DataFrame:
        """Clinical variables as a typed DataFrame indexed by ``patient_id``.

        Numeric columns are float64 (NaN for missing); categorical columns are pandas
        ``category`` dtype. Column names are the raw clinical names (no ``clin:`` prefix).
        """
        rows = {c.patient_id: c.clinical for c in self.cases}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "patient_id"
        frame = frame.reindex(self.patient_ids)
        for name in frame.columns:
            kind = self.clinical_types.get(name, "numeric")
            if kind == "numeric":
                frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
            else:
                frame[name] = frame[name].astype("category")
        return frame

    def clinical_missing(self) -> pd.Series:
        """Number of missing values per clinical column (int64), indexed by column name."""
        frame = self.clinical_frame()
        return frame.isna().sum().astype("int64").rename("missing")

    def subset(self, patient_ids: list[str]) -> Cohort:
        """A cohort holding only the given patients (in the given order)."""
        wanted = {c.patient_id: c for c in self.cases}
        keep = set(patient_ids)
        return Cohort(
            cases=[wanted[p] for p in patient_ids],
            root=self.root,
            manifest=self.manifest,
            clinical_types=dict(self.clinical_types),
            issues=[p for p in self.issues if p.patient_id in keep],
        )
