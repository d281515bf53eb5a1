"""An exclusive lock on a run folder, so two studies never write the same folder at once.

The lock is ``<run_dir>/.lock``, held with an exclusive ``flock`` for the whole run and holding the holder's
pid, host and start time. The kernel drops a ``flock`` when its process dies, so a lock left behind by a
killed run (a dead pid) is stale and simply taken over. A second study on a held folder waits
``wait_s`` seconds, then refuses with a message naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rccgrade.errors import RccgradeError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: Seconds a second study waits for the folder before refusing.
DEFAULT_WAIT_S = 5.0


class RunLockedError(RccgradeError):
    """Another process holds the run folder."""


def _holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def run_lock(run_dir: str | Path, *, wait_s: float = DEFAULT_WAIT_S, poll_s: float = 0.2) -> Iterator[Path]:
    """Hold the run folder's lock for the ``with`` block.

    Args:
        run_dir: The run folder (must exist).
        wait_s: Seconds to wait for a held lock before refusing.
        poll_s: Seconds between attempts.

    Yields:
        The lock file.

    Raises:
        RunLockedError: another live process still holds the folder after ``wait_s``; the message names its
            pid, host and start time.
    """
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    h = _holder(path)
                    raise RunLockedError(
                        f"another study is running in this run folder (pid {h.get('pid', '?')} on "
                        f"{h.get('host', '?')}, started {h.get('started', '?')}); waited {wait_s:g} s. Wait for "
                        "it to finish, or choose another run name (--name)",
                        path=Path(run_dir),
                    ) from None
                time.sleep(poll_s)
        stale = _holder(path)
        if stale.get("pid"):  # the kernel released that holder's flock: it was killed before cleaning up
            log.warning("taking over the stale lock of pid %s (started %s)", stale.get("pid"), stale.get("started"))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
