"""Content hashing for stage caches and provenance.

A stage's cache key is the hash of (stage name, its settings, the checksums of its inputs), so a
re-run recomputes only what a change touches. Hashes are SHA-256 over canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_CHUNK = 1 << 20


def file_checksum(path: str | Path) -> str:
    """SHA-256 of a file, or of every file under a folder (sorted by relative path)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(sub.relative_to(path)).encode())
            h.update(file_checksum(sub).encode())
        return h.hexdigest()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Deterministic short hash of JSON-able values and pydantic models."""
    blob = json.dumps([_jsonable(p) for p in parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
