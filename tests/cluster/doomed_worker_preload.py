"""Dask worker preload (``dask worker --preload THIS_FILE``) for the worker-failure test: a worker that hangs.

On the worker it is loaded into, the first preprocessing case it receives writes a marker file
``<RCCGRADE_TEST_BLOCK_DIR>/<patient_id>.started`` and then blocks until the process is killed, so the test
kills the worker while a preprocessing case is running on it — deterministically, not after a guessed sleep.
Cohort validation and radiomics cases run normally on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def dask_setup(worker: Any) -> None:
    """Patch the preprocessing case function of this worker process only."""
    from rccgrade.preprocess import case

    marker_dir = Path(os.environ["RCCGRADE_TEST_BLOCK_DIR"])

    def hang(job: Any) -> dict[str, Any]:
        (marker_dir / f"{job.case.patient_id}.started").write_text(str(os.getpid()))
        while True:  # until SIGKILL
            time.sleep(0.05)

    case._process_case_inner = hang  # process_case (what run_cases ships) calls it through the module
