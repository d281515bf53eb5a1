"""Settings of the deep-feature stage (backbone, weights, fine-tuning)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeepSettings(BaseModel):
    """Settings of the deep-feature stage (backbone, weights, fine-tuning)."""

    model_config = ConfigDict(extra="forbid")
