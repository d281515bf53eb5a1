"""Check every case of a cohort and say, patient by patient, what is wrong and how to fix it.

Each rule has its own code and severity. A case is *usable* when it has no ``error``;
``warning`` problems are reported only. One bad case never stops the others: each case is checked
in its own :func:`rccgrade.parallel.run_cases` item, and each rule inside a case is guarded, so an
unexpected exception becomes a ``check_failed`` problem of that case alone.

Rules (code — severity):
    ``patient_id_missing``, ``duplicate_patient_id`` — error (manifest rows)
    ``phase_missing``, ``mask_missing`` — error (empty manifest cell)
    ``path_escapes_root`` — warning (relative path leaving the manifest's folder)
    ``grade_missing`` (error; warning when labels are not required), ``grade_out_of_range``,
    ``label_conflict``, ``split_invalid``, ``label_invalid``, ``clinical_wrong_type`` — error
    ``file_missing``, ``unreadable`` — error
    ``not_3d`` — error (not three dimensions, or a single slice); ``not_scalar`` — error (RGB …)
    ``multiple_series`` — warning (DICOM folder with several series and no series UID given)
    ``mask_empty``, ``mask_not_binary`` — error (multi-label masks: choose with ``--label N``)
    ``mask_geometry_mismatch`` — error (size/spacing/origin/direction differ from the mask phase)
    ``mask_unreadable`` — error (DICOM-SEG / RTSTRUCT / .seg.nrrd: segment absent, off the mask phase grid …)
    ``multiple_lesions`` — warning (error with ``cohort.lesions: error``): count and volumes of the lesions
    ``phases_no_overlap`` — error (physical extents of two phases do not intersect)
    ``not_hu`` — error (intensities not plausibly Hounsfield units)
    ``check_failed`` — error (a check itself crashed; the message carries the exception)

Images are opened header-first (``ImageFileReader.ReadImageInformation``); pixels are read only
for the mask (empty/binary) and the HU range. DICOM series are read once in full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rccgrade.cohort.io import (
    ImageGeometry,
    choose_series,
    dicom_series,
    image_geometry,
    read_dicom_series,
    read_image_information,
)
from rccgrade.cohort.lesions import find_lesions
from rccgrade.cohort.manifest import NO_PATH, load_cohort
from rccgrade.cohort.masks import is_structured_mask, read_structured_mask
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case, Cohort, Problem
from rccgrade.errors import ImageError
from rccgrade.parallel import Outcome, ParallelSettings, ProgressCallback, run_cases

log = logging.getLogger(__name__)

PROBLEM_COLUMNS: list[str] = ["case", "row", "patient_id", "severity", "code", "file", "message"]
CASE_COLUMNS: list[str] = ["case", "row", "patient_id", "status", "n_errors", "n_warnings", "codes"]
CSV_COLUMNS: list[str] = ["row", "patient_id", "status", "severity", "code", "file", "message"]


@dataclass(frozen=True)
class CheckOptions:
    """What :func:`check_case` needs besides the case (picklable, for worker processes).

    Attributes:
        phases: Phases every case must have.
        label: Tumour label for cases whose own ``label`` is None.
        spacing_rtol: Relative spacing tolerance (mask vs its phase).
        origin_atol_voxels: Origin tolerance in voxels of the phase image.
        direction_atol: Tolerance on direction cosines.
        lesions: Lesion policy (``error`` makes ``multiple_lesions`` an error, else a warning).
        min_lesion_volume_mm3: Smaller connected components are specks, not lesions.
    """

    phases: tuple[str, ...] = ("arterial", "nephrographic", "excretory")
    label: int | None = None
    spacing_rtol: float = 1e-3
    origin_atol_voxels: float = 0.01
    direction_atol: float = 1e-3
    lesions: str = "largest"
    min_lesion_volume_mm3: float = 10.0


class _Volume:
    """An image opened header-first; pixels on demand."""

    def __init__(self, path: Path, patient_id: str, series_uid: str | None) -> None:
        self.path = path
        self.patient_id = patient_id
        self.series_uid = series_uid
        self.n_series = 1
        self.chosen_uid: str | None = None
        self._image: sitk.Image | None = None
        if path.is_dir():
            try:
                series = dicom_series(path)
            except RuntimeError as exc:
                raise ImageError(f"cannot list DICOM series: {_short(exc)}", patient_id=patient_id, path=path) from None
            self.n_series = len(series)
            self.chosen_uid, _ = choose_series(path, series_uid=series_uid, patient_id=patient_id, series=series)
            self._image = read_dicom_series(path, patient_id=patient_id, series_uid=self.chosen_uid, series=series)
            self.geometry = image_geometry(self._image)
        else:
            self.geometry = read_image_information(path, patient_id=patient_id)

    @classmethod
    def from_image(cls, path: Path, patient_id: str, image: sitk.Image) -> _Volume:
        """A volume already in memory (a mask decoded by cohort.masks)."""
        vol = cls.__new__(cls)
        vol.path, vol.patient_id, vol.series_uid, vol.n_series, vol.chosen_uid = path, patient_id, None, 1, None
        vol._image = image
        vol.geometry = image_geometry(image)
        return vol

    @property
    def image(self) -> sitk.Image:
        if self._image is None:
            try:
                self._image = sitk.ReadImage(str(self.path))
            except RuntimeError as exc:
                raise ImageError(
                    f"cannot read the pixels: {_short(exc)}", patient_id=self.patient_id, path=self.path
                ) from None
        return self._image


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


class _Checker:
    """Runs the image rules of one case, collecting problems and never raising."""

    def __init__(self, case: Case, options: CheckOptions) -> None:
        self.case = case
        self.options = options
        self.problems: list[Problem] = []

    def add(self, code: str, message: str, file: Path | str = "", severity: str = "error") -> None:
        self.problems.append(
            Problem(self.case.patient_id, code, severity, message, str(file), self.case.row)  # type: ignore[arg-type]
        )

    def guarded(self, what: str, file: Path | str, fn: object, *args: object) -> object:
        """Call ``fn(*args)``; an unexpected exception becomes a ``check_failed`` problem."""
        try:
            return fn(*args)  # type: ignore[operator]
        except ImageError as exc:
            self.add(
                "unreadable",
                f"{exc.message} (during the {what} check); re-export the file, it may be truncated or corrupt",
                file,
            )
            return None
        except Exception as exc:  # noqa: BLE001 - one broken check must not stop the others
            self.add(
                "check_failed",
                f"the {what} check crashed ({type(exc).__name__}: {_short(exc)}); inspect this file by hand "
                "and report the message if the file looks fine",
                file,
            )
            return None

    # -- opening ---------------------------------------------------------------------------
    def open(self, name: str, path: Path) -> _Volume | None:
        what = "mask" if name == "mask" else f"{name} image"
        if not path.exists():
            self.add(
                "file_missing",
                f"{what} not found; fix the '{name}' path in the manifest (relative paths start at the "
                "manifest's folder) or add the file",
                path,
            )
            return None
        try:
            vol = _Volume(path, self.case.patient_id, self.case.series_uids.get(name))
        except (ImageError, RuntimeError) as exc:
            message = exc.message if isinstance(exc, ImageError) else _short(exc)
            self.add(
                "unreadable",
                f"{what} cannot be read: {message}. Use NIfTI (.nii/.nii.gz), NRRD, MHA or a DICOM series "
                "folder, and check the file is complete",
                path,
            )
            return None
        if vol.n_series > 1 and self.case.series_uids.get(name) is None:
            self.add(
                "multiple_series",
                f"{what} folder holds {vol.n_series} DICOM series; the largest ({vol.chosen_uid}) is used. Add a "
                f"'{name}_series_uid' column to choose another",
                path,
                severity="warning",
            )
        g = vol.geometry
        if g.dimension != 3:
            self.add(
                "not_3d",
                f"{what} is {g.dimension}D (size {g.size}); give a 3D volume (all slices of the series)",
                path,
            )
            return None
        if min(g.size) < 2:
            self.add(
                "not_3d",
                f"{what} has size {g.size}: a single slice, not a volume; give the whole series",
                path,
            )
            return None
        if g.components != 1:
            self.add(
                "not_scalar",
                f"{what} has {g.components} components per voxel (RGB/vector); save it as a single-channel image",
                path,
            )
            return None
        return vol

    # -- rules ------------------------------------------------------------------------------
    def check_mask(self, vol: _Volume) -> None:
        path = vol.path
        arr = sitk.GetArrayViewFromImage(vol.image)
        values = np.unique(arr)
        nonzero = values[values != 0]
        label = self.case.label if self.case.label is not None else self.options.label
        if np.any(nonzero != np.rint(nonzero)):
            self.add(
                "mask_not_binary",
                f"mask holds non-integer values (e.g. {float(nonzero[nonzero != np.rint(nonzero)][0]):g}): an "
                "interpolated or probability map? Threshold it and save an integer label image",
                path,
            )
            return
        present = sorted(int(v) for v in nonzero)
        if label is not None:
            if label not in present:
                self.add(
                    "mask_empty",
                    f"mask has no voxel with label {label} (labels present: {present or 'none'}); "
                    "choose an existing label with --label N or fix the mask",
                    path,
                )
            return
        if not present:
            self.add(
                "mask_empty",
                "mask is empty (no non-zero voxel); draw the tumour or check you gave the right mask file",
                path,
            )
        elif len(present) > 1:
            counts = {v: int(np.count_nonzero(arr == v)) for v in present[:10]}
            self.add(
                "mask_not_binary",
                f"mask is not binary: labels {present} (voxels per label {counts}); choose the tumour label "
                "with --label N (or a 'label' column in the manifest)",
                path,
            )

    def check_geometry(self, mask: ImageGeometry, ref: ImageGeometry, ref_name: str, path: Path) -> None:
        o = self.options
        diffs = []
        if tuple(mask.size) != tuple(ref.size):
            diffs.append(f"size {mask.size} vs {ref.size}")
        ms, rs = np.asarray(mask.spacing), np.asarray(ref.spacing)
        if ms.shape != rs.shape or np.any(np.abs(ms - rs) > o.spacing_rtol * np.abs(rs)):
            diffs.append(f"spacing {_fmt(mask.spacing)} vs {_fmt(ref.spacing)} mm")
        mo, ro = np.asarray(mask.origin), np.asarray(ref.origin)
        if mo.shape != ro.shape or np.any(np.abs(mo - ro) > o.origin_atol_voxels * float(np.min(rs))):
            diffs.append(f"origin {_fmt(mask.origin)} vs {_fmt(ref.origin)} mm")
        md, rd = np.asarray(mask.direction), np.asarray(ref.direction)
        if md.shape != rd.shape or np.any(np.abs(md - rd) > o.direction_atol):
            diffs.append(f"direction {_fmt(mask.direction)} vs {_fmt(ref.direction)}")
        if diffs:
            self.add(
                "mask_geometry_mismatch",
                f"mask does not match the {ref_name} image it was drawn on: {'; '.join(diffs)}. Give the mask "
                f"of this {ref_name} series (or resample it onto the {ref_name} image with nearest-neighbour "
                "interpolation), or set cohort.mask_phase to the phase it was drawn on",
                path,
            )

    def check_overlap(self, name: str, vol: _Volume, ref_name: str, ref: _Volume) -> None:
        lo1, hi1 = vol.geometry.physical_bounds()
        lo2, hi2 = ref.geometry.physical_bounds()
        if np.all(lo1 <= hi2) and np.all(lo2 <= hi1):
            return
        self.add(
            "phases_no_overlap",
            f"the {name} image covers {_box(lo1, hi1)} mm but the {ref_name} image covers {_box(lo2, hi2)} mm: "
            "they share no physical space, so registration cannot align them. Check that both files belong to "
            "this patient and that origins/directions were exported correctly",
            vol.path,
        )

    def check_hu(self, name: str, vol: _Volume) -> None:
        mm = sitk.MinimumMaximumImageFilter()
        mm.Execute(vol.image)
        lo, hi = float(mm.GetMinimum()), float(mm.GetMaximum())
        reason = None
        if lo >= 0 and hi <= 255:
            reason = "looks like 8-bit display values (0–255), not HU"
        elif lo >= 0 and hi <= 4095:
            reason = "looks like raw uncalibrated scanner values (0–4095) with the rescale intercept not applied"
        elif lo >= 0:
            reason = "has no negative values, yet air is about −1000 HU and fat about −100 HU"
        elif hi - lo < 100:
            reason = "spans less than 100 units, as a normalised (z-scored or 0–1) image would"
        if reason:
            self.add(
                "not_hu",
                f"{name} intensities range {lo:g}..{hi:g}, which {reason}. Export the original CT in Hounsfield "
                "units (DICOM with RescaleSlope/RescaleIntercept, or NIfTI/NRRD of the HU values)",
                vol.path,
            )

    # -- hospital masks and lesions (issue 15) -----------------------------------------------
    def open_structured_mask(self, ref: _Volume | None) -> _Volume | None:
        """A DICOM-SEG / RTSTRUCT / Slicer mask, read onto the mask phase's grid (see cohort.masks)."""
        case = self.case
        try:
            image = read_structured_mask(
                case.mask,
                segment=case.mask_segment,
                label=case.label if case.label is not None else self.options.label,
                reference=ref.image if ref is not None else None,
                patient_id=case.patient_id,
                reference_series_uid=ref.chosen_uid if ref is not None else None,
            )
        except ImageError as exc:
            self.add("mask_unreadable", exc.message, case.mask)
            return None
        return _Volume.from_image(Path(case.mask), case.patient_id, image)

    def check_lesions(self, vol: _Volume) -> None:
        label = self.case.label if self.case.label is not None else self.options.label
        arr = sitk.GetArrayViewFromImage(vol.image)
        if label is not None and not is_structured_mask(vol.path):
            mask = sitk.GetImageFromArray((arr == label).astype(np.uint8))
            mask.CopyInformation(vol.image)
        elif np.count_nonzero(np.unique(arr)) > 1:
            return  # not binary and no label: reported by check_mask
        else:
            mask = vol.image
        found = find_lesions(mask, min_volume_mm3=self.options.min_lesion_volume_mm3)
        if found.count > 1:
            self.add(
                "multiple_lesions",
                f"mask holds {found.describe()}; shape features of a multi-lesion mask are meaningless. Run "
                "'rccgrade lesions MANIFEST --out DIR --policy largest' (or 'each': one row per lesion) to write "
                "one-lesion masks",
                vol.path,
                severity="error" if self.options.lesions == "error" else "warning",
            )

    # -- driver -----------------------------------------------------------------------------
    def run(self) -> list[Problem]:
        case = self.case
        vols: dict[str, _Volume] = {}
        for name, path in case.images.items():
            vol = self.guarded(f"{name} reading", path, self.open, name, Path(path))
            if isinstance(vol, _Volume):
                vols[name] = vol
        mask_vol = None
        if case.mask != NO_PATH:
            opener = (self.open_structured_mask, vols.get(case.mask_phase)) if is_structured_mask(case.mask) else None
            got = self.guarded("mask reading", case.mask, *(opener or (self.open, "mask", Path(case.mask))))
            mask_vol = got if isinstance(got, _Volume) else None
        if mask_vol is not None:
            self.guarded("mask content", mask_vol.path, self.check_mask, mask_vol)
            self.guarded("lesion count", mask_vol.path, self.check_lesions, mask_vol)
            ref = vols.get(case.mask_phase)
            if ref is not None:
                self.guarded(
                    "mask geometry",
                    mask_vol.path,
                    self.check_geometry,
                    mask_vol.geometry,
                    ref.geometry,
                    case.mask_phase,
                    mask_vol.path,
                )
        ref_name = case.mask_phase if case.mask_phase in vols else next(iter(vols), None)
        if ref_name is not None:
            for name, vol in vols.items():
                if name != ref_name:
                    self.guarded("phase overlap", vol.path, self.check_overlap, name, vol, ref_name, vols[ref_name])
        for name, vol in vols.items():
            self.guarded(f"{name} HU range", vol.path, self.check_hu, name, vol)
        return self.problems


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _box(lo: np.ndarray, hi: np.ndarray) -> str:
    return " × ".join(f"[{a:.1f}, {b:.1f}]" for a, b in zip(lo, hi, strict=True))


