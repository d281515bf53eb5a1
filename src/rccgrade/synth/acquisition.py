"""Acquisition model: image grid, centre-specific sharpness and noise, inter-phase misalignment.

Grid (LPS, identity direction; array order ``[z, y, x]`` as SimpleITK returns it):
    * ``small``: 48 × 96 × 96 voxels (z, y, x). In-plane spacing is chosen per patient so the body
      fits (≈ 2.9–5.2 mm); slice spacing 3–5 mm, coarser when needed so both kidneys and the tumour
      fit in 48 slices.
    * ``realistic``: in-plane spacing 0.6–0.9 mm (coarser only when a very large patient would not
      fit a 512 matrix), matrix 256–512 (multiple of 16), slice spacing drawn from common
      reconstructions (1–5 mm), 40–100 slices covering both kidneys and the tumour.
    * The origin is set like a scanner's: the field of view is centred on the table's isocentre
      (x, y ≈ 0 mm ± a few cm of patient offset) and the table position gives a large z origin.

Centres: each has a point-spread function (Gaussian, σ in mm, the reconstruction kernel), an image
noise level (HU at a reference voxel of 0.75 × 0.75 × 3 mm, scaled by √(reference volume / voxel
volume) but no lower than 35% of it), an iodine scale (tube voltage: 100 kVp gives ≈ 18% more HU
per mg iodine) and a calibration offset (HU). Noise is white noise filtered by the same kernel, so
it has the kernel's texture; its standard deviation after filtering is the target.

Misalignment: see :func:`misalignment_transform`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from rccgrade.synth.latent import Misalignment


@dataclass(frozen=True)
class CenterProfile:
    """Acquisition properties of one centre.

    Attributes:
        name: Centre label.
        psf_sigma_mm: Gaussian point-spread σ (mm) of the reconstruction kernel.
        noise_sd_hu: Noise standard deviation (HU) at the reference voxel volume.
        iodine_scale: HU per unit iodine relative to 120 kVp.
        hu_offset: Calibration offset (HU) added to every voxel inside the body.
        description: Human-readable scanner description.
    """

    name: str
    psf_sigma_mm: float
    noise_sd_hu: float
    iodine_scale: float
    hu_offset: float
    description: str


CENTER_PROFILES: dict[str, CenterProfile] = {
    "A": CenterProfile("A", 0.75, 12.0, 1.00, 0.0, "120 kVp, standard kernel"),
    "B": CenterProfile("B", 0.50, 18.0, 1.18, 3.0, "100 kVp, sharp kernel, more noise"),
    "C": CenterProfile("C", 1.10, 8.0, 0.97, -2.0, "120 kVp, smooth kernel, iterative reconstruction"),
    "D": CenterProfile("D", 0.40, 24.0, 1.30, 5.0, "80 kVp low dose, very sharp kernel, much more noise"),
}
"""Scanner profiles. ``D`` does not occur with the default mix (weight 0, see
:data:`rccgrade.synth.latent.DEFAULT_CENTER_WEIGHTS`); an acquisition mix (``--centers``) can bring it in."""

REFERENCE_VOXEL_MM3: float = 0.75 * 0.75 * 3.0
SMALL_SHAPE: tuple[int, int, int] = (48, 96, 96)
"""(z, y, x) voxels of the ``small`` size."""
_TRUNCATE: float = 3.0
REALISTIC_SLICE_MM: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)


@dataclass(frozen=True)
class Grid:
    """An image grid (identity direction).

    Attributes:
        shape_zyx: Array shape (z, y, x).
        spacing: (sx, sy, sz) in mm.
        origin: Physical point (mm, LPS) of voxel (0, 0, 0).
    """

    shape_zyx: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axis(self, k: int) -> np.ndarray:
        """Physical coordinates (mm) of the voxel centres along axis ``k`` (0=x, 1=y, 2=z)."""
        n = self.shape_zyx[2 - k]
        return self.origin[k] + self.spacing[k] * np.arange(n, dtype=np.float64)

    @property
    def center(self) -> tuple[float, float, float]:
        """Physical centre of the grid (mm)."""
        return tuple(self.origin[k] + 0.5 * self.spacing[k] * (self.shape_zyx[2 - k] - 1) for k in range(3))  # type: ignore[return-value]

    def padded_z(self, n: int) -> Grid:
        """The same grid with ``n`` extra slices below and above."""
        z, y, x = self.shape_zyx
        ox, oy, oz = self.origin
        return Grid((z + 2 * n, y, x), self.spacing, (ox, oy, oz - n * self.spacing[2]))

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image holding ``array`` (z, y, x) on this grid."""
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
        return img


