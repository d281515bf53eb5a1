"""Abdominal anatomy at the level of the kidneys, as a tissue label map in physical coordinates.

Every structure is an analytic shape in millimetres (LPS: +x patient left, +y posterior, +z
superior), so the same anatomy renders on any grid. Cross-section: a super-elliptic body outline
(size from BMI and sex) with subcutaneous fat (thicker with BMI, in women), an abdominal wall
muscle layer, visceral fat with bowel loops (and a little gas), the liver (right, upper) and
spleen (left, upper), the spine (cancellous vertebral body with cortical rim, discs every ~35 mm,
canal with CSF, posterior elements), paraspinal and psoas muscles (psoas widening caudally), the
aorta (left-anterior of the spine) and the inferior vena cava (right). Each kidney is an oblique
ellipsoid (upper pole medial and posterior, hilum facing antero-medially) with cortex, medullary
pyramids separated by columns of Bertin, renal sinus fat, the pelvis and three calyx groups
(urine), a ureter running caudally, perirenal fat around it, a renal artery from the aorta and a
renal vein to the IVC (the left one crossing in front of the aorta).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from rccgrade.synth.acquisition import Grid, smooth_noise
from rccgrade.synth.kinetics import Tissue
from rccgrade.synth.latent import PatientDraw

SUPERELLIPSE_POWER: float = 2.6


@dataclass(frozen=True)
class Kidney:
    """One kidney.

    Attributes:
        side: +1 left, -1 right.
        center: Centre (mm, scanner coordinates).
        semi_axes: (lateral a, antero-posterior b, cranio-caudal c) half-lengths (mm).
        matrix: 3×3 local→world matrix; columns are the lateral, posterior and superior local axes.
    """

    side: int
    center: np.ndarray
    semi_axes: tuple[float, float, float]
    matrix: np.ndarray

    def to_local(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised local coordinates (u/a, v/b, w/c) of world points (broadcastable arrays)."""
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        m = self.matrix
        out = []
        for j in range(3):
            q = m[0, j] * dx + m[1, j] * dy + m[2, j] * dz
            out.append((q / self.semi_axes[j]).astype(np.float32))
        return out[0], out[1], out[2]

    def to_world(self, q: np.ndarray) -> np.ndarray:
        """World point of normalised local coordinates ``q`` (3,)."""
        return self.center + self.matrix @ (np.asarray(q) * np.asarray(self.semi_axes))

    def half_extent(self, scale: float) -> np.ndarray:
        """Half-size (mm) along x, y, z of the box around the ellipsoid scaled by ``scale``."""
        s = np.asarray(self.semi_axes) * scale
        return np.sqrt(((self.matrix * s[None, :]) ** 2).sum(axis=1))


@dataclass(frozen=True)
class Anatomy:
    """Patient anatomy (all lengths in mm, positions in scanner coordinates).

    Attributes:
        body_center: (x, y) of the body outline centre.
        body_semi: (half-width, half-depth) of the outline.
        subcut_fat: Subcutaneous fat thickness.
        wall: Abdominal wall muscle thickness.
        z0: z of the renal hila (reference level).
        spine_y: y of the vertebral body centre.
        vertebra_radius: Radius of the vertebral body.
        aorta: (x, y, radius).
        ivc: (x, y, semi-x, semi-y).
        kidneys: Left and right :class:`Kidney`.
        liver: (centre xyz, semi-axes xyz).
        spleen: (centre xyz, semi-axes xyz).
        disc_phase: z offset of the disc pattern.
    """

    body_center: tuple[float, float]
    body_semi: tuple[float, float]
    subcut_fat: float
    wall: float
    z0: float
    spine_y: float
    vertebra_radius: float
    aorta: tuple[float, float, float]
    ivc: tuple[float, float, float, float]
    kidneys: tuple[Kidney, Kidney]
    liver: tuple[tuple[float, float, float], tuple[float, float, float]]
    spleen: tuple[tuple[float, float, float], tuple[float, float, float]]
    disc_phase: float

    @property
    def cavity_semi(self) -> tuple[float, float]:
        """Half-width and half-depth of the abdominal cavity (inside the wall muscles)."""
        t = self.subcut_fat + self.wall
        return (self.body_semi[0] - t, self.body_semi[1] - t)

    def inside_cavity(self, x: float, y: float, margin: float = 0.0) -> bool:
        """Whether the in-plane point lies inside the cavity by at least ``margin`` mm."""
        a, b = self.cavity_semi
        a, b = a - margin, b - margin
        if a <= 0 or b <= 0:
            return False
        dx, dy = abs(x - self.body_center[0]) / a, abs(y - self.body_center[1]) / b
        return dx**SUPERELLIPSE_POWER + dy**SUPERELLIPSE_POWER < 1.0


