"""Settings of the HTML report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ReportSettings(BaseModel):
    """Settings of the HTML report."""

    model_config = ConfigDict(extra="forbid")
