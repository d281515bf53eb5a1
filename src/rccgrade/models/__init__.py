"""rccgrade.models stage."""
