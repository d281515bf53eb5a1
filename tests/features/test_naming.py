"""The one naming scheme: columns, sources and arms parse back to what built them; arm folders stay inside."""

from __future__ import annotations

import pytest

from rccgrade.errors import ConfigError
from rccgrade.features import naming as N
from rccgrade.safepath import child_path


def test_columns_round_trip() -> None:
    assert N.column_source(N.clinical_column("age")) == "clinical"
    assert N.column_source(N.radiomics_column("arterial", "original_glcm_Contrast")) == "radiomics"
    assert N.column_source(N.deep_column("dilated5mm", 7)) == "deep:dilated5mm"
    assert N.column_kind(N.deep_column("box", 0)) == "deep"
    assert N.column_name("clin:sex=M") == "sex=M"
    assert N.column_name("rad:arterial:original_glcm_Contrast") == "original_glcm_Contrast"
    assert N.deep_feature_index(N.deep_column("box", 12), "box") == 12
    assert N.deep_feature_index("deep:box:pc001", "box") is None  # a PCA component is not a pooled feature
    assert N.deep_feature_index(N.deep_column("box", 12), "tumour") is None
    assert N.radiomics_feature_class("rad:arterial:original_glcm_Contrast") == "original glcm"


def test_the_prefix_rad_is_the_source_radiomics() -> None:
    # external validation once looked for the prefix 'rad' where the study says 'radiomics'
    assert N.kinds_of_columns(["rad:arterial:x", "clin:age", "deep:box:f0001"]) == {"radiomics", "clinical", "deep"}
    assert N.source_prefix("radiomics") == "rad:" and N.source_prefix("clinical") == "clin:"
    assert N.source_prefix("deep:box") == "deep:box:"
    with pytest.raises(ConfigError):
        N.source_prefix("rad")
    with pytest.raises(ConfigError):
        N.column_kind("radiomics:x")


def test_deep_sources_expand_from_the_columns() -> None:
    cols = ["clin:age", "deep:tumour:f0000", "deep:box:f0000", "deep:box:f0001"]
    assert N.deep_rois(cols) == ["box", "tumour"]
    assert N.expand_sources(["clinical", "deep:*", "deep:box"], cols) == ["clinical", "deep:box", "deep:tumour"]


@pytest.mark.parametrize(
    "arm", ["clinical", "radiomics", "deep:box", "deep:dilated5mm", "deep:*", "combined", "stacked"]
)
def test_known_arms_pass(arm: str) -> None:
    N.check_arm(arm)


@pytest.mark.parametrize("arm", ["radiomix", "deep:", "deep:../x", "deep:a/b", "rad", "deep:box:f1", ""])
def test_unknown_arms_are_refused(arm: str) -> None:
    with pytest.raises(ConfigError, match="unknown arm"):
        N.check_arm(arm)


def test_arm_labels_and_folders(tmp_path) -> None:
    assert N.arm_label("deep:dilated5mm") == "Deep (dilated 5 mm)" and N.arm_label("combined") == "Combined"
    assert N.arm_folder("deep:box") == "deep-box" and N.arm_folder("clinical") == "clinical"
    for hostile in ("deep:../../x", "/etc", "..", "deep:a/b"):
        folder = N.arm_folder(hostile)
        assert "/" not in folder and folder not in (".", "..")
        child_path(tmp_path, folder)  # stays inside
