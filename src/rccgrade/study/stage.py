"""The Stage protocol: what every study stage declares and does."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from rccgrade.study.context import StageRecord, StudyContext


@runtime_checkable
class Stage(Protocol):
    """One step of the study.

    Attributes:
        name: Stage name (also the :class:`~rccgrade.study.context.StageResults` slot it fills).
        description: One line for the progress display.
        requires: Stages whose outputs it reads (checked against the run order before anything runs).
        version: Code version of the stage, part of its cache key: bump it whenever a change to the stage
            (or to what it calls) changes what it writes, and every cached result of it is recomputed.
    """

    name: str
    description: str
    requires: tuple[str, ...]
    version: str

    def run(self, ctx: StudyContext, record: StageRecord) -> Any:
        """Do the work (or reuse the cache) and return the stage's output object (None when skipped).

        The stage sets ``record.status`` to ``cached`` or ``skipped`` when that is what happened, and
        ``record.key``/``detail``/``n_failures``.
        """
        ...
