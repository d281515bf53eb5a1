"""Kinetic features: how the tumour's attenuation and texture change between registered phases (``kin:…``).

The study has no unenhanced phase, so enhancement is measured between the three contrast phases, taken in
their time order arterial (corticomedullary, ~35 s) → nephrographic (~100 s) → excretory (~5 min). For two
phases ``a`` before ``b`` and a statistic ``s`` of the tumour's HU values (``mean``, ``p10``, ``p50``,
``p90`` … on the registered voxels inside the mask, no resampling, percentiles with numpy's linear
interpolation):

* ``tumour_<s>_<b>_minus_<a>`` = s(b) − s(a) (HU). nephrographic − arterial is the late enhancement (negative
  in a tumour that peaks early, like most clear cell RCC); excretory − nephrographic and excretory − arterial
  are washouts (negative when the tumour washes out).
* with the last listed phase ``z`` and the earlier ones ``E``: the peak ``P = max_{e∈E} s(e)``,
  ``tumour_<s>_washout`` = P − s(z) (HU, positive when the tumour washes out after its peak) and
  ``tumour_<s>_relative_washout`` = (P − s(z)) / max(P, ``washout_min_peak_hu``): the floor (default 20 HU)
  keeps a barely enhancing or necrotic tumour (P near 0 HU) from dividing by ≈ 0, and keeps the feature defined
  for every patient (a missing value would make ``predict`` refuse the patient). Without an unenhanced phase
  this is washout relative to the peak attenuation, not the adrenal-protocol relative washout.

and for each chosen PyRadiomics feature ``f`` of the per-phase extraction (first-order and texture):

* ``<f>_<b>_minus_<a>`` = f(b) − f(a).

Tumour-to-cortex and tumour-to-aorta ratios are left out on purpose: finding the renal cortex and the aorta
automatically needs a segmentation rccgrade does not have, and a wrongly chosen reference (a vessel for the
cortex, the IVC for the aorta) would give a confident but wrong ratio (docs/radiomics.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rccgrade.cohort.types import PHASES
from rccgrade.features.naming import kinetic_column


def stat_name(percentile: float) -> str:
    """``10`` → ``p10``, ``2.5`` → ``p2.5``."""
    return f"p{float(percentile):g}"


def tumour_intensity(image: np.ndarray, tumour: np.ndarray, percentiles: Sequence[float]) -> dict[str, float]:
    """Mean and percentiles of the image values inside the tumour (HU), on the image's own voxels.

    Args:
        image: HU array ``(z, y, x)``.
        tumour: Mask on the same grid, nonzero inside.
        percentiles: Percentiles in 0 … 100 (numpy's linear interpolation).

    Returns:
        ``{"mean": …, "p10": …, …, "n_voxels": …}``.

    Raises:
        ValueError: shapes differ or the mask is empty.
    """
    image = np.asarray(image)
    inside = np.asarray(tumour) != 0
    if image.shape != inside.shape:
        raise ValueError(f"image {image.shape} and tumour mask {inside.shape} differ in shape")
    values = image[inside].astype(np.float64)
    if values.size == 0:
        raise ValueError("the tumour mask is empty")
    out = {"mean": float(values.mean())}
    for q in percentiles:
        out[stat_name(q)] = float(np.percentile(values, float(q)))
    out["n_voxels"] = float(values.size)
    return out


def ordered_phases(phases: Sequence[str]) -> list[str]:
    """Phases in time order (arterial, nephrographic, excretory)."""
    return [p for p in PHASES if p in phases]


def intensity_kinetics(
    stats: Mapping[str, Mapping[str, float]], statistics: Sequence[str], washout_min_peak_hu: float = 20.0
) -> dict[str, float]:
    """Enhancement and washout of the tumour's statistics between phases (formulas: module docstring).

    Args:
        stats: Phase → statistic name → value (:func:`tumour_intensity`).
        statistics: Statistic names to use (``mean``, ``p10`` …).
        washout_min_peak_hu: Floor of the relative washout's denominator (HU).

    Returns:
        Feature name (without ``kin:``) → value; empty with fewer than two phases.
    """
    phases = ordered_phases(list(stats))
    out: dict[str, float] = {}
    if len(phases) < 2:
        return out
    for s in statistics:
        for i, a in enumerate(phases):
            for b in phases[i + 1 :]:
                out[f"tumour_{s}_{b}_minus_{a}"] = float(stats[b][s]) - float(stats[a][s])
        last = phases[-1]
        peak = max(float(stats[p][s]) for p in phases[:-1])
        washout = peak - float(stats[last][s])
        out[f"tumour_{s}_washout"] = washout
        out[f"tumour_{s}_relative_washout"] = washout / max(peak, washout_min_peak_hu)
    return out


def feature_deltas(features: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Later-minus-earlier change of each named feature between every pair of phases.

    Args:
        features: Phase → PyRadiomics feature name → value.
        names: Feature names to compare.

    Returns:
        ``<name>_<later>_minus_<earlier>`` → value.

    Raises:
        KeyError: a named feature is missing from a phase (message lists them).
    """
    phases = ordered_phases(list(features))
    missing = sorted({n for p in phases for n in names if n not in features[p]})
    if missing:
        raise KeyError(missing)
    out: dict[str, float] = {}
    for n in names:
        for i, a in enumerate(phases):
            for b in phases[i + 1 :]:
                out[f"{n}_{b}_minus_{a}"] = float(features[b][n]) - float(features[a][n])
    return out


def kinetic_row(
    stats: Mapping[str, Mapping[str, float]],
    features: Mapping[str, Mapping[str, float]],
    percentiles: Sequence[float],
    delta_features: Sequence[str],
    washout_min_peak_hu: float = 20.0,
) -> dict[str, float]:
    """Every kinetic feature of one patient, as FeatureTable columns ``kin:<feature>``.

    Args:
        stats: Phase → :func:`tumour_intensity` of the tumour.
        features: Phase → PyRadiomics features of the tumour.
        percentiles: Percentiles used besides the mean.
        delta_features: PyRadiomics features whose change is a feature.
        washout_min_peak_hu: See :func:`intensity_kinetics`.

    Raises:
        KeyError: a delta feature was not extracted.
    """
    names = ["mean", *(stat_name(q) for q in percentiles)]
    row = intensity_kinetics(stats, names, washout_min_peak_hu)
    row.update(feature_deltas(features, delta_features))
    return {kinetic_column(k): v for k, v in row.items()}
