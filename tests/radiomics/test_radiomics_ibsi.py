"""IBSI phase-1 digital phantom with ``params/ibsi.yaml`` against the IBSI consensus values.

The phantom (5×4×4 voxels of 2 mm, 74 ROI voxels, grey levels 1–6) needs no resampling; bin width 1
leaves its grey levels unchanged, GLCM is symmetric at distance 1, NGTDM/NGLDM use distance 1 and
NGLDM α = 0 (reference_data_sets.rst). GLCM and GLRLM features in PyRadiomics are computed per
direction and averaged, which is IBSI's "3D, averaged"; GLSZM/NGTDM/NGLDM are 3D.

Tolerance: the reference tolerance where the manual gives one, else half a unit in the last
(third) significant digit of the reported value, since phantom values are exact to 3 digits.

Measured with PyRadiomics 3.0.1: every mapped feature agrees except the known deviations below.

Known deviations (documented, not hidden):
    * Kurtosis (IPH6): PyRadiomics reports kurtosis, IBSI excess kurtosis (kurtosis − 3).
      PyRadiomics 2.6454 vs IBSI −0.355; after subtracting 3 it agrees (checked below).
    * Minor axis length (P9VJ) and least axis length (7J51): PyRadiomics 9.245 / 8.478 vs IBSI
      9.31 ± 0.06 / 8.54 ± 0.05. PyRadiomics takes the eigenvalues of the voxel-coordinate covariance
      normalised by N, IBSI's consensus values correspond to N − 1: multiplying by sqrt(N / (N − 1))
      with N = 74 voxels brings both (and the major axis) onto the reference (checked below). On a
      real tumour of thousands of voxels the difference is negligible (< 0.05 %).
    * Not computed by PyRadiomics (no row compared): coefficient of variation, quartile coefficient of
      dispersion, median absolute deviation, histogram gradients/mode, volume histogram, local/global
      intensity peak, Moran's I / Geary's C, volume/area densities, centre-of-mass shift, compactness 1/2
      and spherical disproportion (deprecated, disabled in PyRadiomics 3), integrated intensity, grey
      level distance zone matrix, NGLDM "dependence count percentage/energy" and normalised grey level
      non-uniformity; "merged" aggregations (PyRadiomics averages over directions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk

from rccgrade.radiomics.extract import direct_features
from rccgrade.radiomics.params import load_params

# IBSI id -> (aggregation in reference_values.csv or None, PyRadiomics feature without "original_")
MAPPING: dict[str, tuple[str | None, str]] = {
    # morphology
    "RNU0": (None, "shape_MeshVolume"),
    "YEKZ": (None, "shape_VoxelVolume"),
    "C0JK": (None, "shape_SurfaceArea"),
    "2PR5": (None, "shape_SurfaceVolumeRatio"),
    "QCFX": (None, "shape_Sphericity"),
    "L0JK": (None, "shape_Maximum3DDiameter"),
    "TDIC": (None, "shape_MajorAxisLength"),
    "P9VJ": (None, "shape_MinorAxisLength"),
    "7J51": (None, "shape_LeastAxisLength"),
    "Q3CK": (None, "shape_Elongation"),
    "N17B": (None, "shape_Flatness"),
    # intensity statistics / histogram
    "Q4LE": (None, "firstorder_Mean"),
    "ECT3": (None, "firstorder_Variance"),
    "KE2A": (None, "firstorder_Skewness"),
    "IPH6": (None, "firstorder_Kurtosis"),
    "Y12H": (None, "firstorder_Median"),
    "1GSF": (None, "firstorder_Minimum"),
    "QG58": (None, "firstorder_10Percentile"),
    "8DWT": (None, "firstorder_90Percentile"),
    "84IY": (None, "firstorder_Maximum"),
    "SALO": (None, "firstorder_InterquartileRange"),
    "2OJQ": (None, "firstorder_Range"),
    "4FUA": (None, "firstorder_MeanAbsoluteDeviation"),
    "1128": (None, "firstorder_RobustMeanAbsoluteDeviation"),
    "N8CA": (None, "firstorder_Energy"),
    "5ZWQ": (None, "firstorder_RootMeanSquared"),
    "TLU2": (None, "firstorder_Entropy"),
    "BJ5W": (None, "firstorder_Uniformity"),
    # GLCM, 3D averaged
    "GYBY": ("3D, averaged", "glcm_MaximumProbability"),
    "60VM": ("3D, averaged", "glcm_JointAverage"),
    "UR99": ("3D, averaged", "glcm_SumSquares"),
    "TU9B": ("3D, averaged", "glcm_JointEntropy"),
    "TF7R": ("3D, averaged", "glcm_DifferenceAverage"),
    "D3YU": ("3D, averaged", "glcm_DifferenceVariance"),
    "NTRS": ("3D, averaged", "glcm_DifferenceEntropy"),
    "ZGXS": ("3D, averaged", "glcm_SumAverage"),
    "OEEB": ("3D, averaged", "glcm_ClusterTendency"),
    "P6QZ": ("3D, averaged", "glcm_SumEntropy"),
    "8ZQL": ("3D, averaged", "glcm_JointEnergy"),
    "ACUI": ("3D, averaged", "glcm_Contrast"),
    "8S9J": ("3D, averaged", "glcm_DifferenceAverage"),
    "IB1Z": ("3D, averaged", "glcm_Id"),
    "NDRX": ("3D, averaged", "glcm_Idn"),
    "WF0Z": ("3D, averaged", "glcm_Idm"),
    "1QCO": ("3D, averaged", "glcm_Idmn"),
    "E8JP": ("3D, averaged", "glcm_InverseVariance"),
    "NI2N": ("3D, averaged", "glcm_Correlation"),
    "QWB0": ("3D, averaged", "glcm_Autocorrelation"),
    "DG8W": ("3D, averaged", "glcm_ClusterTendency"),
    "7NFM": ("3D, averaged", "glcm_ClusterShade"),
    "AE86": ("3D, averaged", "glcm_ClusterProminence"),
    "R8DG": ("3D, averaged", "glcm_Imc1"),
    "JN9H": ("3D, averaged", "glcm_Imc2"),
    # GLRLM, 3D averaged
    "22OV": ("3D, averaged", "glrlm_ShortRunEmphasis"),
    "W4KF": ("3D, averaged", "glrlm_LongRunEmphasis"),
    "V3SW": ("3D, averaged", "glrlm_LowGrayLevelRunEmphasis"),
    "G3QZ": ("3D, averaged", "glrlm_HighGrayLevelRunEmphasis"),
    "HTZT": ("3D, averaged", "glrlm_ShortRunLowGrayLevelEmphasis"),
    "GD3A": ("3D, averaged", "glrlm_ShortRunHighGrayLevelEmphasis"),
    "IVPO": ("3D, averaged", "glrlm_LongRunLowGrayLevelEmphasis"),
    "3KUM": ("3D, averaged", "glrlm_LongRunHighGrayLevelEmphasis"),
    "R5YN": ("3D, averaged", "glrlm_GrayLevelNonUniformity"),
    "OVBL": ("3D, averaged", "glrlm_GrayLevelNonUniformityNormalized"),
    "W92Y": ("3D, averaged", "glrlm_RunLengthNonUniformity"),
    "IC23": ("3D, averaged", "glrlm_RunLengthNonUniformityNormalized"),
    "9ZK5": ("3D, averaged", "glrlm_RunPercentage"),
    "8CE5": ("3D, averaged", "glrlm_GrayLevelVariance"),
    "SXLW": ("3D, averaged", "glrlm_RunVariance"),
    "HJ9O": ("3D, averaged", "glrlm_RunEntropy"),
    # GLSZM, 3D (the csv labels small zone emphasis with id 9SAK)
    "9SAK": ("3D", "glszm_SmallAreaEmphasis"),
    "48P8": ("3D", "glszm_LargeAreaEmphasis"),
    "XMSY": ("3D", "glszm_LowGrayLevelZoneEmphasis"),
    "5GN9": ("3D", "glszm_HighGrayLevelZoneEmphasis"),
    "5RAI": ("3D", "glszm_SmallAreaLowGrayLevelEmphasis"),
    "HW1V": ("3D", "glszm_SmallAreaHighGrayLevelEmphasis"),
    "YH51": ("3D", "glszm_LargeAreaLowGrayLevelEmphasis"),
    "J17V": ("3D", "glszm_LargeAreaHighGrayLevelEmphasis"),
    "JNSA": ("3D", "glszm_GrayLevelNonUniformity"),
    "Y1RO": ("3D", "glszm_GrayLevelNonUniformityNormalized"),
    "4JP3": ("3D", "glszm_SizeZoneNonUniformity"),
    "VB3A": ("3D", "glszm_SizeZoneNonUniformityNormalized"),
    "P30P": ("3D", "glszm_ZonePercentage"),
    "BYLV": ("3D", "glszm_GrayLevelVariance"),
    "3NSA": ("3D", "glszm_ZoneVariance"),
    "GU8N": ("3D", "glszm_ZoneEntropy"),
    # NGTDM, 3D
    "QCDE": ("3D", "ngtdm_Coarseness"),
    "65HE": ("3D", "ngtdm_Contrast"),
    "NQ30": ("3D", "ngtdm_Busyness"),
    "HDEZ": ("3D", "ngtdm_Complexity"),
    "1X9X": ("3D", "ngtdm_Strength"),
    # NGLDM (PyRadiomics GLDM with alpha 0, distance 1), 3D
    "SODN": ("3D", "gldm_SmallDependenceEmphasis"),
    "IMOQ": ("3D", "gldm_LargeDependenceEmphasis"),
    "TL9H": ("3D", "gldm_LowGrayLevelEmphasis"),
    "OAE7": ("3D", "gldm_HighGrayLevelEmphasis"),
    "EQ3F": ("3D", "gldm_SmallDependenceLowGrayLevelEmphasis"),
    "JA6D": ("3D", "gldm_SmallDependenceHighGrayLevelEmphasis"),
    "NBZI": ("3D", "gldm_LargeDependenceLowGrayLevelEmphasis"),
    "9QMG": ("3D", "gldm_LargeDependenceHighGrayLevelEmphasis"),
    "FP8K": ("3D", "gldm_GrayLevelNonUniformity"),
    "Z87G": ("3D", "gldm_DependenceNonUniformity"),
    "OKJI": ("3D", "gldm_DependenceNonUniformityNormalized"),
    "1PFV": ("3D", "gldm_GrayLevelVariance"),
    "DNX2": ("3D", "gldm_DependenceVariance"),
    "FCBV": ("3D", "gldm_DependenceEntropy"),
}

KNOWN_DEVIATIONS = {"IPH6", "P9VJ", "7J51"}
"""IBSI ids where PyRadiomics is known to differ (see the module docstring)."""


def _tolerance(value: float, tol: float) -> float:
    if not math.isnan(tol):
        return tol
    if value == 0:
        return 5e-4
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 2)


@pytest.fixture(scope="module")
def comparison(reference_file: Callable[..., Path]) -> pd.DataFrame:
    image = sitk.ReadImage(str(reference_file("ibsi", "digital_phantom", "image", "phantom.nii.gz")))
    mask = sitk.ReadImage(str(reference_file("ibsi", "digital_phantom", "mask", "mask.nii.gz")))
    features = direct_features(image, mask, load_params("ibsi"))
    ref = pd.read_csv(reference_file("ibsi", "reference_values_digital_phantom.csv"))
    assert (ref["data"] == "dig. phantom").all() and len(ref) > 0
    rows = []
    for ibsi_id, (aggr, name) in MAPPING.items():
        sel = ref[
            (ref["ibsi_id"] == ibsi_id) & (ref["aggr_method"].isna() if aggr is None else ref["aggr_method"] == aggr)
        ]
        assert len(sel) == 1, f"{ibsi_id} {aggr}: {len(sel)} reference rows"
        value = float(sel["value"].iloc[0])
        tol = _tolerance(value, float(sel["tol"].iloc[0]))
        ours = features[f"original_{name}"]
        rows.append({"ibsi_id": ibsi_id, "name": name, "ref": value, "tol": tol, "ours": ours})
    table = pd.DataFrame(rows).set_index("ibsi_id")
    table["agrees"] = (table["ours"] - table["ref"]).abs() <= table["tol"]
    return table


def test_pinned_features_agree_with_ibsi(comparison: pd.DataFrame) -> None:
    agreeing = set(comparison.index[comparison["agrees"]])
    expected = set(MAPPING) - KNOWN_DEVIATIONS
    missing = expected - agreeing
    assert not missing, comparison.loc[sorted(missing)].to_string()


def test_known_deviations_still_deviate(comparison: pd.DataFrame) -> None:
    """If PyRadiomics fixes one, this fails and the documentation above must be updated."""
    assert not comparison.loc[sorted(KNOWN_DEVIATIONS), "agrees"].any()


def test_kurtosis_is_excess_kurtosis_plus_three(comparison: pd.DataFrame) -> None:
    row = comparison.loc["IPH6"]
    assert abs((row["ours"] - 3.0) - row["ref"]) <= row["tol"]


def test_axis_lengths_differ_by_covariance_normalisation(comparison: pd.DataFrame) -> None:
    n_voxels = 74
    scale = math.sqrt(n_voxels / (n_voxels - 1))
    for ibsi_id in ("TDIC", "P9VJ", "7J51"):
        row = comparison.loc[ibsi_id]
        assert abs(row["ours"] * scale - row["ref"]) <= row["tol"], ibsi_id
