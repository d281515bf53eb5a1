"""Canonical orientation: every image and mask is reoriented to one axis convention first.

A NIfTI stored with a flipped axis and its DICOM twin hold the same physical image with different
array layouts. Tools that work in index space (PyRadiomics' resampling grid, 2D slicing, a CNN)
would see different data. Reorienting to LPS (DICOM's patient convention: +x left, +y posterior,
+z superior) makes the arrays identical.
"""

from __future__ import annotations

import SimpleITK as sitk

CANONICAL = "LPS"


def orientation_code(image: sitk.Image) -> str:
    """Three-letter orientation code (e.g. ``"LPS"``, ``"RAS"``) of an image's direction matrix."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_canonical(image: sitk.Image, orientation: str = CANONICAL) -> sitk.Image:
    """Permute/flip axes (no interpolation) so the image is stored in ``orientation``.

    The physical image is unchanged: only the index ↔ world mapping is rearranged, so voxel values
    are copied exactly. Oblique directions are reoriented to the closest axis permutation.
    """
    if orientation_code(image) == orientation:
        return image
    return sitk.DICOMOrient(image, orientation)
