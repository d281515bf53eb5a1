"""The radiomics stage hands the stability analysis only training patients (the ICC filter is fitted on them)."""

from __future__ import annotations

import pandas as pd

from rccgrade.study.outputs import SplitOutput
from rccgrade.study.stages.radiomics import stability_pool


def _split() -> SplitOutput:
    frame = pd.DataFrame(
        {"patient_id": ["a", "b", "c", "d"], "split": ["train", "test", "train", "train"], "y": [0, 1, 1, 0]}
    )
    return SplitOutput(split=frame, source="stratified random", key="k")


def test_pool_is_the_preprocessed_training_patients() -> None:
    assert stability_pool(_split(), {"a", "b", "c"}, enabled=True) == ["a", "c"]  # d failed preprocessing


def test_no_pool_without_stability_or_split() -> None:
    assert stability_pool(_split(), {"a", "b"}, enabled=False) is None
    assert stability_pool(None, {"a", "b"}, enabled=True) is None
