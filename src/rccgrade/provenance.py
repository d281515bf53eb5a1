"""Provenance of a run: what produced these numbers, so someone else can reproduce them.

``provenance.json`` in the run folder records the resolved configuration, the seed, the versions of
every package that touches the numbers, the platform, the SHA-256 of every input file (manifest, images,
masks) and how long each stage took. Input checksums are cached by (path, size, mtime, inode, ctime) so a
re-run of a large cohort does not read every image again; the change time cannot be set back by a user
(``os.utime`` itself updates it), so an edited file with its size and mtime restored is hashed again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rccgrade.cache import file_checksum
from rccgrade.config import StudyConfig

log = logging.getLogger(__name__)

PACKAGES: tuple[str, ...] = (
    "rccgrade",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "xgboost-cpu",
    "xgboost",
    "lightgbm",
    "skops",
    "statsmodels",
    "torch",
    "monai",
    "pyradiomics",
    "PyWavelets",
    "SimpleITK",
    "pydicom",
    "nibabel",
    "dcurves",
    "dask",
    "distributed",
    "matplotlib",
    "jinja2",
    "pydantic",
    "typer",
    "rich",
    "PyYAML",
)
"""Distributions whose versions are recorded (those not installed are left out)."""


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``names`` (read from metadata, nothing imported)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def platform_info() -> dict[str, Any]:
    """Python, OS, CPU and memory of this machine (no host name or user name)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    mem_gib: float | None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        mem_gib = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "usable_cores": cores,
        "memory_gib": mem_gib,
    }


def source_revision() -> str | None:
    """Git commit of the rccgrade source tree when running from a checkout (``+dirty`` if modified)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def _stamp(st: os.stat_result) -> list[int]:
    """What must be unchanged for a remembered checksum to be trusted: size, mtime, inode, ctime (ns)."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


class ChecksumCache:
    """SHA-256 of input files, remembered by (resolved path, size, mtime, inode, ctime) in a JSON file.

    ``mtime`` can be set back by anyone (``touch -d``, ``os.utime``, ``rsync -t``), but doing so changes the
    ``ctime``, and replacing a file changes its inode, so an edited file is never served from the cache.
    Entries whose file changed less than ``racy_ns`` before it was hashed are *racy* (a second edit within
    the same timestamp tick would leave the stamp unchanged, as in Git's "racy clean" problem) and are
    hashed again next time.

    Args:
        path: JSON file holding the remembered checksums (created when missing).
        racy_ns: Window in nanoseconds (default 2 s: coarser than any file system's timestamp tick).
    """

    def __init__(self, path: str | Path, *, racy_ns: int = 2_000_000_000) -> None:
        self.path = Path(path)
        self.racy_ns = int(racy_ns)
        self._data: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self._data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                log.warning("checksum cache %s unreadable; recomputing checksums", self.path)
                self._data = {}

    def checksum(self, file: str | Path) -> str:
        """SHA-256 of a file or a folder (e.g. a DICOM series), recomputed only when it changed."""
        file = Path(file).resolve()
        st = file.stat()
        stamp: list[Any] = _stamp(st)
        changed = max(st.st_mtime_ns, st.st_ctime_ns)
        if file.is_dir():  # a DICOM folder: its files' stamps decide (and the folder's, for added/removed files)
            subs = [(p.name, p.stat()) for p in sorted(file.iterdir()) if p.is_file()]
            stamp = [stamp, *([name, *_stamp(s)] for name, s in subs)]
            changed = max([changed, *(max(s.st_mtime_ns, s.st_ctime_ns) for _, s in subs)])
        entry = self._data.get(str(file))
        if entry is not None and entry.get("stamp") == stamp and not entry.get("racy", True):
            return str(entry["sha256"])
        hashed_at = time.time_ns()
        digest = file_checksum(file)
        self._data[str(file)] = {"stamp": stamp, "sha256": digest, "racy": changed >= hashed_at - self.racy_ns}
        return digest

    def save(self) -> None:
        """Write the remembered checksums (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
        tmp.replace(self.path)


def build_provenance(
    config: StudyConfig,
    *,
    input_checksums: Mapping[str, str],
    timings: Mapping[str, float] | None = None,
    stages: Iterable[Mapping[str, Any]] = (),
    warnings: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``provenance.json`` holds.

    Args:
        config: The fully resolved study configuration.
        input_checksums: Relative input path → SHA-256 (manifest, images, masks).
        timings: Stage → wall time in seconds.
        stages: Per-stage records (name, cache key, ran/cached, seconds).
        warnings: Warnings shown in the report's banner (e.g. random-initialised deep weights).
        extra: Further entries (e.g. the effective deep weights).
    """
    prov: dict[str, Any] = {
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "seed": config.seed,
        "config": config.model_dump(mode="json"),
        "packages": package_versions(),
        "platform": platform_info(),
        "source_revision": source_revision(),
        "input_checksums": dict(sorted(input_checksums.items())),
        "timings_s": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        "stages": [dict(s) for s in stages],
        "warnings": list(warnings),
    }
    if extra:
        prov.update(dict(extra))
    return prov


def write_provenance(prov: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``provenance.json`` (pretty JSON, stable key order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prov, indent=2, sort_keys=False, default=str) + "\n")
    return path
