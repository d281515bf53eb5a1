"""Settings of feature selection, classifiers, arms and the split."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ModelSettings(BaseModel):
    """Settings of feature selection, classifiers, arms and the split."""

    model_config = ConfigDict(extra="forbid")
