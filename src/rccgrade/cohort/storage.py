"""Storage integrity: does an image file hold every byte its header announces (truncated gzip, short NIfTI)?

Split from :mod:`rccgrade.cohort.io`, which re-exports every name.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from rccgrade.errors import ImageError

# -- storage integrity --------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_HEAD_BYTES = 540  # a NIfTI-2 header; NIfTI-1 needs 348
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StorageCheck:
    """Whether an image file holds every byte its header announces (see :func:`check_storage`).

    Attributes:
        path: The file.
        compressed: The file is a gzip stream (``.nii.gz`` …).
        payload_bytes: Bytes of content (after decompression), or None when the stream is broken.
        expected_bytes: Bytes the header announces (NIfTI: voxel offset + voxels × bytes per voxel), or None
            when the format is not one whose length this check knows (NRRD and MetaImage are checked by ITK,
            which refuses short data).
        expected_voxels: Voxels the header announces (None when not known).
        stored_voxels: Voxels actually present in the file (None when not known).
        problem: What is wrong, for the user; None when the file is complete.
    """

    path: Path
    compressed: bool
    payload_bytes: int | None
    expected_bytes: int | None = None
    expected_voxels: int | None = None
    stored_voxels: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is missing."""
        return self.problem is None


def nifti_layout(head: bytes) -> tuple[int, int, int] | None:
    """``(voxel data offset, number of voxels, bytes per voxel)`` from a single-file NIfTI-1/2 header.

    Args:
        head: The first bytes of the (decompressed) file, at least 348 (NIfTI-1) or 540 (NIfTI-2).

    Returns:
        The layout, or None when ``head`` is not a single-file NIfTI header (``n+1``/``n+2`` magic).
    """
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] == b"n+1":
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] == b"n+2":
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8:
        return None
    n_voxels = 1
    for d in dims[1 : ndim + 1]:
        n_voxels *= max(int(d), 1)
    return offset, n_voxels, bitpix // 8


def _read_content(path: Path) -> tuple[bytes, int, bool, str | None]:
    """First :data:`_HEAD_BYTES` bytes of the content, the bytes read, whether it is gzip, and the stream error.

    A gzip stream is decompressed in full (in chunks, nothing kept): zlib verifies each member's CRC-32 and
    length, and a stream that stops before its end-of-stream marker is reported. The count stops where the
    readable content ends, so a truncated file still tells how many voxels survived.
    """
    with path.open("rb") as fh:
        compressed = fh.read(2) == _GZIP_MAGIC
    if not compressed:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
        return head, path.stat().st_size, False, None
    head = b""
    total = 0
    members = 0
    in_member = False
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with path.open("rb") as fh:
            while raw := fh.read(_CHUNK):
                while raw:
                    if not in_member and raw.strip(b"\x00") == b"" and members:
                        break  # zero padding after the last member, as gzip allows
                    in_member = True
                    out = decoder.decompress(raw)
                    if len(head) < _HEAD_BYTES:
                        head += out[: _HEAD_BYTES - len(head)]
                    total += len(out)
                    raw = b""
                    if decoder.eof:
                        members += 1
                        in_member = False
                        raw = decoder.unused_data
                        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        return head, total, True, f"corrupt compressed data: {exc}"
    if in_member or not members:
        return head, total, True, "the compressed stream ends before its end-of-stream marker"
    return head, total, True, None


def check_storage(path: str | Path) -> StorageCheck:
    """Check that an image file is complete: the whole gzip stream decompresses, and a NIfTI file holds every
    voxel its header announces.

    ITK reads a ``.nii``/``.nii.gz`` cut short without complaint and fills the missing voxels with zeros, so a
    half-copied scan would otherwise give features — and a confident probability — computed on zeros. NRRD and
    MetaImage files are refused by ITK itself when their data is short; DICOM folders are not checked here.
    :func:`read_checked` makes the same check while decoding a NIfTI file, in one pass.

    Returns:
        A :class:`StorageCheck`; ``problem`` says what is missing (never raises for a broken file; a missing
        file or folder is not checked: ``problem`` is None).
    """
    path = Path(path)
    if not path.is_file():
        return StorageCheck(path, False, None)
    head, total, compressed, error = _read_content(path)
    return _judge(path, head, total, compressed, error)


def _judge(path: Path, head: bytes, total: int, compressed: bool, error: str | None) -> StorageCheck:
    """The :class:`StorageCheck` of a file whose content starts with ``head`` and holds ``total`` bytes."""
    layout = nifti_layout(head)
    expected = n_voxels = stored = None
    if layout is not None:
        offset, n_voxels, itemsize = layout
        expected = offset + n_voxels * itemsize
        stored = max(0, min(n_voxels, (total - offset) // itemsize))
    count = (
        f": only {stored} of the {n_voxels} voxels ({100.0 * stored / max(n_voxels, 1):.1f}%) could be read"
        if n_voxels is not None and stored is not None
        else ""
    )
    problem = None
    if error is not None:
        problem = (
            f"the gzip stream is truncated or corrupt ({error}){count}. The file was cut short (an interrupted copy "
            "or download?) and ITK would read the missing voxels as zeros; copy or export it again"
        )
        total_or_none = None
    else:
        total_or_none = total
        if expected is not None and total < expected:
            problem = (
                f"the file holds {total} of the {expected} bytes its NIfTI header announces{count}; the rest would "
                "be read as zeros. The file was cut short; copy or export it again"
            )
    return StorageCheck(path, compressed, total_or_none, expected, n_voxels, stored, problem)


def ensure_complete(path: str | Path, *, patient_id: str | None = None, what: str = "image") -> None:
    """Raise an :class:`ImageError` naming the patient and file when :func:`check_storage` finds a problem."""
    found = check_storage(path)
    if found.problem is not None:
        raise ImageError(f"{what} is incomplete: {found.problem}", patient_id=patient_id, path=path)
