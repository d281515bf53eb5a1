"""Atomic file writes: a file is either absent, its old content or its complete new content, never half-written.

Per-case work may run twice (a Dask worker dies mid-case and the scheduler gives the case to another worker, or
a worker presumed dead is still writing while its replacement writes too). Each writer writes to its own
temporary name in the target's folder — ``.<name>.<host>.<pid>.<random>.tmp``, unique across the machines of a
cluster sharing the file system — and renames it over the target. A rename inside one folder is atomic on POSIX
file systems (NFS, Lustre and GPFS included), so readers never see a partial file; a writer killed before the
rename leaves only its hidden temporary file (:func:`is_temporary`), never a truncated output.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def temporary_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` (same folder, so the final rename is atomic), keeping its suffixes.

    The extension is kept at the end (``.x.nii.gz`` stays ``….nii.gz``) because writers such as SimpleITK and
    ``numpy.save`` choose the format from it; :data:`TMP_SUFFIX` marks the name as temporary in its middle.
    """
    path = Path(path)
    host = socket.gethostname().split(".")[0] or "host"
    tag = f"{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
    suffixes = "".join(path.suffixes[-2:]) if path.name.endswith((".nii.gz", ".tar.gz")) else path.suffix
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.{tag}{suffixes}")


_TMP_NAME = re.compile(r"^\..+\.[^.]+\.\d+\.[0-9a-f]{8}\.tmp(\.[^.]+)*$")


def is_temporary(path: str | Path) -> bool:
    """True for a name made by :func:`temporary_path` (e.g. left behind by a writer that was killed)."""
    return bool(_TMP_NAME.match(Path(path).name))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over ``path``, on error it is removed.

    Example::

        with atomic_path(out / "ct.nii.gz") as tmp:
            sitk.WriteImage(image, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` and rename ``tmp`` over ``path``; returns ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path.write_text`` (UTF-8), atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_npy_atomic(path: str | Path, array: Any) -> Path:
    """``numpy.save`` to ``path`` (which must end in ``.npy``), atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    return write_atomic(path, write)


def write_image_atomic(image: Any, path: str | Path) -> Path:
    """``SimpleITK.WriteImage`` (compressed, level 1), atomically; the format follows ``path``'s extension."""
    import SimpleITK as sitk

    return write_atomic(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True, compressionLevel=1))
