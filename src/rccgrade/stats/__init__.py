"""rccgrade.stats stage."""
