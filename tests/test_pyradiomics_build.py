"""The PyRadiomics build is right: brain1 features match PyRadiomics' own baseline within 3%.

The baseline (``../shared/reference/pyradiomics/baseline``) was computed by PyRadiomics' authors in
full-python mode. This test reads the settings of the ``brain1`` column from the baseline itself
(``diagnostics_Configuration_Settings`` and ``…_EnabledImageTypes``), extracts every baseline
feature of the seven classes with ``radiomics.featureextractor`` (deprecated ones enabled by
name, so every baseline row is checked), and compares with PyRadiomics' upstream tolerance: 3%
relative difference. A broken C extension (``_cmatrices``/``_cshape``) or a numpy/SimpleITK
incompatibility shows up here as wrong numbers.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pandas as pd
import pytest

CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
CASE = "brain1"
RTOL = 0.03
ZERO_ATOL = 1e-9  # a baseline value of exactly 0 must be matched absolutely


def _baseline(reference_dir: Path, cls: str) -> pd.DataFrame:
    path = reference_dir / "pyradiomics" / "baseline" / f"baseline_{cls}.csv"
    if not path.is_file():
        pytest.skip(f"PyRadiomics baseline not found at {path}")
    return pd.read_csv(path, index_col=0, dtype=str)


@pytest.fixture(scope="module")
def extracted(reference_dir: Path) -> tuple[dict[str, pd.Series], dict[str, float]]:
    radiomics = pytest.importorskip("radiomics")
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    image = reference_dir / "pyradiomics" / f"{CASE}_image.nrrd"
    mask = reference_dir / "pyradiomics" / f"{CASE}_label.nrrd"
    if not image.is_file() or not mask.is_file():
        pytest.skip(f"{CASE} image/label not found under {reference_dir / 'pyradiomics'}")

    baselines = {cls: _baseline(reference_dir, cls)[CASE] for cls in CLASSES}
    settings = {cls: ast.literal_eval(b["diagnostics_Configuration_Settings"]) for cls, b in baselines.items()}
    image_types = {
        cls: ast.literal_eval(b["diagnostics_Configuration_EnabledImageTypes"]) for cls, b in baselines.items()
    }
    first = settings[CLASSES[0]]
    assert all(s == first for s in settings.values()), "baseline classes disagree on settings"
    assert all(t == {"Original": {}} for t in image_types.values())

    extractor = featureextractor.RadiomicsFeatureExtractor(**first)
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.disableAllFeatures()
    wanted = {
        cls: [name.split("_", 2)[2] for name in b.index if name.startswith(f"original_{cls}_")]
        for cls, b in baselines.items()
    }
    extractor.enableFeaturesByName(**wanted)
    result = extractor.execute(str(image), str(mask))
    values = {k: float(v) for k, v in result.items() if k.startswith("original_")}
    return baselines, values


@pytest.mark.parametrize("cls", CLASSES)
def test_brain1_matches_baseline(extracted: tuple[dict[str, pd.Series], dict[str, float]], cls: str) -> None:
    baselines, values = extracted
    expected = baselines[cls]
    rows = [name for name in expected.index if name.startswith(f"original_{cls}_")]
    assert rows, f"no feature rows for {cls} in the baseline"
    failures = []
    for name in rows:
        ref = float(expected[name])
        if name not in values:
            failures.append(f"{name}: not computed")
            continue
        got = values[name]
        ok = abs(got) <= ZERO_ATOL if ref == 0 else abs(got - ref) <= RTOL * abs(ref)
        if not ok:
            failures.append(f"{name}: got {got!r}, baseline {ref!r}")
    assert not failures, f"{len(failures)}/{len(rows)} {cls} features differ by > 3%:\n" + "\n".join(failures)