def _rotation(alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Rz(alpha) @ Ry(beta) @ Rx(gamma) (radians)."""
    ca, sa, cb, sb, cg, sg = (
        math.cos(alpha),
        math.sin(alpha),
        math.cos(beta),
        math.sin(beta),
        math.cos(gamma),
        math.sin(gamma),
    )
    rz = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cg, -sg], [0.0, sg, cg]])
    return rz @ ry @ rx


def draw_anatomy(rng: np.random.Generator, draw: PatientDraw) -> Anatomy:
    """Draw a patient's anatomy; body size follows BMI and sex.

    Args:
        rng: The patient's anatomy generator.
        draw: The patient's truth (BMI, sex).
    """
    male = draw.male
    bmi = draw.bmi
    wall = float(rng.uniform(8.0, 14.0))
    half_w = float(np.clip(140.0 + 4.5 * (bmi - 25.0) + 10.0 * male + rng.normal(0.0, 8.0), 130.0, 220.0))
    half_d = half_w * float(rng.uniform(0.68, 0.80))
    fat = float(np.clip(10.0 + 2.0 * (bmi - 22.0) + 8.0 * (not male) + rng.normal(0.0, 4.0), 5.0, 60.0))
    fat = min(fat, half_w - wall - 125.0, half_d - wall - 95.0)
    fat = max(fat, 3.0)
    body_center = (float(rng.uniform(-15.0, 15.0)), float(rng.uniform(-25.0, 25.0)))
    bx, by = body_center
    z0 = float(rng.uniform(-450.0, -250.0))
    y_back = by + half_d - fat
    spine_y = y_back - float(rng.uniform(68.0, 78.0))
    vr = float(rng.uniform(16.0, 21.0))
    aorta = (
        bx + float(rng.uniform(8.0, 20.0)),
        spine_y - vr - float(rng.uniform(12.0, 20.0)),
        float(rng.uniform(9.0, 13.0)),
    )
    ivc = (bx - float(rng.uniform(18.0, 28.0)), spine_y - vr - float(rng.uniform(8.0, 16.0)), 13.0, 9.0)

    cav_a = half_w - fat - wall
    cav_b = half_d - fat - wall
    kidneys = []
    for side in (1, -1):
        semi = (
            float(rng.uniform(25.0, 31.0)),
            float(rng.uniform(19.0, 24.0)),
            float(rng.uniform(48.0, 60.0)),
        )
        ky = spine_y + float(rng.uniform(-2.0, 14.0))
        # Keep the kidney and its perirenal fat inside the cavity at its depth.
        yn = min(0.95, abs(ky - by) / cav_b)
        room = cav_a * (1.0 - yn**SUPERELLIPSE_POWER) ** (1.0 / SUPERELLIPSE_POWER)
        kx_off = min(float(rng.uniform(62.0, 80.0)), room - semi[0] - 14.0)
        kx_off = max(kx_off, vr + semi[0] + 8.0)
        kz = z0 + side * float(rng.uniform(4.0, 14.0))
        alpha = side * math.radians(float(rng.uniform(20.0, 40.0)))
        beta = -side * math.radians(float(rng.uniform(8.0, 18.0)))
        gamma = -math.radians(float(rng.uniform(8.0, 20.0)))
        base = np.diag([float(side), 1.0, 1.0])
        kidneys.append(
            Kidney(
                side=side,
                center=np.array([bx + side * kx_off, ky, kz]),
                semi_axes=semi,
                matrix=_rotation(alpha, beta, gamma) @ base,
            )
        )
    left, right = kidneys
    liver = (
        (bx - 0.45 * cav_a, by - 0.05 * cav_b, right.center[2] + float(rng.uniform(55.0, 75.0))),
        (0.62 * cav_a, 0.75 * cav_b, float(rng.uniform(75.0, 95.0))),
    )
    spleen = (
        (bx + 0.6 * cav_a, spine_y - 10.0, left.center[2] + float(rng.uniform(45.0, 65.0))),
        (float(rng.uniform(30.0, 45.0)), float(rng.uniform(30.0, 40.0)), float(rng.uniform(40.0, 55.0))),
    )
    return Anatomy(
        body_center=body_center,
        body_semi=(half_w, half_d),
        subcut_fat=fat,
        wall=wall,
        z0=z0,
        spine_y=spine_y,
        vertebra_radius=vr,
        aorta=aorta,
        ivc=ivc,
        kidneys=(left, right),
        liver=liver,
        spleen=spleen,
        disc_phase=float(rng.uniform(0.0, 35.0)),
    )


def box(
    grid: Grid, lo: np.ndarray | tuple[float, ...], hi: np.ndarray | tuple[float, ...]
) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """Index slices (z, y, x) of the grid voxels inside the physical box [lo, hi] (mm, x-y-z order).

    Returns:
        ``(slices, X, Y, Z)`` with broadcastable float32 coordinate arrays (shapes (1,1,nx),
        (1,ny,1), (nz,1,1)), or None when the box misses the grid.
    """
    sl = []
    coords = []
    for k in range(3):
        n = grid.shape_zyx[2 - k]
        i0 = max(0, math.floor((lo[k] - grid.origin[k]) / grid.spacing[k]))
        i1 = min(n, math.ceil((hi[k] - grid.origin[k]) / grid.spacing[k]) + 1)
        if i1 <= i0:
            return None
        sl.append(slice(i0, i1))
        coords.append((grid.origin[k] + grid.spacing[k] * np.arange(i0, i1)).astype(np.float32))
    X = coords[0][None, None, :]
    Y = coords[1][None, :, None]
    Z = coords[2][:, None, None]
    return (sl[2], sl[1], sl[0]), X, Y, Z


def _superellipse(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.abs(x / a) ** SUPERELLIPSE_POWER + np.abs(y / b) ** SUPERELLIPSE_POWER < 1.0


def paint_anatomy(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Render the anatomy's label map (uint8 :class:`Tissue` labels, shape ``grid.shape_zyx``).

    Args:
        grid: Where to render.
        anatomy: The patient's anatomy.
        rng: Generator for the bowel pattern.
    """
    nz, ny, nx = grid.shape_zyx
    xs = grid.axis(0).astype(np.float32)
    ys = grid.axis(1).astype(np.float32)
    zs = grid.axis(2).astype(np.float32)
    bx, by = anatomy.body_center
    X2 = (xs - bx)[None, :]
    Y2 = (ys - by)[:, None]
    a, b = anatomy.body_semi
    f, w = anatomy.subcut_fat, anatomy.wall

    plane = np.full((ny, nx), Tissue.AIR, dtype=np.uint8)
    plane[_superellipse(X2, Y2, a, b)] = Tissue.FAT
    plane[_superellipse(X2, Y2, a - f, b - f)] = Tissue.MUSCLE
    cavity2 = _superellipse(X2, Y2, a - f - w, b - f - w)
    plane[cavity2] = Tissue.FAT
    # Paraspinal muscles (posterior, z-invariant).
    sy = anatomy.spine_y - by
    for sgn in (1, -1):
        para = ((X2 - sgn * 38.0) / 32.0) ** 2 + ((Y2 - sy - 46.0) / 25.0) ** 2 < 1.0
        plane[para & _superellipse(X2, Y2, a - f, b - f)] = Tissue.MUSCLE
    # Aorta and IVC.
    ax_, ay_, ar = anatomy.aorta
    plane[((xs[None, :] - ax_) ** 2 + (ys[:, None] - ay_) ** 2) < ar**2] = Tissue.AORTA
    ix, iy, isx, isy = anatomy.ivc
    plane[((xs[None, :] - ix) / isx) ** 2 + ((ys[:, None] - iy) / isy) ** 2 < 1.0] = Tissue.IVC
    labels = np.broadcast_to(plane, (nz, ny, nx)).copy()

    # Bowel loops with a little gas: anterior cavity only.
    # The pattern is smooth (12 mm), so it is drawn on a grid of about 2 mm and repeated (saves time and
    # memory at 0.6–0.9 mm spacing).
    steps = [max(1, math.floor(2.0 / grid.spacing[k])) for k in (2, 1, 0)]
    coarse = tuple(math.ceil(n / st) for n, st in zip((nz, ny, nx), steps, strict=True))
    sig = tuple(12.0 / (grid.spacing[k] * st) for k, st in zip((2, 1, 0), steps, strict=True))
    field = smooth_noise(rng, coarse, sig)
    for ax, st in enumerate(steps):
        if st > 1:
            field = np.repeat(field, st, axis=ax)
    field = field[:nz, :ny, :nx]
    # Bowel fills the anterior cavity and thins out towards the retroperitoneum.
    y_lim = anatomy.spine_y - anatomy.vertebra_radius - 8.0
    threshold = (-0.1 + np.clip((ys[:, None] - y_lim) / 15.0, 0.0, 3.0)).astype(np.float32)
    bowel = (field > threshold[None, :, :]) & cavity2[None, :, :] & (labels == Tissue.FAT)
    labels[bowel] = Tissue.BOWEL
    labels[bowel & (field > 1.9)] = Tissue.GAS
    del field

    # Liver and spleen (inside the cavity only).
    for (center, semi), tissue in ((anatomy.liver, Tissue.LIVER), (anatomy.spleen, Tissue.SPLEEN)):
        bb = box(grid, np.subtract(center, semi), np.add(center, semi))
        if bb is None:
            continue
        sl, X, Y, Z = bb
        inside = ((X - center[0]) / semi[0]) ** 2 + ((Y - center[1]) / semi[1]) ** 2 + (
            (Z - center[2]) / semi[2]
        ) ** 2 < 1
        sub = labels[sl]
        sub[inside & np.isin(sub, (Tissue.FAT, Tissue.BOWEL, Tissue.GAS))] = tissue

    _paint_spine(labels, grid, anatomy, xs, ys, zs)
    for kidney in anatomy.kidneys:
        _paint_kidney(labels, grid, kidney, anatomy)
    _paint_renal_vessels(labels, grid, anatomy)
    return labels


def paint_tube(
    labels: np.ndarray,
    grid: Grid,
    points: list[np.ndarray],
    radius: float,
    tissue: Tissue,
    over: tuple[Tissue, ...],
) -> None:
    """Paint a tube of ``radius`` mm along the polyline ``points`` (mm), only over ``over`` labels."""
    for p0, p1 in itertools.pairwise(points):
        lo = np.minimum(p0, p1) - radius - 1.0
        hi = np.maximum(p0, p1) + radius + 1.0
        bb = box(grid, lo, hi)
        if bb is None:
            continue
        sl, X, Y, Z = bb
        seg = (p1 - p0).astype(np.float32)
        length2 = float(seg @ seg) or 1.0
        t = ((X - p0[0]) * seg[0] + (Y - p0[1]) * seg[1] + (Z - p0[2]) * seg[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        d2 = (X - p0[0] - t * seg[0]) ** 2 + (Y - p0[1] - t * seg[1]) ** 2 + (Z - p0[2] - t * seg[2]) ** 2
        sub = labels[sl]
        sub[(d2 < radius**2) & np.isin(sub, over)] = tissue


def _paint_renal_vessels(labels: np.ndarray, grid: Grid, anatomy: Anatomy) -> None:
    """Renal veins to the IVC (the left one crossing in front of the aorta) and renal arteries from the aorta."""
    ax_, ay_, ar = anatomy.aorta
    ix, iy, _, _ = anatomy.ivc
    soft = (*_SOFT, Tissue.PERIRENAL_FAT, Tissue.SINUS_FAT, Tissue.MUSCLE)
    for kidney in anatomy.kidneys:
        hilum = kidney.to_world((-0.75, -0.1, 0.0))
        outside = kidney.to_world((-1.25, -0.2, 0.0))
        z = float(hilum[2])
        if kidney.side == 1:
            vein = [hilum, outside, np.array([ax_, ay_ - ar - 7.0, z]), np.array([ix, iy, z - 5.0])]
        else:
            vein = [hilum, outside, np.array([ix, iy, z - 5.0])]
        paint_tube(labels, grid, vein, 5.0, Tissue.IVC, soft)
        artery = [np.array([ax_, ay_, z + 8.0]), outside + np.array([0.0, 4.0, 6.0]), hilum + np.array([0.0, 3.0, 5.0])]
        paint_tube(labels, grid, artery, 2.8, Tissue.AORTA, (*soft, Tissue.IVC))


def _paint_spine(
    labels: np.ndarray, grid: Grid, anatomy: Anatomy, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray
) -> None:
    bx = anatomy.body_center[0]
    vy, vr = anatomy.spine_y, anatomy.vertebra_radius
    X2 = (xs - bx)[None, :]
    Y2 = (ys - vy)[:, None]
    r2 = X2**2 + (Y2 * 1.15) ** 2
    body = r2 < vr**2
    cancellous = r2 < (vr - 2.5) ** 2
    canal = X2**2 + (Y2 - vr - 9.0) ** 2 < 8.0**2
    ring = (X2**2 + (Y2 - vr - 9.0) ** 2 < 14.0**2) & ~canal
    spinous = (np.abs(X2) < 4.0) & (np.abs(Y2 - vr - 30.0) < 12.0)
    # Psoas: lateral to the vertebral body, widening caudally.
    zrel = (zs - anatomy.z0)[:, None, None]
    psoas_semi = np.clip(12.0 - 0.12 * zrel, 6.0, 26.0)
    for sgn in (1, -1):
        cx = sgn * (vr + psoas_semi + 2.0)
        ps = ((X2[None] - cx) / psoas_semi) ** 2 + ((Y2[None] + 2.0) / 17.0) ** 2 < 1.0
        labels[ps & (labels != Tissue.AORTA) & (labels != Tissue.IVC)] = Tissue.MUSCLE
    disc = (np.mod(zs - anatomy.z0 - anatomy.disc_phase, 35.0) < 7.0)[:, None, None]
    labels[np.broadcast_to(body, labels.shape) & disc] = Tissue.DISC
    bone_body = np.broadcast_to(body, labels.shape) & ~disc
    labels[bone_body] = Tissue.BONE_CORTICAL
    labels[np.broadcast_to(cancellous, labels.shape) & ~disc] = Tissue.BONE_CANCELLOUS
    labels[:, ring | spinous] = Tissue.BONE_CORTICAL
    labels[:, canal] = Tissue.CSF


_SOFT = (Tissue.FAT, Tissue.BOWEL, Tissue.GAS, Tissue.LIVER, Tissue.SPLEEN)


def _paint_kidney(labels: np.ndarray, grid: Grid, kidney: Kidney, anatomy: Anatomy) -> None:
    ext = kidney.half_extent(1.45)
    bb = box(grid, kidney.center - ext, kidney.center + ext)
    if bb is None:
        return
    sl, X, Y, Z = bb
    un, vn, wn = kidney.to_local(X, Y, Z)
    rho2 = un**2 + vn**2 + wn**2
    sub = labels[sl]
    peri = (rho2 < 1.45**2) & np.isin(sub, _SOFT)
    sub[peri] = Tissue.PERIRENAL_FAT
    kid = rho2 < 1.0
    sinus = ((un + 0.5) / 0.6) ** 2 + (vn / 0.5) ** 2 + (wn / 0.62) ** 2 < 1.0
    hilum = (un < -0.55) & (np.abs(wn) < 0.3) & (np.abs(vn) < 0.45) & (rho2 < 1.1)
    pelvis = ((un + 0.55) / 0.32) ** 2 + (vn / 0.22) ** 2 + (wn / 0.28) ** 2 < 1.0
    calyx = np.zeros_like(kid)
    for wc in (-0.5, 0.0, 0.5):
        calyx |= ((un + 0.1) / 0.15) ** 2 + (vn / 0.15) ** 2 + ((wn - wc) / 0.13) ** 2 < 1.0
    phi = np.arctan2(wn, vn)
    medulla = (rho2 < 0.78**2) & (np.cos(7.0 * phi) > -0.25)
    sub[kid] = Tissue.CORTEX
    sub[kid & medulla] = Tissue.MEDULLA
    sub[(kid & sinus) | hilum] = Tissue.SINUS_FAT
    sub[kid & (pelvis | calyx)] = Tissue.URINE
    # Ureter: from the pelvis out of the hilum, then caudally towards the psoas.
    start = kidney.to_world((-1.0, 0.0, -0.05))
    z_lo = grid.origin[2]
    if start[2] <= z_lo:
        return
    end = np.array(
        [anatomy.body_center[0] + kidney.side * (anatomy.vertebra_radius + 22.0), anatomy.spine_y - 22.0, z_lo - 40.0]
    )
    lo = np.minimum(start, end) - 6.0
    hi = np.maximum(start, end) + 6.0
    hi[2] = start[2]
    bb = box(grid, lo, hi)
    if bb is None:
        return
    sl, X, Y, Z = bb
    t = (start[2] - Z) / (start[2] - end[2])
    cx = start[0] + t * (end[0] - start[0])
    cy = start[1] + t * (end[1] - start[1])
    tube = ((X - cx) ** 2 + (Y - cy) ** 2 < 3.0**2) & (Z - start[2] <= 0.0)
    sub = labels[sl]
    sub[tube & np.isin(sub, (*_SOFT, Tissue.PERIRENAL_FAT, Tissue.SINUS_FAT))] = Tissue.URINE
