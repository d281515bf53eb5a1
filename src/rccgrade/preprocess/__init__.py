"""rccgrade.preprocess stage."""
