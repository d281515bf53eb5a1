"""The acquisition mix (``--centers``) changes which scanner images a patient, never the patient."""

from __future__ import annotations

import numpy as np
import pytest

from rccgrade.synth.acquisition import CENTER_PROFILES
from rccgrade.synth.generator import design_case
from rccgrade.synth.latent import (
    CENTERS,
    center_probabilities,
    draw_patient,
    parse_center_weights,
    sample_truth,
)

MIX = {"A": 0.1, "B": 0.25, "C": 0.15, "D": 0.5}


def test_mix_keeps_grade_model_and_clinical_values() -> None:
    """Planted bug caught: drawing the centre with more (or fewer) random numbers under a mix, or before
    ``p_high``, shifts the generator's stream and changes p_high / clinical values of later patients."""
    base = sample_truth(300, seed=5)
    mixed = sample_truth(300, seed=5, center_weights=MIX)
    same = [c for c in base.columns if c != "center"]
    np.testing.assert_array_equal(base["p_high"].to_numpy(), mixed["p_high"].to_numpy())
    for c in same:
        assert base[c].equals(mixed[c]), c
    assert (base["center"] != mixed["center"]).sum() > 50
    assert set(base["center"]) == {"A", "B", "C"}  # the default mix never uses D
    share_d = (mixed["center"] == "D").mean()
    assert 0.4 < share_d < 0.6


def test_mix_changes_acquisition_only_in_the_rendered_design() -> None:
    """The image design (anatomy, tumour, grid) of a patient is the same under any mix; only the centre moves."""
    for i in range(6):
        a = design_case(i, seed=2)
        b = design_case(i, seed=2, center_weights={"D": 1.0})
        assert b.draw.center == "D"
        assert a.draw.p_high == b.draw.p_high and a.draw.factors == b.draw.factors
        assert a.grid == b.grid
        assert repr(a.tumour) == repr(b.tumour) and repr(a.anatomy) == repr(b.anatomy)


def test_default_mix_is_unchanged() -> None:
    assert center_probabilities(None) == (0.45, 0.35, 0.20, 0.0)
    assert draw_patient(3, 1).center == draw_patient(3, 1, {"A": 0.45, "B": 0.35, "C": 0.20}).center
    assert set(CENTERS) == set(CENTER_PROFILES)


@pytest.mark.parametrize("text", ["A=1,B", "A=x", "E=1", "A=-1,B=2", "A=0,B=0"])
def test_bad_mix_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"acquisition mix|centre|weights"):
        parse_center_weights(text)


def test_parse_mix() -> None:
    assert parse_center_weights("A=0.1,B=0.25,C=0.15,D=0.5") == MIX
    assert center_probabilities({"A": 1.0, "D": 3.0}) == (0.25, 0.0, 0.0, 0.75)
