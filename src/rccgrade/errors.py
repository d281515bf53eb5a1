"""Exception hierarchy of rccgrade.

Every error a user can trigger with their data or configuration is a subclass of
:class:`RccgradeError`. Its message names the patient, the file and the fix, so the CLI
can print it as is instead of a traceback from deep inside a library.
"""

from __future__ import annotations

from pathlib import Path


class RccgradeError(Exception):
    """Base class of all user-facing rccgrade errors.

    Args:
        message: What is wrong and how to fix it.
        patient_id: The patient concerned, if any.
        path: The file concerned, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        patient_id: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.message = message
        self.patient_id = patient_id
        self.path = None if path is None else str(path)
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.patient_id is not None:
            parts.append(f"patient {self.patient_id}")
        if self.path is not None:
            parts.append(f"file {self.path}")
        prefix = f"[{', '.join(parts)}] " if parts else ""
        return prefix + self.message


class ConfigError(RccgradeError):
    """The study configuration or a settings file is invalid."""


class CohortError(RccgradeError):
    """The manifest or a case in it is unusable (missing columns, bad labels, duplicates …)."""


class ImageError(RccgradeError):
    """An image or mask cannot be read or is not what the pipeline needs."""


class PreprocessError(RccgradeError):
    """Registration, ROI or slice extraction failed for a case."""


class FeatureError(RccgradeError):
    """Feature extraction failed or a feature table does not match what is expected."""


class ModelError(RccgradeError):
    """Model fitting, loading or prediction failed (e.g. mismatched features or settings)."""


class StatsError(RccgradeError):
    """A statistic cannot be computed from the given data (e.g. one class only)."""