def check_case(case: Case, options: CheckOptions | None = None) -> list[Problem]:
    """Run the image rules (files, dimensions, mask, geometry, overlap, HU) on one case.

    Manifest-level rules (labels, duplicates, clinical types) come from ``Cohort.issues``.
    Never raises: a crashing rule becomes a ``check_failed`` problem.
    """
    return _Checker(case, options or CheckOptions()).run()


def _check_item(item: tuple[Case, CheckOptions]) -> list[Problem]:
    return check_case(item[0], item[1])


@dataclass
class ValidationReport:
    """Result of :func:`validate_cohort`.

    Attributes:
        problems: One row per (case, problem): columns ``case`` (position in the cohort), ``row``
            (manifest line), ``patient_id, severity, code, file, message``, in manifest order with
            errors first.
        cases: One row per case: ``case, row, patient_id, status`` (``usable``/``unusable``),
            ``n_errors``, ``n_warnings``, ``codes`` (semicolon-separated).
        clinical_missing: Missing values per clinical column.
        clinical_types: Clinical column → numeric/categorical.
    """

    problems: pd.DataFrame
    cases: pd.DataFrame
    clinical_missing: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    clinical_types: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every case is usable."""
        return bool((self.cases["status"] == "usable").all())

    @property
    def usable(self) -> list[str]:
        """Patient ids of usable cases, in manifest order."""
        return self.cases.loc[self.cases["status"] == "usable", "patient_id"].tolist()

    @property
    def unusable(self) -> list[str]:
        """Patient ids of unusable cases, in manifest order."""
        return self.cases.loc[self.cases["status"] != "usable", "patient_id"].tolist()

    def codes(self, patient_id: str) -> set[str]:
        """Problem codes reported for a patient."""
        return set(self.problems.loc[self.problems["patient_id"] == patient_id, "code"])

    def summary(self) -> str:
        """One line: counts of cases, usable, unusable and warnings."""
        n = len(self.cases)
        n_bad = len(self.unusable)
        n_warn = int((self.problems["severity"] == "warning").sum())
        return f"{n} cases: {n - n_bad} usable, {n_bad} unusable; {n_warn} warning(s)"

    def to_frame(self) -> pd.DataFrame:
        """validation.csv as a table: one row per (case, problem), plus one row for a case without problems."""
        rows = []
        for rec in self.cases.to_dict(orient="records"):
            mine = self.problems[self.problems["case"] == rec["case"]]
            if mine.empty:
                rows.append({**{c: "" for c in CSV_COLUMNS}, "row": rec["row"], "patient_id": rec["patient_id"]})
                rows[-1]["status"] = rec["status"]
            for prob in mine.to_dict(orient="records"):
                rows.append({c: prob.get(c, "") for c in CSV_COLUMNS} | {"status": rec["status"]})
        return pd.DataFrame(rows, columns=CSV_COLUMNS)

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` as CSV (creating the folder)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)
        return path


_SEVERITY_ORDER = {"error": 0, "warning": 1}


def validate_cohort(
    cohort_or_manifest: Cohort | str | Path,
    *,
    label: int | None = None,
    settings: CohortSettings | None = None,
    parallel: ParallelSettings | None = None,
    clinical_csv: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Check every case of a cohort (or of a manifest, loaded first) and report every problem.

    Args:
        cohort_or_manifest: A loaded cohort, or the path of a manifest CSV.
        label: Tumour label for multi-label masks, for cases without a manifest ``label``
            (default: ``settings.label``).
        settings: Cohort settings (phases, tolerances, typing).
        parallel: Executor settings (default: local processes, all cores).
        clinical_csv: Clinical CSV when a manifest path is given.
        progress: Optional ``progress(done, total)`` callback.

    Returns:
        The report; ``report.ok`` is False when any case is unusable.

    Raises:
        CohortError: only for structural manifest problems (see :func:`load_cohort`).
    """
    settings = settings or CohortSettings()
    if isinstance(cohort_or_manifest, Cohort):
        cohort = cohort_or_manifest
    else:
        cohort = load_cohort(cohort_or_manifest, clinical_csv=clinical_csv, settings=settings)
    options = CheckOptions(
        phases=tuple(settings.phases),
        label=label if label is not None else settings.label,
        spacing_rtol=settings.spacing_rtol,
        origin_atol_voxels=settings.origin_atol_voxels,
        direction_atol=settings.direction_atol,
        lesions=settings.lesions,
        min_lesion_volume_mm3=settings.min_lesion_volume_mm3,
    )
    items = [(case, options) for case in cohort.cases]
    outcomes: list[Outcome[list[Problem]]] = run_cases(
        _check_item, items, keys=[c.patient_id for c in cohort.cases], settings=parallel, progress=progress
    )

    order = {(c.row, c.patient_id): i for i, c in enumerate(cohort.cases)}
    located: list[tuple[int, Problem]] = [(order.get((p.row, p.patient_id), -1), p) for p in cohort.issues]
    for i, (case, outcome) in enumerate(zip(cohort.cases, outcomes, strict=True)):
        if outcome.ok and outcome.value is not None:
            located.extend((i, p) for p in outcome.value)
        else:
            message = f"validation of this case crashed: {outcome.error}"
            located.append((i, Problem(case.patient_id, "check_failed", "error", message, "", case.row)))
    located.sort(key=lambda item: (item[0] if item[0] >= 0 else len(order), _SEVERITY_ORDER[item[1].severity]))
    prob_frame = pd.DataFrame(
        [
            {
                "case": i,
                "row": p.row,
                "patient_id": p.patient_id,
                "severity": p.severity,
                "code": p.code,
                "file": p.file,
                "message": p.message,
            }
            for i, p in located
        ],
        columns=PROBLEM_COLUMNS,
    )
    case_rows = []
    for i, case in enumerate(cohort.cases):
        mine = [p for j, p in located if j == i]
        n_err = sum(p.severity == "error" for p in mine)
        n_warn = sum(p.severity == "warning" for p in mine)
        case_rows.append(
            {
                "case": i,
                "row": case.row,
                "patient_id": case.patient_id,
                "status": "unusable" if n_err else "usable",
                "n_errors": n_err,
                "n_warnings": n_warn,
                "codes": ";".join(dict.fromkeys(p.code for p in mine)),
            }
        )
    report = ValidationReport(
        problems=prob_frame,
        cases=pd.DataFrame(case_rows, columns=CASE_COLUMNS),
        clinical_missing=cohort.clinical_missing() if cohort.clinical_types else pd.Series(dtype="int64"),
        clinical_types=dict(cohort.clinical_types),
    )
    log.info("validation: %s", report.summary())
    return report
