"""rccgrade.synth stage."""
