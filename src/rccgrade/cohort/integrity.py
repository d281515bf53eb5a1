"""Integrity rules of one case — the same code path for ``validate``, ``predict``, ``evaluate`` and the study.

:func:`check_case_images` runs every image rule on one case and :func:`check_case_clinical` every clinical-value
rule; both return :class:`~rccgrade.cohort.types.Problem` objects and never raise. ``rccgrade validate`` runs them
over a cohort and reports; ``rccgrade predict`` runs them before any feature is computed and turns each error into
a ``failed`` row, so garbage in never becomes a confident probability out.

Image rules (code — severity):
    ``file_missing``, ``unreadable`` — error
    ``truncated`` — error: a gzip stream that does not decompress to its end (CRC, length, end marker), a NIfTI
    file holding fewer voxel bytes than its header announces (ITK would read the rest as zeros), or an image
    whose last whole slices are exactly 0 (the mark of such zero filling in formats that cannot be checked)
    ``not_3d`` — error: not three dimensions, or fewer than ``min_slices`` voxels along an axis (one slice)
    ``not_scalar`` — error (RGB …)
    ``multiple_series`` — warning (DICOM folder with several series and no series UID given)
    ``mask_empty``, ``mask_not_binary`` — error
    ``mask_geometry_mismatch`` — error (size/spacing/origin/direction differ from the mask phase)
    ``mask_unreadable`` — error (DICOM-SEG / RTSTRUCT / .seg.nrrd: segment absent, off the mask phase grid …)
    ``multiple_lesions`` — warning (error with ``cohort.lesions: error``): count and volumes of the lesions
    ``phases_no_overlap`` — error (physical extents of two phases do not intersect)
    ``nonfinite_voxels`` — error: an image with no finite voxel, any NaN/±inf voxel inside the tumour mask, or
    more than ``max_nonfinite_fraction`` of the voxels (warning below it)
    ``not_hu`` — error (intensities not plausibly Hounsfield units, on the finite voxels)
    ``check_failed`` — error (a check itself crashed; the message carries the exception)

Clinical rules (error): ``clinical_not_finite`` (±inf/NaN held as a number), ``clinical_out_of_range`` (outside
the column's plausible range, or beyond ``clinical_max_abs`` in absolute value). Text that does not parse as a
number (``inf`` included: the manifest reader keeps only finite numbers) is ``clinical_wrong_type``, reported by
the manifest reader.

Images are opened header-first (``ImageFileReader.ReadImageInformation``); files are checked for completeness
while their pixels are read, in one pass (:func:`rccgrade.cohort.nifti_read.read_checked`). The voxel rules of a
phase other than the mask's run as soon as it is read and its pixels are released, so a case holds at most the
mask, the mask phase and one other phase in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rccgrade.cohort.clinical_rules import (  # noqa: F401 - moved there; names kept importable from here
    check_case_clinical,
    clinical_value_problem,
)
from rccgrade.cohort.io import (
    ImageGeometry,
    _first_line,
    choose_series,
    dicom_series,
    distinct_values,
    image_geometry,
    read_dicom_series,
    read_image_information,
)
from rccgrade.cohort.lesions import find_lesions
from rccgrade.cohort.manifest import NO_PATH
from rccgrade.cohort.masks import is_structured_mask, read_structured_mask
from rccgrade.cohort.nifti_read import read_checked
from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import Case, Problem
from rccgrade.cohort.voxel_rules import (
    HU_LIMIT,
    finite_range,
    nonfinite_problem,
    zero_tail_problem,
)
from rccgrade.errors import ImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckOptions:
    """What :func:`check_case` needs besides the case (picklable, for worker processes).

    Attributes:
        phases: Phases every case must have.
        label: Tumour label for cases whose own ``label`` is None.
        spacing_rtol: Relative spacing tolerance (mask vs its phase).
        origin_atol_voxels: Origin tolerance in voxels of the phase image.
        direction_atol: Tolerance on direction cosines.
        min_slices: Fewest voxels along every axis (``not_3d`` below).
        max_nonfinite_fraction: Largest fraction of NaN/±inf voxels outside the mask that is only a warning.
        lesions: Lesion policy (``error`` makes ``multiple_lesions`` an error, else a warning).
        min_lesion_volume_mm3: Smaller connected components are specks, not lesions.
    """

    phases: tuple[str, ...] = ("arterial", "nephrographic", "excretory")
    label: int | None = None
    spacing_rtol: float = 1e-3
    origin_atol_voxels: float = 0.01
    direction_atol: float = 1e-3
    min_slices: int = 3
    max_nonfinite_fraction: float = 0.0
    lesions: str = "largest"
    min_lesion_volume_mm3: float = 10.0

    @classmethod
    def from_settings(cls, settings: CohortSettings, label: int | None = None) -> CheckOptions:
        """The options of a cohort's settings (``label`` overrides ``settings.label``)."""
        return cls(
            phases=tuple(settings.phases),
            label=label if label is not None else settings.label,
            spacing_rtol=settings.spacing_rtol,
            origin_atol_voxels=settings.origin_atol_voxels,
            direction_atol=settings.direction_atol,
            min_slices=settings.min_slices,
            max_nonfinite_fraction=settings.max_nonfinite_fraction,
            lesions=settings.lesions,
            min_lesion_volume_mm3=settings.min_lesion_volume_mm3,
        )


