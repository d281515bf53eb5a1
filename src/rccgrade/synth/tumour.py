"""The ccRCC: position, shape, internal structure, enhancement and peritumoural changes.

How each latent factor (z-score, higher = more aggressive) reaches the image (``σ`` = logistic):

* ``size``: diameter ``D = 45 mm · exp(0.5 z)`` clipped to 15–120 mm.
* ``margin``: lobulation amplitude ``0.04 + 0.14 σ(1.6 z)`` (fraction of the radius, 4 random
  low-order lobes) and a boundary roughness of ``(0.3 + 3 σ(1.6 z)) · min(1, R/15 mm)`` mm (a
  Gaussian field of correlation 2 mm displacing the surface).
* ``heterogeneity``: perfusion multiplier ``1 + H_c n_8mm + H_m n_3mm + H_f n_1.2mm`` with
  ``H_c = 0.06 + 0.22 σ``, ``H_m = 0.04 + 0.16 σ``, ``H_f = 0.03 + 0.12 σ`` (σ = σ(1.6 z)); the
  texture shrinks to 60% / 45% of it in the nephrographic / excretory phase.
* ``necrosis``: non-enhancing fraction ``0.55 σ(-1.4 + 1.5 z)`` of the tumour volume, central and
  irregular (20 HU, ≤ 5 HU enhancement).
* ``enhancement``: arterial enhancement ``E = clip(150 - 38 z, 45, 260)`` HU over an unenhanced 35 HU
  (× the patient's bolus factor and the centre's iodine scale).
* ``washout``: the nephrographic phase keeps ``clip(0.62 - 0.11 z, 0.3, 0.95)`` of ``E``, the
  excretory phase 72% of that.
* ``peritumoural``: within 8 mm outside the tumour surface, fat gains up to
  ``S = 20 + 100 σ(1.6 z)`` HU of streaky stranding (decaying with distance, e-folding 4 mm);
  enhancing tongues of tumour tissue (not in the mask) reach into the first 4 mm, their share rising
  with ``z``; renal parenchyma there loses up to ``20 σ(1.6 z)`` % of its enhancement; for low values
  a thin pseudocapsule (≤ 1.5 mm) appears instead.

The tumour arises from one kidney at a random non-hilar position; its centre lies at 0.55–1.2 of
the kidney's normalised radius (endophytic below 1, exophytic above), away from the spine and the
aorta and inside the abdominal cavity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rccgrade.synth.acquisition import Grid, smooth_noise
from rccgrade.synth.anatomy import Anatomy, box
from rccgrade.synth.kinetics import PHASES, PatientKinetics, Tissue
from rccgrade.synth.latent import PatientDraw, sigmoid

_PHASE_TEXTURE = (1.0, 0.6, 0.45)
_STRANDING_PHASE = (1.0, 1.2, 1.1)
_INFILTRABLE = (
    Tissue.FAT,
    Tissue.PERIRENAL_FAT,
    Tissue.SINUS_FAT,
    Tissue.CORTEX,
    Tissue.MEDULLA,
    Tissue.URINE,
    Tissue.BOWEL,
    Tissue.GAS,
    Tissue.LIVER,
    Tissue.SPLEEN,
)
_FATS = (Tissue.FAT, Tissue.PERIRENAL_FAT, Tissue.SINUS_FAT)
_PARENCHYMA = (Tissue.CORTEX, Tissue.MEDULLA)


@dataclass(frozen=True)
class TumourParams:
    """Image parameters of one tumour (derived from the latent factors; lengths in mm).

    Attributes:
        side: Kidney of origin (+1 left, -1 right).
        center: Centre (mm, scanner coordinates).
        radius: Nominal radius ``D/2``.
        exophytic_position: Normalised kidney radius of the centre (< 1 endophytic).
        lobe_dirs: (4, 3) unit vectors of the lobulation pattern.
        lobe_freq: (4,) angular frequencies.
        lobe_phase: (4,) phases.
        lobulation: Lobulation amplitude (fraction of the radius).
        roughness_mm: Boundary roughness amplitude.
        texture: (H_c, H_m, H_f) perfusion texture amplitudes.
        necrosis_fraction: Target non-enhancing volume fraction.
        base_hu: Unenhanced HU of viable tumour.
        enhancement: Arterial enhancement E (HU at iodine scale 1, before the bolus factor).
        retention: Fraction of E kept in (arterial, nephrographic, excretory).
        stranding_hu: Peritumoural fat stranding amplitude S.
        infiltration: Weight (0–1) of infiltrative changes.
        capsule: Weight (0–1) of a pseudocapsule.
    """

    side: int
    center: np.ndarray
    radius: float
    exophytic_position: float
    lobe_dirs: np.ndarray
    lobe_freq: np.ndarray
    lobe_phase: np.ndarray
    lobulation: float
    roughness_mm: float
    texture: tuple[float, float, float]
    necrosis_fraction: float
    base_hu: float
    enhancement: float
    retention: tuple[float, float, float]
    stranding_hu: float
    infiltration: float
    capsule: float

    @property
    def max_radius(self) -> float:
        """Largest possible surface distance from the centre (mm)."""
        return self.radius * (1.0 + 2.0 * self.lobulation) + 3.0 * self.roughness_mm


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def design_tumour(rng: np.random.Generator, anatomy: Anatomy, draw: PatientDraw) -> TumourParams:
    """Choose the tumour's kidney, position and image parameters from the patient's latent factors."""
    f = draw.factors
    radius = draw.diameter_mm / 2.0
    sm = float(sigmoid(1.6 * f["margin"]))
    sh = float(sigmoid(1.6 * f["heterogeneity"]))
    sp = float(sigmoid(1.6 * f["peritumoural"]))
    lobulation = 0.04 + 0.14 * sm
    roughness = (0.3 + 3.0 * sm) * min(1.0, radius / 15.0)
    side = 1 if rng.random() < 0.5 else -1
    kidney = anatomy.kidneys[0] if side == 1 else anatomy.kidneys[1]
    reach = radius * (1.0 + 2.0 * lobulation) + 3.0 * roughness
    ax_, ay_, ar = anatomy.aorta
    best: tuple[float, float, np.ndarray] | None = None  # (score, exo, centre)
    for attempt in range(40):
        q = _unit(rng, 1)[0]
        if q[0] < -0.3:  # not through the hilum
            q[0] = -q[0]
        exo = float(rng.uniform(0.55, 1.2)) if attempt < 30 else 0.55
        c = kidney.to_world(q * exo)
        d_aorta = math.hypot(c[0] - ax_, c[1] - ay_) - ar
        d_spine = math.hypot(c[0] - anatomy.body_center[0], c[1] - anatomy.spine_y) - anatomy.vertebra_radius
        in_cavity = sum(
            anatomy.inside_cavity(c[0] + dx, c[1] + dy, margin=2.0)
            for dx, dy in ((reach, 0.0), (-reach, 0.0), (0.0, reach), (0.0, -reach))
        )
        score = min(d_aorta - reach, d_spine - reach - 10.0, 0.0) + 50.0 * (in_cavity - 4)
        if best is None or score > best[0]:
            best = (score, exo, c)
        if score >= 0.0:
            break
    assert best is not None
    _, exo, c = best
    enh = float(np.clip(150.0 - 38.0 * f["enhancement"], 45.0, 260.0))
    ret_n = float(np.clip(0.62 - 0.11 * f["washout"], 0.3, 0.95))
    return TumourParams(
        side=side,
        center=np.asarray(c, dtype=float),
        radius=radius,
        exophytic_position=exo,
        lobe_dirs=_unit(rng, 4),
        lobe_freq=rng.integers(1, 4, size=4).astype(float) * math.pi,
        lobe_phase=rng.uniform(0.0, 2.0 * math.pi, 4),
        lobulation=lobulation,
        roughness_mm=roughness,
        texture=(0.06 + 0.22 * sh, 0.04 + 0.16 * sh, 0.03 + 0.12 * sh),
        necrosis_fraction=float(0.55 * sigmoid(-1.4 + 1.5 * f["necrosis"])),
        base_hu=float(rng.normal(35.0, 4.0)),
        enhancement=enh,
        retention=(1.0, ret_n, 0.72 * ret_n),
        stranding_hu=20.0 + 100.0 * sp,
        infiltration=sp,
        capsule=float(sigmoid(-1.6 * f["peritumoural"] - 1.0)),
    )


@dataclass
class TumourMaps:
    """Per-voxel tumour fields inside the tumour's bounding box of the render grid.

    Attributes:
        slices: (z, y, x) index slices of the box.
        viable: Viable (enhancing) tumour voxels (in the mask).
        necrotic: Necrotic voxels (in the mask).
        perfusion: Perfusion multiplier (float32; meaningful in viable voxels).
        distance: Approximate signed distance to the tumour surface (mm, > 0 outside).
        stranding: Stranding HU (before the phase factor) for fat voxels.
        tongues: Infiltrative tongues outside the mask.
        parenchyma_loss: Fraction of parenchymal enhancement lost (0–1).
        capsule: Pseudocapsule weight (0–1) per voxel.
    """

    slices: tuple[slice, slice, slice]
    viable: np.ndarray
    necrotic: np.ndarray
    perfusion: np.ndarray
    distance: np.ndarray
    stranding: np.ndarray
    tongues: np.ndarray
    parenchyma_loss: np.ndarray
    capsule: np.ndarray


def render_tumour(grid: Grid, labels: np.ndarray, tp: TumourParams, rng: np.random.Generator) -> TumourMaps | None:
    """Insert the tumour into ``labels`` (in place) and return its per-voxel fields.

    Returns:
        The :class:`TumourMaps`, or None when the tumour lies outside the grid.
    """
    reach = tp.max_radius + 8.0
    bb = box(grid, tp.center - reach, tp.center + reach)
    if bb is None:
        return None
    sl, X, Y, Z = bb
    dx, dy, dz = X - np.float32(tp.center[0]), Y - np.float32(tp.center[1]), Z - np.float32(tp.center[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + np.float32(1e-3)
    ux, uy, uz = dx / r, dy / r, dz / r
    lob = np.zeros_like(r)
    for d, fr, ph in zip(tp.lobe_dirs, tp.lobe_freq, tp.lobe_phase, strict=True):
        lob += np.cos(
            np.float32(fr) * (ux * np.float32(d[0]) + uy * np.float32(d[1]) + uz * np.float32(d[2])) + np.float32(ph)
        )
    r_local = np.float32(tp.radius) * (1.0 + np.float32(tp.lobulation / 2.0) * lob)
    shape = r.shape
    sp_zyx = (grid.spacing[2], grid.spacing[1], grid.spacing[0])

    def field(corr_mm: float) -> np.ndarray:
        return smooth_noise(rng, shape, tuple(corr_mm / s for s in sp_zyx))

    dist = r - r_local + np.float32(tp.roughness_mm) * field(2.0)
    sub = labels[sl]
    inside = (dist < 0) & np.isin(sub, _INFILTRABLE)
    if not inside.any():  # tiny tumour between voxel centres: keep the nearest voxel
        idx = np.unravel_index(np.argmin(dist), dist.shape)
        inside[idx] = True
    # Necrosis: central and irregular, a target fraction of the tumour volume.
    nec_score = (1.0 - r / r_local) + 0.5 * field(max(3.0, 0.25 * tp.radius))
    necrotic = np.zeros_like(inside)
    if tp.necrosis_fraction > 0 and inside.sum() >= 8:
        thr = np.quantile(nec_score[inside], 1.0 - tp.necrosis_fraction)
        necrotic = inside & (nec_score > thr)
    viable = inside & ~necrotic
    hc, hm, hf = tp.texture
    perf = 1.0 + hc * field(8.0) + hm * field(3.0) + hf * field(1.2)
    np.clip(perf, 0.15, None, out=perf)
    # Peritumoural zone.
    shell = (dist > 0) & (dist <= 8.0)
    decay = np.exp(-np.clip(dist, 0.0, None) / 4.0).astype(np.float32)
    streak = np.clip(0.5 + field(1.2), 0.0, None)
    stranding = np.where(shell & np.isin(sub, _FATS), np.float32(tp.stranding_hu) * decay * streak, 0.0).astype(
        np.float32
    )
    tongue_thr = 2.2 - 1.6 * tp.infiltration
    tongues = (dist > 0) & (dist <= 4.0) & (field(1.0) > tongue_thr) & np.isin(sub, _INFILTRABLE)
    loss = np.where(shell & np.isin(sub, _PARENCHYMA), 0.2 * tp.infiltration * decay, 0.0).astype(np.float32)
    capsule = np.where((dist > 0) & (dist <= 1.5) & np.isin(sub, _INFILTRABLE), tp.capsule, 0.0).astype(np.float32)
    sub[viable] = Tissue.TUMOUR
    sub[necrotic] = Tissue.NECROSIS
    return TumourMaps(
        slices=sl,
        viable=viable,
        necrotic=necrotic,
        perfusion=perf.astype(np.float32),
        distance=dist,
        stranding=stranding,
        tongues=tongues & ~inside,
        parenchyma_loss=loss,
        capsule=capsule,
    )


def apply_tumour_hu(
    hu: np.ndarray,
    phase: str,
    maps: TumourMaps,
    tp: TumourParams,
    kinetics: PatientKinetics,
    iodine_scale: float,
    parenchyma_hu: np.ndarray,
) -> None:
    """Write the tumour's and the peritumoural zone's HU of ``phase`` into ``hu`` (in place).

    Args:
        hu: The phase's HU array on the render grid (already holding the tissue lookup).
        phase: Phase name.
        maps: Output of :func:`render_tumour`.
        tp: Tumour parameters.
        kinetics: Patient kinetics.
        iodine_scale: Centre iodine scale.
        parenchyma_hu: Unenhanced HU of each voxel of the box (to take enhancement away from infiltrated
            parenchyma).
    """
    k = PHASES.index(phase)
    factor = kinetics.bolus if k == 0 else kinetics.venous
    enh = np.float32(tp.enhancement * tp.retention[k] * factor * iodine_scale)
    sub = hu[maps.slices]
    perf = 1.0 + (maps.perfusion - 1.0) * np.float32(_PHASE_TEXTURE[k])
    tumour_hu = np.float32(tp.base_hu) + enh * perf
    sub[maps.viable] = tumour_hu[maps.viable]
    tongue_hu = np.float32(tp.base_hu) + 0.8 * enh
    sub[maps.tongues] = tongue_hu
    sub += maps.stranding * np.float32(_STRANDING_PHASE[k])
    if np.any(maps.parenchyma_loss):
        sub -= maps.parenchyma_loss * np.clip(sub - parenchyma_hu, 0.0, None)
    capsule_hu = np.float32(40.0 + iodine_scale * (20.0, 50.0, 45.0)[k])
    w = maps.capsule
    sub += w * (capsule_hu - sub) * (~maps.viable & ~maps.necrotic)
