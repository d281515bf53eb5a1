"""Identifiers are never paths: one mapping from an identifier to a file name, and containment checks.

Patient ids, arm names and run names come from users' files and configs. None of them is ever joined to a
folder as is. Every per-identifier file or folder name goes through :func:`safe_filename`, and every path built
from one goes through :func:`child_path`, which proves the result lies inside its folder. Deleting a tree goes
through :func:`remove_tree_inside`, which refuses anything not strictly inside the given root.

The mapping is **injective** (two different identifiers never share a file name) and readable: an id made only
of ``A–Z a–z 0–9 . _ -`` that does not start with a dot is used unchanged (``P0001`` → ``P0001``); any other
character is percent-encoded as UTF-8 bytes (``a/b`` → ``a%2Fb``, ``../x`` → ``%2E.%2Fx``), and ``%`` itself
is encoded, so the mapping can be undone. Names longer than :data:`MAX_NAME_BYTES` keep a readable head and a
SHA-256 tail.

:func:`check_identifier` is the stricter *rule* for patient ids in a manifest (validation reports the ones
that break it); the mapping stays safe for anything that gets past it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

#: Characters kept unchanged in a file name.
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
#: Longest file name produced (bytes); file systems allow 255, leaving room for suffixes like ``.json``.
MAX_NAME_BYTES = 200
#: The rule for patient ids (and other identifiers) in a manifest.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Longest patient id accepted by :func:`check_identifier`.
MAX_ID_LENGTH = 64


class UnsafePathError(ValueError):
    """A path built from an identifier would leave its folder (a bug or an attack; never user data alone)."""


def check_identifier(identifier: object, *, what: str = "patient_id") -> str | None:
    """Why ``identifier`` breaks the identifier rule, or ``None`` when it follows it.

    The rule: 1–64 characters from ``A–Z a–z 0–9 . _ -``, starting with a letter or digit (so never ``.``,
    ``..``, an absolute path or a hidden file). ``NA`` and ``null`` are ordinary ids.

    Returns:
        A sentence for the user (what is wrong and how to fix it), or ``None``.
    """
    if not isinstance(identifier, str):
        return f"{what} {identifier!r} is not text"
    if identifier == "":
        return f"{what} is empty"
    shown = repr(identifier) if len(identifier) <= 200 else f"{identifier[:200]!r}…"
    if not ID_PATTERN.fullmatch(identifier):
        return (
            f"{what} {shown} may only hold letters, digits, '.', '_' and '-' and must start with a letter "
            "or digit (no spaces, slashes or leading dots); rename it in the manifest"
        )
    if len(identifier) > MAX_ID_LENGTH:
        return f"{what} {shown} is {len(identifier)} characters long (at most {MAX_ID_LENGTH}); shorten it"
    return None


def safe_filename(identifier: str) -> str:
    """An injective, readable file name for an identifier (see the module docstring).

    Args:
        identifier: Any non-empty string (patient id, arm name, run name).

    Returns:
        A single path component of at most :data:`MAX_NAME_BYTES` bytes from ``A–Z a–z 0–9 . _ - %``, never
        ``.`` or ``..`` and never starting with a dot.

    Raises:
        UnsafePathError: ``identifier`` is not a non-empty string.
    """
    if not isinstance(identifier, str) or identifier == "":
        raise UnsafePathError(f"an identifier must be a non-empty string, got {identifier!r}")
    out: list[str] = []
    for i, ch in enumerate(identifier):
        if ch in _SAFE_CHARS and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    name = "".join(out)
    if len(name) > MAX_NAME_BYTES:
        digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()
        # the head can end inside a %XX escape; the digest keeps the whole name unique all the same
        name = f"{name[: MAX_NAME_BYTES - 66]}~{digest}"
    return name


def identifier_from_filename(name: str) -> str | None:
    """Undo :func:`safe_filename` (percent-decoding), or ``None`` for a shortened (hashed) long name.

    Readers that list a folder use this to recover the original identifier; a name that is not the
    output of :func:`safe_filename` (e.g. a stray file) returns ``None`` too.
    """
    if "~" in name or not name or name.startswith("."):
        return None
    if any(ch not in _SAFE_CHARS and ch != "%" for ch in name):
        return None
    try:
        identifier = unquote(name, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    return identifier if safe_filename(identifier) == name else None


def child_path(root: str | Path, identifier: str, suffix: str = "") -> Path:
    """``root / (safe_filename(identifier) + suffix)``, proven to lie directly inside ``root``.

    Args:
        root: The folder the file belongs in.
        identifier: Patient id, arm or run name.
        suffix: File suffix such as ``".json"`` (letters, digits, ``.`` and ``_`` only).

    Raises:
        UnsafePathError: the suffix holds other characters, or the result would not be inside ``root``.
    """
    if suffix and not re.fullmatch(r"[A-Za-z0-9._]+", suffix):
        raise UnsafePathError(f"unsafe file suffix {suffix!r}")
    path = Path(root) / (safe_filename(identifier) + suffix)
    ensure_inside(path, root)
    return path


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` lies strictly inside ``root`` after resolving ``..`` and symbolic links."""
    p = Path(os.path.realpath(path))
    r = Path(os.path.realpath(root))
    return p != r and r in p.parents


def ensure_inside(path: str | Path, root: str | Path) -> Path:
    """Return ``path`` when it lies strictly inside ``root``; raise :class:`UnsafePathError` otherwise."""
    if not is_inside(path, root):
        raise UnsafePathError(f"refusing to use {str(path)!r}: it is not inside {str(root)!r}")
    return Path(path)


def remove_tree_inside(path: str | Path, root: str | Path) -> None:
    """Delete a file or folder, but only when it lies strictly inside ``root`` (missing: nothing to do).

    A symbolic link is removed as a link; its target is never followed.

    Raises:
        UnsafePathError: ``path`` is ``root`` itself or lies outside it.
    """
    path = Path(path)
    # check the link itself, not its target: resolve the parent, keep the last component
    parent_real = Path(os.path.realpath(path.parent))
    candidate = parent_real / path.name
    root_real = Path(os.path.realpath(root))
    if path.name in ("", ".", "..") or candidate == root_real or root_real not in candidate.parents:
        raise UnsafePathError(f"refusing to delete {str(path)!r}: it is not inside {str(root)!r}")
    if candidate.is_symlink() or candidate.is_file():
        candidate.unlink()
    elif candidate.is_dir():
        shutil.rmtree(candidate)
