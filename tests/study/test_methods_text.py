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


def _fusion_text(models: dict, fusion: dict | None) -> str:
    cfg = config_from_dict({"models": models})
    return " ".join(methods_paragraphs(cfg, deep_dims=None, fusion=fusion))


def test_fusion_and_auto_are_described_only_when_used() -> None:
    plain = _fusion_text({"arms": ["clinical", "radiomics"]}, {"clinical": {}, "radiomics": {}})
    assert "Stacked arm" not in plain and "Combined arm" not in plain and "classifier: auto" not in plain
    union = _fusion_text({"arms": ["radiomics", "combined"], "combined_selection": "union"}, None)
    assert "Combined arm" not in union and "budget" not in union
    # from the settings alone (no fitted records): described with the configured numbers
    configured = _fusion_text(
        {
            "arms": ["radiomics", "combined", "stacked"],
            "combined_selection": "budgets",
            "stacking_c": 0.5,
            "combined_budgets": [0, 3, 7],
            "combined_budget_cv": 4,
            "combined_min_gain": 0.01,
        },
        None,
    )
    assert "non-negative source weights" in configured and "ridge C = 0.5" in configured
    assert "budgets (0, 3, 7; 0 leaves a source out)" in configured and "4-fold inner" in configured
    assert "minimum gain 0.01 AUC" in configured
    assert "scored by an L2 logistic regression" in configured
    tree = _fusion_text(
        {
            "arms": ["combined"],
            "classifier": "random_forest",
            "combined_selection": "budgets",
            "combined_budget_scorer": "arm",
        },
        None,
    )
    assert "scored by the arm's own classifier" in tree
    logistic = _fusion_text({"arms": ["radiomics", "clinical", "stacked"], "stacking_meta": "logistic"}, None)
    assert "unconstrained" in logistic and "non-negative" not in logistic


def test_fusion_text_states_what_the_run_learnt() -> None:
    fusion = {
        "radiomics": {
            "auto": {
                "chosen": "random_forest",
                "scores": {"logistic": 0.71, "random_forest": 0.7349},
                "n_folds": 5,
                "oof_choice": "per_fold",
                "outer_folds": [{"chosen": "random_forest"}, {"chosen": "logistic"}],
            }
        },
        "clinical": {},
        "combined": {"budgets": {"clinical": 2, "radiomics": 8, "deep:box": 0}, "budget_cv_auc": 0.8123},
        "stacked": {
            "stacking_weights": {"clinical": 0.41, "radiomics": 0.873, "deep:box": 0.0},
            "stacking_meta": "NonNegativeLogisticRegression",
        },
    }
    text = _fusion_text(
        {
            "arms": ["clinical", "radiomics", "combined", "stacked"],
            "arm_classifiers": {"radiomics": "auto"},
            "combined_selection": "budgets",
        },
        fusion,
    )
    assert "learnt weights clinical 0.41, radiomics 0.87, deep:box 0.00" in text
    assert "chosen budgets clinical 2, radiomics 8, deep:box 0 (inner-CV AUC 0.812)" in text
    assert "for radiomics: among logistic, logistic_enet" in text
    assert "radiomics → random_forest (CV AUC 0.735)" in text
    assert "repeated inside every outer fold" in text and "radiomics: random_forest, logistic" in text
    fixed = _fusion_text(
        {"arms": ["radiomics"], "classifier": "auto", "nested_oof": False},
        {"radiomics": {"auto": {"chosen": "logistic", "scores": {"logistic": 0.7}, "n_folds": 5}}},
    )
    assert "reused the final choice" in fixed and "optimistic" in fixed


def test_gated_combined_is_described_with_its_gate() -> None:
    """Catches the gated arm described as budgets, or a left-out source reported as kept."""
    gate = {
        "clinical": {"auc": 0.681, "p": 2e-4, "folds": 5, "kept": True},
        "deep:noise": {"auc": 0.49, "p": 0.61, "folds": 5, "kept": False},
    }
    models = {"arms": ["clinical", "combined"], "combined_selection": "gated", "combined_gate_alpha": 0.01}
    text = _fusion_text(models, {"combined": {"gate": gate}})
    assert "p < 0.01" in text and "budget" not in text and "3-times repeated 5-fold" in text
    assert "corrected resampled t-test" in text
    assert "clinical kept (inner-CV AUC 0.681), deep:noise left out (inner-CV AUC 0.490)" in text
