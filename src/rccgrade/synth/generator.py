"""Render one synthetic triple-phase CT case with its tumour mask, clinical values and ground truth.

Steps for a patient (each reproducible from ``SeedSequence([seed, patient_index])``):

1. Truth (:func:`rccgrade.synth.latent.draw_patient`): factors, clinical values, outcome, centre,
   misalignment.
2. Anatomy, tumour design, kinetics and the image grid (anatomy generator).
3. A tissue label map on the grid padded along z (so moved phases have anatomy at their edges).
4. Per phase: the tissue HU lookup, the tumour and peritumoural fields; the arterial phase is the
   reference (identity); nephrographic and excretory are resampled (linear) through the inverse of
   their misalignment so that ``moving(x) = anatomy(T⁻¹(x))``.
5. Per phase: the centre's point-spread function and kernel-shaped noise (noise generator).
6. The mask is the tumour (viable and necrotic parts) on the arterial grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from rccgrade.synth.acquisition import (
    CENTER_PROFILES,
    Grid,
    apply_scanner,
    choose_grid,
    misalignment_transform,
    noise_sd,
)
from rccgrade.synth.anatomy import Anatomy, draw_anatomy, paint_anatomy
from rccgrade.synth.kinetics import HU_TABLE, PHASES, PatientKinetics, Tissue, draw_kinetics, phase_lut
from rccgrade.synth.latent import PatientDraw, child_generators, draw_patient, patient_id, truth_row
from rccgrade.synth.tumour import TumourParams, apply_tumour_hu, design_tumour, render_tumour

SIZES: tuple[str, ...] = ("small", "realistic")
PAD_MM: float = 25.0
"""Extra anatomy rendered above and below the field of view (mm) for the moved phases."""


@dataclass
class SynthCase:
    """One generated patient.

    Attributes:
        patient_id: Identifier (``syn0000`` …).
        images: Phase → SimpleITK float32 image (HU).
        mask: uint8 SimpleITK image (1 = tumour) on the arterial grid.
        clinical: Clinical values as written to the manifest (None = missing).
        truth: Ground truth row (p_high, latent factors, applied misalignment, image parameters).
        grade: ISUP grade 1–4.
        high_grade: 1 for ISUP 3–4.
        center: Centre label.
        labels: uint8 :class:`~rccgrade.synth.kinetics.Tissue` label map on the arterial grid (for tests
            and evaluation; not written to disk).
    """

    patient_id: str
    images: dict[str, sitk.Image]
    mask: sitk.Image
    clinical: dict[str, float | str | None]
    truth: dict[str, Any]
    grade: int
    high_grade: int
    center: str
    labels: sitk.Image

    def array(self, phase: str) -> np.ndarray:
        """The phase's voxels as a (z, y, x) float32 array (HU)."""
        return sitk.GetArrayFromImage(self.images[phase])

    def mask_array(self) -> np.ndarray:
        """The mask's voxels as a (z, y, x) uint8 array."""
        return sitk.GetArrayFromImage(self.mask)


@dataclass(frozen=True)
class CaseDesign:
    """Everything about a case except its voxels (cheap to compute).

    Attributes:
        draw: Truth part (factors, clinical values, outcome, centre, misalignment).
        anatomy: Patient anatomy.
        tumour: Tumour parameters.
        kinetics: Contrast kinetics.
        grid: The image grid (shared by the three phases and the mask).
    """

    draw: PatientDraw
    anatomy: Anatomy
    tumour: TumourParams
    kinetics: PatientKinetics
    grid: Grid


def _design(
    patient_index: int, seed: int, size: str, center_weights: dict[str, float] | None = None
) -> tuple[CaseDesign, np.random.Generator, np.random.Generator]:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; use one of {SIZES}")
    draw = draw_patient(patient_index, seed, center_weights)
    _, rng_anat, rng_noise = child_generators(patient_index, seed)
    anatomy = draw_anatomy(rng_anat, draw)
    tp = design_tumour(rng_anat, anatomy, draw)
    kinetics = draw_kinetics(rng_anat)
    zs = []
    for kid in anatomy.kidneys:
        ext = kid.half_extent(1.1)
        zs += [kid.center[2] - ext[2], kid.center[2] + ext[2]]
    zs += [tp.center[2] - tp.max_radius - 6.0, tp.center[2] + tp.max_radius + 6.0]
    grid = choose_grid(
        size,
        rng_anat,
        body_center_xy=anatomy.body_center,
        body_extent_xy=(2.0 * anatomy.body_semi[0], 2.0 * anatomy.body_semi[1]),
        z_range=(min(zs), max(zs)),
    )
    return CaseDesign(draw, anatomy, tp, kinetics, grid), rng_anat, rng_noise


def design_case(
    patient_index: int, seed: int, size: str = "small", center_weights: dict[str, float] | None = None
) -> CaseDesign:
    """The :class:`CaseDesign` of a patient, identical to what :func:`generate_case` renders."""
    return _design(patient_index, seed, size, center_weights)[0]


