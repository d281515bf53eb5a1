"""Cheap facts about a manifest read without loading the cohort (which phases it has)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rccgrade.cohort.types import PHASES

__all__ = ["manifest_phases"]


def manifest_phases(manifest: str | Path) -> list[str]:
    """Phases with at least one non-empty path in the manifest, in canonical order."""
    head = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    cols = {c.strip().lower(): c for c in head.columns}
    return [p for p in PHASES if p in cols and (head[cols[p]].str.strip() != "").any()]
