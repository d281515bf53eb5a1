"""Clinical column maps across hospitals and the unit mix-up check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rccgrade.cohort.column_map import apply_column_map, parse_column_map, unit_mismatch
from rccgrade.errors import CohortError, ConfigError


def test_parse_column_map_reads_model_name_then_cohort_column() -> None:
    assert parse_column_map(["hemoglobin=haemoglobin", " age = age_years "]) == {
        "hemoglobin": "haemoglobin",
        "age": "age_years",
    }


@pytest.mark.parametrize("bad", [["hemoglobin"], ["=x"], ["a="], ["a=b=c"], ["a=x", "a=y"], ["a=x", "b=x"]])
def test_parse_column_map_rejects_malformed_items(bad: list[str]) -> None:
    with pytest.raises(ConfigError, match="--map"):
        parse_column_map(bad)


def test_apply_column_map_renames_and_refuses_absent_or_clashing_columns() -> None:
    frame = pd.DataFrame({"patient_id": ["a"], "haemoglobin": ["13"], "age": ["60"]})
    out = apply_column_map(frame, {"hemoglobin": "haemoglobin"})
    assert list(out.columns) == ["patient_id", "hemoglobin", "age"]
    with pytest.raises(CohortError, match="not in the manifest"):
        apply_column_map(frame, {"hemoglobin": "hb"})
    with pytest.raises(CohortError, match="already has"):
        apply_column_map(frame, {"age": "haemoglobin"})


def test_hb_in_g_per_l_against_training_in_g_per_dl_is_a_factor_ten_mixup() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(13.0, 1.5, 300)
    new = rng.normal(13.0, 1.5, 40) * 10  # g/L
    found = unit_mismatch("clin:hemoglobin", new, float(np.median(train)), train.min(), train.max())
    assert found is not None and found.factor == 10.0
    assert "unit mix-up" in found.message and "clin:hemoglobin" in found.message
    back = unit_mismatch("clin:hemoglobin", train, 130.0, 80.0, 180.0)  # g/dL against g/L training
    assert back is not None and back.factor == pytest.approx(0.1)


def test_unit_check_is_quiet_inside_the_range_and_vague_off_powers_of_ten() -> None:
    assert unit_mismatch("x", np.array([12.0, 14.0, np.nan]), 13.0, 8.0, 18.0) is None
    assert unit_mismatch("x", np.array([np.nan]), 13.0, 8.0, 18.0) is None
    off = unit_mismatch("x", np.array([26.0, 27.0]), 13.0, 8.0, 18.0)  # ×2: outside, not a power of ten
    assert off is not None and math.isnan(off.factor) and "check the unit" in off.message