def choose_grid(
    size: str,
    rng: np.random.Generator,
    *,
    body_center_xy: tuple[float, float],
    body_extent_xy: tuple[float, float],
    z_range: tuple[float, float],
) -> Grid:
    """Draw a patient's image grid that holds the body in-plane and ``z_range`` along z.

    Args:
        size: ``small`` or ``realistic``.
        rng: The patient's anatomy generator.
        body_center_xy: Body centre (mm) in scanner coordinates.
        body_extent_xy: Full body width and depth (mm).
        z_range: (lowest, highest) physical z (mm) that must be imaged.

    Returns:
        The :class:`Grid`.
    """
    fov_needed = max(body_extent_xy) + rng.uniform(20.0, 60.0)
    needed_z = z_range[1] - z_range[0]
    if size == "small":
        nz, ny, nx = SMALL_SHAPE
        sp = fov_needed / nx
        sz = max(float(rng.uniform(3.0, 5.0)), needed_z / (nz - 2))
    elif size == "realistic":
        sp = float(rng.uniform(0.6, 0.9))
        sp = max(sp, fov_needed / 512.0)
        nx = int(np.clip(math.ceil(fov_needed / sp / 16.0) * 16, 256, 512))
        ny = nx
        sz = float(rng.choice(REALISTIC_SLICE_MM, p=(0.1, 0.2, 0.1, 0.15, 0.15, 0.15, 0.15)))
        coverage = needed_z + rng.uniform(10.0, 60.0)
        nz = int(np.clip(round(coverage / sz), 40, 100))
        if nz * sz < needed_z + 4.0:
            sz = (needed_z + 4.0) / nz
    else:
        raise ValueError(f"unknown size {size!r}; use small or realistic")
    # Scanner-like origin: FOV centred near the isocentre; the patient lies off-centre by a few cm.
    fov_center = (body_center_xy[0] + rng.uniform(-8.0, 8.0), body_center_xy[1] + rng.uniform(-8.0, 8.0))
    zc = 0.5 * (z_range[0] + z_range[1]) + rng.uniform(-0.1, 0.1) * max(0.0, nz * sz - needed_z)
    origin = (
        fov_center[0] - 0.5 * sp * (nx - 1),
        fov_center[1] - 0.5 * sp * (ny - 1),
        zc - 0.5 * sz * (nz - 1),
    )
    return Grid((int(nz), int(ny), int(nx)), (float(sp), float(sp), float(sz)), origin)


def misalignment_transform(m: Misalignment, center: tuple[float, float, float]) -> sitk.Euler3DTransform:
    """The rigid transform mapping arterial physical points to the moving phase (mm, LPS).

    ``x_moving = R (x_arterial - c) + c + t`` where ``R`` is SimpleITK's ``Euler3DTransform`` rotation
    (default ZXY composition) of angles ``rotation_deg`` converted to radians, ``c = center`` (the
    centre of the arterial image) and ``t = translation_mm``. This is the transform a SimpleITK
    registration with the arterial image as *fixed* and the phase as *moving* estimates, so the two
    can be compared directly. The moving phase is rendered as ``moving(x) = anatomy(T⁻¹(x))``.
    """
    tr = sitk.Euler3DTransform()
    tr.SetCenter(tuple(float(c) for c in center))
    tr.SetRotation(*(math.radians(a) for a in m.rotation_deg))
    tr.SetTranslation(tuple(float(t) for t in m.translation_mm))
    return tr


