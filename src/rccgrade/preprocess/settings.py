"""Settings of preprocessing (registration, ROIs, slice images).

Every field has a default, so ``PreprocessSettings()`` reproduces the reference study's choices:
phases registered rigidly to the mask's phase, 1 mm in-plane spacing, HU window level 40 / width 400,
ROI settings ``box``, ``tumour`` and ``dilated5mm``, the largest tumour cross-section, 224×224 images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ROI_RE = re.compile(r"^(box|tumour|tumor|dilated)(?:(\d+(?:[.p]\d+)?)mm)?$")


@dataclass(frozen=True)
class RoiSpec:
    """One ROI setting parsed from its name.

    Attributes:
        kind: ``box`` (bounding rectangle of the tumour on the slice, optionally grown by
            ``margin_mm``), ``tumour`` (pixels outside the mask set to background) or ``dilated``
            (mask grown by ``margin_mm`` in physical space, then applied).
        margin_mm: Margin in millimetres (0 for ``tumour``).
    """

    kind: Literal["box", "tumour", "dilated"]
    margin_mm: float = 0.0

    @property
    def name(self) -> str:
        """Canonical name: ``box``, ``box<N>mm``, ``tumour`` or ``dilated<N>mm`` (``2.5`` → ``2p5``)."""
        if self.kind == "tumour":
            return "tumour"
        if self.kind == "box" and self.margin_mm == 0:
            return "box"
        return f"{self.kind}{_fmt_mm(self.margin_mm)}mm"


def _fmt_mm(value: float) -> str:
    return f"{value:g}".replace(".", "p")


def parse_roi(name: str) -> RoiSpec:
    """Parse an ROI setting name (``box``, ``box3mm``, ``tumour``, ``dilated5mm``, ``dilated2p5mm``).

    Raises:
        ValueError: the name is not one of these forms (pydantic turns it into a ConfigError).
    """
    m = _ROI_RE.match(name.strip().lower())
    if m is None:
        raise ValueError(
            f"unknown ROI setting {name!r}; use 'box', 'box<N>mm', 'tumour' or 'dilated<N>mm' (e.g. 'dilated5mm')"
        )
    kind, margin = m.group(1), m.group(2)
    mm = float(margin.replace("p", ".")) if margin else 0.0
    if kind in ("tumour", "tumor"):
        if mm:
            raise ValueError(f"ROI {name!r}: 'tumour' takes no margin; use 'dilated{_fmt_mm(mm)}mm'")
        return RoiSpec("tumour")
    if kind == "dilated" and margin is None:
        raise ValueError(f"ROI {name!r}: give the dilation in mm, e.g. 'dilated5mm'")
    return RoiSpec(kind, mm)  # type: ignore[arg-type]


class RegistrationSettings(BaseModel):
    """How the other phases are registered to the mask's phase (SimpleITK).

    Attributes:
        enabled: Register at all (False for data already aligned: the phases are then only resampled
            onto the mask phase's grid).
        transform: ``rigid`` (Euler3D, 6 parameters) or ``affine`` (12 parameters).
        initializer: ``identity`` (default: start from the scanner's own alignment — phases of one
            examination share patient coordinates — rotating about the tumour centre), ``geometry``
            (CenteredTransformInitializer: align image centres; for phases with unrelated coordinates)
            or ``moments`` (align intensity centres of mass).
        metric_margin_mm: The metric is evaluated only inside the tumour mask dilated by this margin
            (mm), so breathing of distant organs does not drive the alignment of the kidney. 30 mm: with
            20 mm, coarse (3–4 mm) grids left too little structure around small tumours to fix rotations.
        clip_hu: Intensities are clamped to this HU range before registration. Without it the joint
            histogram spans air (−1000) to bone and the soft tissues around the kidney fall into a few
            bins, so mutual information barely changes with misalignment.
        histogram_bins: Bins of the Mattes mutual information joint histogram.
        sampling_percentage: Fraction of voxels (of the metric region) sampled per iteration.
        max_samples: Cap on the samples per iteration at every pyramid level (the fraction is lowered for
            large regions, e.g. a big tumour on a 0.7 mm grid). With the block-average pyramid, 10 000 gave
            the same residual vs truth on realistic synthetic cases as 20 000 and 50 000 before
            (bench/results/preprocess_realistic.json), in less time.
        seed: Seed of the metric sampling (fixed for determinism; ≥ 1 because SimpleITK reads 0 as
            "seed from the wall clock").
        shrink_factors: Multi-resolution pyramid, coarse to fine: nominal block size per level (the images are
            block-averaged, less along axes whose voxels are already coarse: :mod:`rccgrade.preprocess.pyramid`).
        smoothing_sigmas_mm: Extra Gaussian smoothing per level after block averaging, in millimetres (0: none;
            the block average is already the anti-aliasing filter).
        iterations: Maximum optimizer iterations per level.
        learning_rate: Maximum step of the regular-step gradient descent, in mm (scales from physical shift).
        min_step: Step length (mm) at which the optimizer stops.
        eval_spacing_mm: The metric before and after (quality control) is computed on every point of a
            grid with at least this spacing (mm) per axis over the region (0: the image's own grid). 3 mm
            still holds tens of thousands of points in a 30 mm margin around a tumour.
        eval_offsets: Copies of that grid, shifted by random sub-voxel offsets, over which the metric is
            averaged (see :func:`rccgrade.preprocess.registration.evaluate_metric`).
        threads: ITK threads used by one registration (1 gives bitwise-reproducible results).
        min_improvement: Relative metric improvement below which the result is called "worsened"
            and identity is kept (0: any improvement is accepted).
        unchanged_tolerance_mm: When the optimum does not improve the metric but moves no corner of the
            metric region by more than this (mm), the phases were already aligned: identity is kept
            without a flag (status ``unchanged``). Larger non-improving moves are flagged ``worsened``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    transform: Literal["rigid", "affine"] = "rigid"
    initializer: Literal["identity", "geometry", "moments"] = "identity"
    metric_margin_mm: float = Field(30.0, ge=0)
    clip_hu: tuple[float, float] = (-150.0, 400.0)
    histogram_bins: int = Field(50, ge=8)
    sampling_percentage: float = Field(0.5, gt=0, le=1)
    max_samples: int = Field(10_000, ge=1000)
    seed: int = Field(1, ge=1)
    shrink_factors: list[int] = [2, 1]
    smoothing_sigmas_mm: list[float] = [0.0, 0.0]
    iterations: int = Field(200, ge=1)
    learning_rate: float = Field(2.0, gt=0)
    min_step: float = Field(1e-3, gt=0)
    eval_spacing_mm: float = Field(3.0, ge=0)
    eval_offsets: int = Field(2, ge=1)
    threads: int = Field(1, ge=1)
    min_improvement: float = Field(0.0, ge=0)
    unchanged_tolerance_mm: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _levels_match(self) -> RegistrationSettings:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            raise ValueError("registration.shrink_factors and smoothing_sigmas_mm need the same (non-zero) length")
        if self.clip_hu[0] >= self.clip_hu[1]:
            raise ValueError(f"registration.clip_hu {self.clip_hu} must be (low, high) with low < high")
        return self


class PreprocessSettings(BaseModel):
    """Settings of preprocessing (registration, ROIs, slice images).

    Attributes:
        orientation: Canonical orientation every image and mask is reoriented to first.
        registration: Registration of the other phases to the mask's phase (``registration.enabled``
            switches it off for data already aligned).
        pad_value_hu: HU given to voxels that a registered phase does not cover.
        inplane_spacing_mm: In-plane pixel size of the slice images before cropping (the slice axis
            keeps its spacing, since the work is 2D).
        window_level: HU window centre.
        window_width: HU window width; HU are clipped to [level − width/2, level + width/2] and mapped
            linearly to [0, 1].
        rois: ROI settings (``box``, ``box<N>mm``, ``tumour``, ``dilated<N>mm``).
        crop_margin_mm: Context added around the tumour/dilated mask's bounding rectangle when cropping
            (the ``box`` setting uses its own margin instead). Pixels outside the ROI are 0 either way.
        slice_selection: ``largest`` (the largest tumour cross-section), ``topk`` (the ``top_k`` largest)
            or ``area_fraction`` (every slice whose tumour area is ≥ ``area_fraction`` × the maximum).
        top_k: Number of slices for ``topk``.
        area_fraction: Threshold for ``area_fraction`` (0–1].
        missing_phases: What fills the channels of absent phases: ``repeat`` (the nearest available
            phase in arterial → nephrographic → excretory order) or ``adjacent`` (with one phase only:
            the slices below, at and above the selected one; with two phases falls back to ``repeat``).
        image_size: Output height = width in pixels (aspect-preserving resize, then zero padding).
        qc: Write the QC montage per case and the cohort QC sheet.
        output_margin_mm: The registered images (``registered/<id>/<phase>.nii.gz``, read by radiomics)
            cover the tumour's bounding box grown by this margin (mm; at least the registration and ROI
            context) on the mask phase's grid, not the whole scan: every phase is cropped to it before
            registration and resampling, which makes preprocessing several times faster and its files small.
            50 mm holds every radiomics filter's support and peritumoural ring. None keeps whole images.
    """

    model_config = ConfigDict(extra="forbid")

    orientation: str = "LPS"
    registration: RegistrationSettings = RegistrationSettings()
    pad_value_hu: float = -1024.0
    inplane_spacing_mm: float = Field(1.0, gt=0)
    window_level: float = 40.0
    window_width: float = Field(400.0, gt=0)
    rois: list[str] = ["box", "tumour", "dilated5mm"]
    crop_margin_mm: float = Field(0.0, ge=0)
    slice_selection: Literal["largest", "topk", "area_fraction"] = "largest"
    top_k: int = Field(3, ge=1)
    area_fraction: float = Field(0.5, gt=0, le=1)
    missing_phases: Literal["repeat", "adjacent"] = "repeat"
    image_size: int = Field(224, ge=8)
    qc: bool = True
    output_margin_mm: float | None = Field(50.0, ge=0)

    @field_validator("rois")
    @classmethod
    def _valid_rois(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one ROI setting")
        names = [parse_roi(v).name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate ROI settings in {value}")
        return names

    @field_validator("orientation")
    @classmethod
    def _valid_orientation(cls, value: str) -> str:
        value = value.upper()
        axis_of = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
        if len(value) != 3 or sorted(axis_of.get(c, -1) for c in value) != [0, 1, 2]:
            raise ValueError(f"orientation {value!r} is not a 3-letter code such as 'LPS' or 'RAS'")
        return value

    @property
    def roi_specs(self) -> list[RoiSpec]:
        """The ROI settings, parsed."""
        return [parse_roi(r) for r in self.rois]
