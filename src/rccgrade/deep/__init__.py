"""rccgrade.deep stage."""
