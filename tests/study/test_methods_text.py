"""The methods text states the numbers of this run (feature sizes, versions, folds), never fixed ones."""

from __future__ import annotations

from rccgrade.config import config_from_dict
from rccgrade.study.methods_text import methods_paragraphs


def test_deep_feature_size_and_versions_come_from_the_run() -> None:
    cfg = config_from_dict({"models": {"cv_folds": 7}, "deep": {"arch": "resnet_tiny", "weights": "none"}})
    text = " ".join(methods_paragraphs(cfg, deep_dims={"box": 512, "tumour": 512}, packages={"pyradiomics": "9.9.9"}))
    assert "512-d pooled features" in text and "2048" not in text
    assert "PyRadiomics 9.9.9" in text and "7-fold" in text and "resnet_tiny" in text
    mixed = " ".join(methods_paragraphs(cfg, deep_dims={"box": 2048, "tumour": 64}))
    assert "box: 2048-d" in mixed and "tumour: 64-d" in mixed
    none = " ".join(methods_paragraphs(cfg, deep_dims=None))
    assert "Deep features: not used." in none
