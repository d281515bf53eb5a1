"""rccgrade.report stage."""
