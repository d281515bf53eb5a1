"""Settings of PyRadiomics extraction and stability analysis."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RadiomicsSettings(BaseModel):
    """Settings of PyRadiomics extraction and stability analysis."""

    model_config = ConfigDict(extra="forbid")
