"""rccgrade.radiomics stage."""
