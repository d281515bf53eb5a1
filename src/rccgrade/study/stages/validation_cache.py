"""Cohort validation reused between runs: an unchanged cohort's report is read back, not recomputed.

Validation opens every image of every case (per case, on the cluster when one is configured). A re-run whose
manifest, clinical CSV, every referenced image and mask (files by SHA-256, remembered by
:class:`rccgrade.provenance.ChecksumCache`; DICOM folders by their files' stamps, :func:`file_digest`), cohort
settings and rccgrade version are unchanged reads the stored report from
``<run_dir>/cache/validation-<key>.json`` instead, so a study whose per-case stages are all cached has no
per-case work at all and starts no cluster. Any change to one of those inputs is a new key and a full
validation.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rccgrade.atomic import write_text_atomic
from rccgrade.cohort.types import Cohort
from rccgrade.cohort.validate import ValidationReport
from rccgrade.study.cache import stage_key
from rccgrade.study.context import log

VERSION = "validation-1"
"""Bumped when the stored report's layout or the meaning of its key changes."""


def file_digest(checksum: Callable[[Path], str], path: Path | str | None) -> Any:
    """What identifies a referenced input before it is validated, without trusting it.

    A regular file: its SHA-256 (``checksum``, remembered between runs). A folder (a DICOM series): the time
    stamps, sizes and inodes of the folder and of the files directly in it, as
    :class:`~rccgrade.provenance.ChecksumCache` identifies one, never a recursive read (a hostile manifest may
    name ``/``). Anything else (a FIFO, a device) is never opened. A path that cannot be read says why
    (``unavailable: FileNotFoundError``).
    """
    if path is None:
        return None
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return checksum(Path(path))
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as entries:
                files = sorted((e.name, e.stat()) for e in entries if e.is_file())
            return ["folder", *_stamp(st), *([name, *_stamp(s)] for name, s in files)]
    except OSError as exc:
        return f"unavailable: {type(exc).__name__}"
    return "unavailable: not a regular file or folder"


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def validation_key(
    cohort: Cohort, settings: Any, inputs: dict[str, str | None], checksum: Callable[[Path], str]
) -> str:
    """Key of a cohort's validation: settings, the given input files' digests and every case file's digest.

    Args:
        cohort: The loaded cohort (every manifest row, usable or not).
        settings: The ``cohort:`` settings (a pydantic model).
        inputs: Name → path of the other files validation reads (manifest, clinical CSV).
        checksum: ``checksum(path) → sha256`` (a :class:`~rccgrade.provenance.ChecksumCache`'s method).
    """
    files = {name: file_digest(checksum, path) for name, path in inputs.items()}
    cases = [
        [
            case.patient_id,
            case.row,
            sorted((phase, str(Path(p).resolve()), file_digest(checksum, p)) for phase, p in case.images.items()),
            None if case.mask is None else [str(Path(case.mask).resolve()), file_digest(checksum, case.mask)],
        ]
        for case in cohort.cases
    ]
    return stage_key("validation", VERSION, settings, files, cases)


def report_path(run_dir: Path, key: str) -> Path:
    """Where the report of ``key`` is stored: ``<run_dir>/cache/validation-<key>.json``."""
    return Path(run_dir) / "cache" / f"validation-{key}.json"


def save_report(report: ValidationReport, path: Path) -> Path:
    """Store a report (tables with their dtypes, JSON ``orient="table"``), atomically."""
    payload = {
        "version": VERSION,
        "problems": report.problems.to_json(orient="table", index=False),
        "cases": report.cases.to_json(orient="table", index=False),
        "clinical_missing": {str(k): int(v) for k, v in report.clinical_missing.items()},
        "clinical_missing_name": report.clinical_missing.name,
        "clinical_types": dict(report.clinical_types),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload))
    return path


def load_report(path: Path) -> ValidationReport | None:
    """A stored report, or None when there is none or it cannot be read (then validation runs again)."""
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        if payload.get("version") != VERSION:
            return None
        return ValidationReport(
            problems=pd.read_json(io.StringIO(payload["problems"]), orient="table"),
            cases=pd.read_json(io.StringIO(payload["cases"]), orient="table"),
            clinical_missing=pd.Series(
                payload["clinical_missing"], dtype="int64", name=payload.get("clinical_missing_name")
            ),
            clinical_types=dict(payload["clinical_types"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("stored validation report %s unreadable (%s); validating again", path, exc)
        return None