class _Volume:
    """An image opened header-first; pixels on demand."""

    def __init__(self, path: Path, patient_id: str, series_uid: str | None) -> None:
        self.path = path
        self.patient_id = patient_id
        self.series_uid = series_uid
        self.n_series = 1
        self.chosen_uid: str | None = None
        self._image: sitk.Image | None = None
        self.deferred: list[Problem] | None = None
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
        vol.deferred = None
        vol.geometry = image_geometry(image)
        return vol

    def release(self) -> None:
        """Drop the pixels (a later :attr:`image` reads them again)."""
        self._image = None

    @property
    def image(self) -> sitk.Image:
        if self._image is None:
            try:
                self._image = sitk.ReadImage(str(self.path))
            except RuntimeError as exc:
                raise ImageError(
                    f"cannot read the pixels: {_first_line(exc)}", patient_id=self.patient_id, path=self.path
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
        if min(g.size) < self.options.min_slices:
            kind = "a single slice" if min(g.size) < 2 else f"only {min(g.size)} voxels along one axis"
            self.add(
                "not_3d",
                f"{what} has size {g.size}: {kind}, not a volume (at least {self.options.min_slices} are needed); "
                "give the whole series",
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
        if not path.is_dir():
            stored, image = read_checked(path)  # one pass: a gzip file is decoded and checked together
            if stored.problem is not None:
                self.add("truncated", f"{what} is incomplete: {stored.problem}", path)
                return None
            vol._image = image
        if name != "mask" and name != self.case.mask_phase:
            self.pixel_rules(name, vol, None)
        return vol

    # -- rules ------------------------------------------------------------------------------
    def check_mask(self, vol: _Volume) -> np.ndarray | None:
        """Mask content rules; the tumour voxels (bool, z-y-x) when the mask is usable, else None."""
        path = vol.path
        arr = sitk.GetArrayViewFromImage(vol.image)
        values = distinct_values(arr)
        nonzero = values[values != 0]
        label = self.case.label if self.case.label is not None else self.options.label
        if np.any(nonzero != np.rint(nonzero)):
            self.add(
                "mask_not_binary",
                f"mask holds non-integer values (e.g. {float(nonzero[nonzero != np.rint(nonzero)][0]):g}): an "
                "interpolated or probability map? Threshold it and save an integer label image",
                path,
            )
            return None
        present = sorted(int(v) for v in nonzero)
        if label is not None:
            if label not in present:
                self.add(
                    "mask_empty",
                    f"mask has no voxel with label {label} (labels present: {present or 'none'}); "
                    "choose an existing label with --label N or fix the mask",
                    path,
                )
                return None
            return np.asarray(arr == label)
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
        else:
            return np.asarray(arr != 0)
        return None

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

    def check_nonfinite(self, name: str, vol: _Volume, tumour: np.ndarray | None) -> None:
        """NaN/±inf voxels: none at all is fine; inside the tumour, or an image without a finite voxel, an error."""
        found = nonfinite_problem(sitk.GetArrayViewFromImage(vol.image), tumour, self.options.max_nonfinite_fraction)
        if found is not None:
            severity, text = found
            self.add("nonfinite_voxels", f"{name} image {text}", vol.path, severity=severity)

    def check_zero_tail(self, name: str, vol: _Volume) -> None:
        """Whole trailing slices of exactly 0 in a CT with air: a file cut short whose rest was read as zeros."""
        text = zero_tail_problem(sitk.GetArrayViewFromImage(vol.image))
        if text is not None:
            self.add("truncated", f"{name} image {text}", vol.path)

    def check_hu(self, name: str, vol: _Volume) -> None:
        bounds = finite_range(sitk.GetArrayViewFromImage(vol.image))
        if bounds is None:
            return  # no finite voxel: reported by nonfinite_voxels
        lo, hi = bounds
        reason = None
        if lo < -HU_LIMIT or hi > HU_LIMIT:
            reason = f"reaches beyond ±{HU_LIMIT:g}, far outside any CT scale (a corrupt file or a unit error?)"
        elif lo >= 0 and hi <= 255:
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
        elif np.count_nonzero(distinct_values(arr)) > 1:
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
        tumour: np.ndarray | None = None
        if case.mask != NO_PATH:
            opener = (self.open_structured_mask, vols.get(case.mask_phase)) if is_structured_mask(case.mask) else None
            got = self.guarded("mask reading", case.mask, *(opener or (self.open, "mask", Path(case.mask))))
            mask_vol = got if isinstance(got, _Volume) else None
        if mask_vol is not None:
            content = self.guarded("mask content", mask_vol.path, self.check_mask, mask_vol)
            self.guarded("lesion count", mask_vol.path, self.check_lesions, mask_vol)
            ref = vols.get(case.mask_phase)
            if ref is not None:
                n_before = len(self.problems)
                self.guarded(
                    "mask geometry",
                    mask_vol.path,
                    self.check_geometry,
                    mask_vol.geometry,
                    ref.geometry,
                    case.mask_phase,
                    mask_vol.path,
                )
                if isinstance(content, np.ndarray) and len(self.problems) == n_before:
                    tumour = content
        ref_name = case.mask_phase if case.mask_phase in vols else next(iter(vols), None)
        if ref_name is not None:
            for name, vol in vols.items():
                if name != ref_name:
                    self.guarded("phase overlap", vol.path, self.check_overlap, name, vol, ref_name, vols[ref_name])
        for name, vol in vols.items():
            if vol.deferred is not None:
                self.problems.extend(vol.deferred)
            else:
                self.pixel_rules(name, vol, tumour)
        return self.problems

    def pixel_rules(self, name: str, vol: _Volume, tumour: np.ndarray | None) -> None:
        """The voxel rules of one phase. A phase other than the mask's is checked as soon as it is opened and
        its pixels are released (their problems are listed later, in rule order), so one case never holds
        more than the mask phase and one other phase in memory."""
        early = name != self.case.mask_phase
        saved = self.problems
        if early:
            self.problems = []
        try:
            if self.guarded(f"{name} pixel reading", vol.path, lambda v: v.image, vol) is not None:
                inside = tumour if name == self.case.mask_phase else None
                self.guarded(f"{name} non-finite voxels", vol.path, self.check_nonfinite, name, vol, inside)
                self.guarded(f"{name} zero-filled slices", vol.path, self.check_zero_tail, name, vol)
                self.guarded(f"{name} HU range", vol.path, self.check_hu, name, vol)
        finally:
            if early:
                vol.deferred, self.problems = self.problems, saved
                vol.release()


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _box(lo: np.ndarray, hi: np.ndarray) -> str:
    return " × ".join(f"[{a:.1f}, {b:.1f}]" for a, b in zip(lo, hi, strict=True))


def check_case_images(case: Case, settings: CohortSettings | CheckOptions | None = None) -> list[Problem]:
    """Run every image rule (see the module docstring) on one case.

    Args:
        case: The case (its image and mask paths; nothing is loaded beforehand).
        settings: Cohort settings or ready :class:`CheckOptions` (default: the defaults).

    Returns:
        The problems found, in rule order; empty when the case is clean. Never raises: a crashing rule
        becomes a ``check_failed`` problem.
    """
    if settings is None:
        options = CheckOptions()
    elif isinstance(settings, CheckOptions):
        options = settings
    else:
        options = CheckOptions.from_settings(settings)
    return _Checker(case, options).run()
