"""rccgrade.radiomics stage: PyRadiomics features per phase, stability ICC, parallel/Dask execution.

Public API:
    * :func:`extract_radiomics` — the stage (FeatureTable ``rad:<phase>:<feature>``, diagnostics,
      failures, ``stability.csv``), cached per case and phase.
    * :class:`RadiomicsInput`, :func:`inputs_from_cohort`, :func:`inputs_from_preprocess_dir` — inputs.
    * :func:`load_params` / :func:`validate_params` — PyRadiomics parameter files (schema-validated).
    * :func:`icc` — ICC(3,1) and ICC(2,1) vectorised over features.
    * :func:`load_stability`, :func:`stable_features` — for the selection stage.
    * :class:`RadiomicsSettings`, :class:`StabilitySettings` — the settings.
"""

from rccgrade.radiomics.extract import (
    RadiomicsInput,
    RadiomicsResult,
    extract_radiomics,
    inputs_from_cohort,
    inputs_from_preprocess_dir,
    load_stability,
    stable_features,
)
from rccgrade.radiomics.icc import icc
from rccgrade.radiomics.params import load_params, validate_params
from rccgrade.radiomics.settings import RadiomicsSettings, StabilitySettings

__all__ = [
    "RadiomicsInput",
    "RadiomicsResult",
    "RadiomicsSettings",
    "StabilitySettings",
    "extract_radiomics",
    "icc",
    "inputs_from_cohort",
    "inputs_from_preprocess_dir",
    "load_params",
    "load_stability",
    "stable_features",
    "validate_params",
]