def transform_from_truth(row: dict[str, float] | object, phase: str) -> sitk.Euler3DTransform:
    """Rebuild :func:`misalignment_transform` of ``phase`` from a ``truth.csv`` row (mapping or Series)."""
    get = row.__getitem__  # type: ignore[attr-defined]
    m = Misalignment(
        translation_mm=tuple(float(get(f"{phase}_t{a}_mm")) for a in "xyz"),  # type: ignore[arg-type]
        rotation_deg=tuple(float(get(f"{phase}_r{a}_deg")) for a in "xyz"),  # type: ignore[arg-type]
    )
    center = tuple(float(get(f"{phase}_c{a}_mm")) for a in "xyz")
    return misalignment_transform(m, center)  # type: ignore[arg-type]


def _psf_sigma_vox(spacing: tuple[float, float, float], psf_mm: float) -> tuple[float, float, float]:
    """Per-axis σ (voxels, z-y-x order) of kernel PSF combined with voxel integration (box → σ≈0.3)."""
    return tuple(math.sqrt((psf_mm / s) ** 2 + 0.3**2) for s in (spacing[2], spacing[1], spacing[0]))  # type: ignore[return-value]


def _kernel_norm(sigmas: tuple[float, ...]) -> float:
    """√Σ k² of the separable Gaussian kernel scipy applies (noise SD reduction factor)."""
    total = 1.0
    for s in sigmas:
        r = int(_TRUNCATE * s + 0.5)
        delta = np.zeros(2 * r + 1)
        delta[r] = 1.0
        k = ndimage.gaussian_filter1d(delta, s, mode="constant", truncate=_TRUNCATE)
        total *= float(np.sum(k**2))
    return math.sqrt(total)


def noise_sd(profile: CenterProfile, spacing: tuple[float, float, float]) -> float:
    """Target noise SD (HU) of a centre at a voxel size (see module docstring)."""
    vol = spacing[0] * spacing[1] * spacing[2]
    return profile.noise_sd_hu * float(np.clip(math.sqrt(REFERENCE_VOXEL_MM3 / vol), 0.35, 1.0))


def apply_scanner(
    hu: np.ndarray, spacing: tuple[float, float, float], profile: CenterProfile, rng: np.random.Generator
) -> np.ndarray:
    """Blur ``hu`` (z, y, x) with the centre's PSF and add kernel-shaped noise, in place where possible.

    Returns:
        float32 array: ``G * (hu + w)`` with ``w`` white noise scaled so that ``G * w`` has SD
        :func:`noise_sd`.
    """
    sig = _psf_sigma_vox(spacing, profile.psf_sigma_mm)
    scale = noise_sd(profile, spacing) / _kernel_norm(sig)
    noise = rng.standard_normal(hu.shape, dtype=np.float32)
    noise *= np.float32(scale)
    noise += hu
    out = ndimage.gaussian_filter(noise, sig, mode="nearest", truncate=_TRUNCATE, output=np.float32)
    if profile.hu_offset:
        np.add(out, np.float32(profile.hu_offset), out=out, where=out > -500.0)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: tuple[float, ...]) -> np.ndarray:
    """Standardised Gaussian random field of ``shape`` with correlation length ``sigma_vox`` (voxels).

    Generated on a grid coarser by about σ/1.5 per axis, smoothed there and linearly upsampled, so the
    cost does not grow with the correlation length.

    Returns:
        float32 array of ``shape`` with mean ≈ 0 and SD ≈ 1.
    """
    factors = [max(1.0, s / 1.5) for s in sigma_vox]
    coarse_shape = [max(2, math.ceil(n / f) + 2) for n, f in zip(shape, factors, strict=True)]
    field = rng.standard_normal(coarse_shape, dtype=np.float32)
    field = ndimage.gaussian_filter(field, [s / f for s, f in zip(sigma_vox, factors, strict=True)], mode="wrap")
    # Separable linear upsampling: one axis at a time.
    out = field
    for ax, (n, f) in enumerate(zip(shape, factors, strict=True)):
        pos = np.arange(n, dtype=np.float64) / f
        lo = np.floor(pos).astype(np.intp)
        w = (pos - lo).astype(np.float32)
        shp = [1] * len(shape)
        shp[ax] = n
        w = w.reshape(shp)
        out = np.take(out, lo, axis=ax) * (1 - w) + np.take(out, lo + 1, axis=ax) * w
    sd = float(out.std())
    out -= float(out.mean())
    if sd > 0:
        out /= sd
    return out.astype(np.float32, copy=False)
