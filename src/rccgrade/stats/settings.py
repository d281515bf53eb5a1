"""Settings of the evaluation statistics (CIs, bootstrap, DCA thresholds)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EvaluationSettings(BaseModel):
    """Settings of the evaluation statistics (CIs, bootstrap, DCA thresholds)."""

    model_config = ConfigDict(extra="forbid")
