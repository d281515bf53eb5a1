"""External validation moved to :mod:`rccgrade.study.external`; this name is kept for existing imports."""

from rccgrade.study.external import ExternalResult, evaluate_external, find_bundles, manifest_phases

__all__ = ["ExternalResult", "evaluate_external", "find_bundles", "manifest_phases"]
