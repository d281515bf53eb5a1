"""Settings of preprocessing (registration, ROIs, slice images)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PreprocessSettings(BaseModel):
    """Settings of preprocessing (registration, ROIs, slice images)."""

    model_config = ConfigDict(extra="forbid")
