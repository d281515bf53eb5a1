"""Identifiers never escape their folder: the safe file-name mapping and the containment checks."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from rccgrade.safepath import (
    MAX_NAME_BYTES,
    UnsafePathError,
    check_identifier,
    child_path,
    ensure_inside,
    remove_tree_inside,
    safe_filename,
)

HOSTILE = [
    "/some/dir",
    "../../../../ESC1",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "C:\\x",
    "a\x00b",
    "ü-ñ",
    " sp ",
    "%2F",
]


@pytest.mark.parametrize("pid", ["P0001", "case_00012", "NA", "null", "a.b-c_d"])
def test_plain_ids_are_kept_readable(pid: str) -> None:
    assert safe_filename(pid) == pid
    assert check_identifier(pid) is None


@pytest.mark.parametrize("pid", HOSTILE)
def test_hostile_ids_map_to_one_component_inside_the_folder(pid: str, tmp_path: Path) -> None:
    name = safe_filename(pid)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith(".")
    path = child_path(tmp_path, pid, ".json")
    assert path.parent == tmp_path
    # the mapping can be undone (percent-decoding), so two ids never share a name
    assert unquote(name, errors="surrogatepass") == pid
    assert check_identifier(pid) is not None


def test_mapping_is_injective_on_confusable_ids() -> None:
    ids = ["a/b", "a%2Fb", "a_b", "a%b", ".a", "%2Ea", "ab", "Ab", *HOSTILE]
    names = [safe_filename(i) for i in ids]
    assert len(set(names)) == len(set(ids))


def test_long_ids_are_shortened_and_stay_distinct() -> None:
    a, b = "x" * 300 + "1", "x" * 300 + "2"
    assert len(safe_filename(a)) <= MAX_NAME_BYTES
    assert safe_filename(a) != safe_filename(b)
    assert check_identifier("x" * 65) is not None


def test_empty_or_non_string_identifier_is_refused() -> None:
    with pytest.raises(UnsafePathError):
        safe_filename("")
    assert check_identifier("") is not None
    assert check_identifier(12) is not None


def test_containment(tmp_path: Path) -> None:
    root = tmp_path / "run"
    (root / "a").mkdir(parents=True)
    ensure_inside(root / "a", root)
    for bad in (root, root / ".." / "x", tmp_path, Path("/etc")):
        with pytest.raises(UnsafePathError):
            ensure_inside(bad, root)
    with pytest.raises(UnsafePathError):
        child_path(root, "x", "/../../y")


def test_remove_tree_inside_refuses_outside_and_never_follows_links(tmp_path: Path) -> None:
    root = tmp_path / "run"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    root.mkdir()
    for bad in (victim, root, root / ".." / "victim", Path("/")):
        with pytest.raises(UnsafePathError):
            remove_tree_inside(bad, root)
    link = root / "link"
    os.symlink(victim, link)
    remove_tree_inside(link, root)  # removes the link only
    assert not link.exists() and (victim / "keep.txt").read_text() == "precious"
    inner = root / "sub" / "deeper"
    inner.mkdir(parents=True)
    remove_tree_inside(root / "sub", root)
    assert not (root / "sub").exists() and root.is_dir()
    remove_tree_inside(root / "missing", root)  # nothing to do
