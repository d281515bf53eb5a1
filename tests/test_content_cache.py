"""Cache keys follow file content: an edit that keeps the size and restores the mtime is still seen."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from rccgrade.cohort.types import Case
from rccgrade.preprocess.pipeline import case_cache_key
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.provenance import ChecksumCache


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit_keeping_size_and_mtime(path: Path, new: bytes) -> None:
    """Overwrite ``path`` with ``new`` (same length) and set its atime/mtime back, as a sneaky edit would."""
    before = path.stat()
    assert len(new) == before.st_size
    path.write_bytes(new)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    # the change time moves on its own clock tick (coarse on some file systems): wait for it, never fake it
    while path.stat().st_ctime_ns == before.st_ctime_ns:
        time.sleep(0.01)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_checksum_cache_rehashes_a_same_size_edit_with_restored_mtime(tmp_path: Path) -> None:
    image = tmp_path / "a.nii.gz"
    image.write_bytes(b"original-bytes-0001")
    # racy_ns=0: trust entries at once, so only the stamp (size, mtime, inode, ctime) decides here
    cache = ChecksumCache(tmp_path / "checksums.json", racy_ns=0)
    first = cache.checksum(image)
    assert first == _sha(image)
    cache.save()

    _edit_keeping_size_and_mtime(image, b"tampered-bytes-0002")
    reloaded = ChecksumCache(tmp_path / "checksums.json", racy_ns=0)
    second = reloaded.checksum(image)
    assert second == _sha(image) != first


def test_checksum_cache_serves_unchanged_files_without_reading_them(tmp_path: Path, monkeypatch) -> None:
    image = tmp_path / "b.nii.gz"
    image.write_bytes(b"x" * 100)
    cache = ChecksumCache(tmp_path / "checksums.json", racy_ns=0)
    digest = cache.checksum(image)
    calls: list[Path] = []
    import rccgrade.provenance as prov

    monkeypatch.setattr(prov, "file_checksum", lambda p: calls.append(Path(p)) or "recomputed")
    assert cache.checksum(image) == digest and calls == []


def test_checksum_cache_does_not_trust_an_entry_hashed_right_after_a_change(tmp_path: Path, monkeypatch) -> None:
    # racy: the file changed within the window before hashing, so a second edit in the same tick could keep
    # every timestamp; such an entry is hashed again next time
    image = tmp_path / "c.nii.gz"
    image.write_bytes(b"y" * 100)
    cache = ChecksumCache(tmp_path / "checksums.json", racy_ns=3600 * 10**9)
    cache.checksum(image)
    calls: list[Path] = []
    import rccgrade.provenance as prov

    monkeypatch.setattr(prov, "file_checksum", lambda p: calls.append(Path(p)) or "recomputed")
    assert cache.checksum(image) == "recomputed" and calls == [image.resolve()]


def test_preprocess_cache_key_changes_with_a_same_size_edit_with_restored_mtime(tmp_path: Path) -> None:
    paths = {}
    for name in ("arterial", "nephrographic", "excretory", "mask"):
        paths[name] = tmp_path / f"{name}.nii.gz"
        paths[name].write_bytes(f"{name}-content-AAAA".encode())
    case = Case(patient_id="P1", images={k: v for k, v in paths.items() if k != "mask"}, mask=paths["mask"])
    settings = PreprocessSettings()
    before = case_cache_key(case, settings)
    _edit_keeping_size_and_mtime(paths["arterial"], b"arterial-content-BBBB")
    assert case_cache_key(case, settings) != before
