"""Cheap facts about a manifest read without loading the cohort (which phases it has)."""

from __future__ import annotations

from pathlib import Path

from rccgrade.cohort.manifest import read_manifest_table
from rccgrade.cohort.types import PHASES

__all__ = ["manifest_phases"]


def manifest_phases(manifest: str | Path) -> list[str]:
    """Phases with at least one non-empty path in the manifest, in canonical order.

    Raises:
        CohortError: the manifest is missing, not UTF-8 or not CSV
            (:func:`~rccgrade.cohort.manifest.read_manifest_table`).
    """
    head = read_manifest_table(manifest)
    cols = {c.strip().lower(): c for c in head.columns}
    return [p for p in PHASES if p in cols and (head[cols[p]].fillna("").str.strip() != "").any()]