def generate_case(
    patient_index: int, seed: int, size: str = "small", center_weights: dict[str, float] | None = None
) -> SynthCase:
    """Generate one patient; identical output for identical (patient_index, seed, size).

    Args:
        patient_index: 0-based index in the cohort (the patient id is ``syn{index:04d}``).
        seed: Cohort seed.
        size: ``small`` (48×96×96 voxels, coarse spacing; for tests) or ``realistic`` (in-plane
            0.6–0.9 mm, 256–512 matrix, 40–100 slices).
        center_weights: Acquisition mix (centre → weight, see
            :func:`rccgrade.synth.latent.center_probabilities`); None: the default mix. Changes which
            scanner images the patient, never the patient (factors, p_high, grade, clinical values).

    Returns:
        The :class:`SynthCase`.
    """
    design, rng_anat, rng_noise = _design(patient_index, seed, size, center_weights)
    draw, anatomy, tp, kinetics, grid = design.draw, design.anatomy, design.tumour, design.kinetics, design.grid
    profile = CENTER_PROFILES[draw.center]
    pad = math.ceil(PAD_MM / grid.spacing[2])
    pgrid = grid.padded_z(pad)
    labels = paint_anatomy(pgrid, anatomy, rng_anat)
    maps = render_tumour(pgrid, labels, tp, rng_anat)
    unenhanced = np.array([HU_TABLE[Tissue(i)][0] for i in range(max(Tissue) + 1)], dtype=np.float32)

    center_mm = grid.center
    nz = grid.shape_zyx[0]
    reference = grid.image(np.zeros(grid.shape_zyx, dtype=np.float32))
    images: dict[str, sitk.Image] = {}
    for phase in PHASES:
        hu = phase_lut(phase, kinetics, profile.iodine_scale)[labels]
        if maps is not None:
            base = unenhanced[labels[maps.slices]]
            apply_tumour_hu(hu, phase, maps, tp, kinetics, profile.iodine_scale, base)
        if phase == "arterial":
            out = np.ascontiguousarray(hu[pad : pad + nz])
        else:
            tr = misalignment_transform(draw.misalignment[phase], center_mm)
            moved = sitk.Resample(
                pgrid.image(hu), reference, tr.GetInverse(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32
            )
            out = sitk.GetArrayFromImage(moved)
        del hu
        out = apply_scanner(out, grid.spacing, profile, rng_noise)
        images[phase] = grid.image(out)

    art_labels = np.ascontiguousarray(labels[pad : pad + nz])
    tumour_labels = np.isin(art_labels, (Tissue.TUMOUR, Tissue.NECROSIS))
    mask = grid.image(tumour_labels.astype(np.uint8))

    truth = truth_row(draw)
    voxel_ml = grid.spacing[0] * grid.spacing[1] * grid.spacing[2] / 1000.0
    n_t = int(tumour_labels.sum())
    n_nec = int((art_labels == Tissue.NECROSIS).sum())
    kid = anatomy.kidneys[0] if tp.side == 1 else anatomy.kidneys[1]
    truth.update(
        {
            "image_size": size,
            "tumour_side": "left" if tp.side == 1 else "right",
            "tumour_volume_ml": n_t * voxel_ml,
            "tumour_equiv_diameter_mm": 2.0 * (3.0 * n_t * voxel_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0),
            "necrosis_fraction": n_nec / max(n_t, 1),
            "exophytic_position": tp.exophytic_position,
            "tumour_center_x_mm": float(tp.center[0]),
            "tumour_center_y_mm": float(tp.center[1]),
            "tumour_center_z_mm": float(tp.center[2]),
            "kidney_center_z_mm": float(kid.center[2]),
            "lobulation": tp.lobulation,
            "roughness_mm": tp.roughness_mm,
            "texture_coarse": tp.texture[0],
            "texture_mid": tp.texture[1],
            "texture_fine": tp.texture[2],
            "arterial_enhancement_hu": tp.enhancement * kinetics.bolus * profile.iodine_scale,
            "nephrographic_retention": tp.retention[1],
            "excretory_retention": tp.retention[2],
            "stranding_hu": tp.stranding_hu,
            "infiltration": tp.infiltration,
            "capsule": tp.capsule,
            "bolus": kinetics.bolus,
            "venous": kinetics.venous,
            "excretion": kinetics.excretion,
            "spacing_x_mm": grid.spacing[0],
            "spacing_y_mm": grid.spacing[1],
            "spacing_z_mm": grid.spacing[2],
            "size_x": grid.shape_zyx[2],
            "size_y": grid.shape_zyx[1],
            "size_z": grid.shape_zyx[0],
            "noise_sd_hu": noise_sd(profile, grid.spacing),
            "psf_sigma_mm": profile.psf_sigma_mm,
            "iodine_scale": profile.iodine_scale,
        }
    )
    for phase in ("nephrographic", "excretory"):
        tr = misalignment_transform(draw.misalignment[phase], center_mm)
        for ax, v in zip("xyz", center_mm, strict=True):
            truth[f"{phase}_c{ax}_mm"] = float(v)
        moved = np.asarray(tr.TransformPoint(tuple(float(v) for v in tp.center)))
        truth[f"{phase}_tumour_shift_mm"] = float(np.linalg.norm(moved - tp.center))
    return SynthCase(
        patient_id=patient_id(patient_index),
        images=images,
        mask=mask,
        clinical=dict(draw.clinical),
        truth=truth,
        grade=draw.grade,
        high_grade=draw.high_grade,
        center=draw.center,
        labels=grid.image(art_labels),
    )
