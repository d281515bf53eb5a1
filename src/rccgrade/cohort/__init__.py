"""rccgrade.cohort stage."""
