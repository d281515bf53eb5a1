"""The clinical FeatureTable (``clin:<name>`` columns) of a cohort."""

from __future__ import annotations

import pandas as pd

from rccgrade.cohort.types import Cohort
from rccgrade.features.naming import clinical_column
from rccgrade.features.table import validate_table

__all__ = ["clinical_table"]


def clinical_table(cohort: Cohort) -> pd.DataFrame:
    """The cohort's clinical variables as a FeatureTable (``clin:<name>`` columns).

    Numeric variables stay float64 (NaN when missing); categorical ones keep the ``category`` dtype —
    imputation and one-hot encoding happen inside each model's pipeline, fitted on training patients.
    """
    frame = cohort.clinical_frame().copy()
    frame.columns = [clinical_column(c) for c in frame.columns]
    frame.index = frame.index.astype(str)
    frame.index.name = "patient_id"
    return validate_table(frame)
