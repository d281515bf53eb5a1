"""bundle.json is validated as a whole: checksums.json, the pydantic schema, one-line errors naming file and field."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rccgrade.cache import file_checksum
from rccgrade.cli import app
from rccgrade.errors import ModelError
from rccgrade.models.bundle import CHECKSUM_FILE, META_FILE, MODEL_FILE, bundle_from_arms, load_bundle, save_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, signal_fit: tuple[Any, ...]) -> Path:
    table, _, _, res = signal_fit
    return bundle_from_arms(res, "clinical", table, tmp_path_factory.mktemp("b") / "clinical")


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


def _rewrite(folder: Path, content: Any, *, fix_checksum: bool = True) -> None:
    """Write bundle.json (a dict, a list, or raw text) and, like a careful attacker, update checksums.json."""
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / META_FILE).write_text(text)
    if fix_checksum:
        sums = json.loads((folder / CHECKSUM_FILE).read_text())
        sums[META_FILE] = file_checksum(folder / META_FILE)
        (folder / CHECKSUM_FILE).write_text(json.dumps(sums))


def _edit(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(meta: dict[str, Any]) -> Any:
        if value is _DROP:
            meta.pop(key)
        else:
            meta[key] = value
        return meta

    return change


_DROP = object()

MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "a JSON list": (lambda meta: [meta], "JSON list"),
    "threshold text": (_edit("threshold", "abc"), "threshold"),
    "threshold NaN": (_edit("threshold", float("nan")), "threshold"),
    "threshold inf": (_edit("threshold", float("inf")), "threshold"),
    "threshold above 1": (_edit("threshold", 1.5), "threshold"),
    "threshold missing": (_edit("threshold", _DROP), "threshold"),
    "arm missing": (_edit("arm", _DROP), "arm"),
    "arm unknown": (_edit("arm", "surgery"), "arm"),
    "arm with ../": (_edit("arm", "../../etc"), "arm"),
    "arm with markup": (_edit("arm", "[bold red]clinical"), "arm"),
    "deep arm with markup": (_edit("arm", "deep:[x]"), "arm"),
    "feature_names a string": (_edit("feature_names", "clin:age"), "feature_names"),
    "feature_names empty": (_edit("feature_names", []), "feature_names"),
    "feature name with control characters": (_edit("feature_names", ["clin:age\x1b[2J"]), "feature_names"),
    "model_sha256 not hex": (_edit("model_sha256", "zz"), "model_sha256"),
    "unknown key": (_edit("surprise", 1), "surprise"),
    "n_train negative": (_edit("n_train", -3), "n_train"),
    "distribution out of order": (
        lambda meta: {
            **meta,
            "training_distribution": {"clin:age": {**meta["training_distribution"]["clin:age"], "min": 1e9}},
        },
        "training_distribution.clin:age",
    ),
    "distribution of an unknown feature": (
        lambda meta: {**meta, "training_distribution": {"clin:zzz": meta["training_distribution"]["clin:age"]}},
        "training_distribution",
    ),
}


@pytest.mark.parametrize("variant", list(MALFORMED))
def test_malformed_bundle_json_is_a_one_line_error_naming_file_and_field(
    variant: str, bundle: Path, tmp_path: Path
) -> None:
    change, field = MALFORMED[variant]
    copy = _copy(bundle, tmp_path)
    meta = json.loads((copy / META_FILE).read_text())
    _rewrite(copy, change(meta))
    with pytest.raises(ModelError) as info:
        load_bundle(copy)
    text = str(info.value)
    assert "\n" not in text, text
    assert str(copy / META_FILE) in text, text
    assert (field in text) if variant == "a JSON list" else (f"field '{field}" in text), text
    result = CliRunner().invoke(app, ["predict", str(copy), "--features", str(tmp_path / "none.parquet")])
    assert result.exit_code == 2 and not isinstance(result.exception, (KeyError, ValueError, AttributeError))
    assert field in result.output and "Traceback" not in result.output


def test_intact_bundle_loads(bundle: Path, tmp_path: Path) -> None:
    """Control for the variants above: the same copy-and-rewrite steps on an unchanged bundle.json pass."""
    copy = _copy(bundle, tmp_path)
    _rewrite(copy, json.loads((copy / META_FILE).read_text()))
    assert load_bundle(copy).arm == "clinical"


def test_not_json_is_a_clear_error(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    _rewrite(copy, "{not json")
    with pytest.raises(ModelError, match=r"bundle\.json is not valid JSON"):
        load_bundle(copy)


def test_edited_bundle_json_is_refused_by_its_checksum(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    meta = json.loads((copy / META_FILE).read_text())
    meta["threshold"] = 0.0001  # valid by the schema: only the checksum can tell
    _rewrite(copy, meta, fix_checksum=False)
    with pytest.raises(ModelError, match=r"SHA-256 of bundle\.json does not match"):
        load_bundle(copy)


def test_checksums_must_be_present_and_agree(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    sums = json.loads((copy / CHECKSUM_FILE).read_text())
    sums[MODEL_FILE] = "0" * 64
    (copy / CHECKSUM_FILE).write_text(json.dumps(sums))
    with pytest.raises(ModelError, match="model_sha256"):
        load_bundle(copy)
    (copy / CHECKSUM_FILE).unlink()
    with pytest.raises(ModelError, match=r"checksums\.json is missing"):
        load_bundle(copy)


def test_older_format_asks_for_a_re_export(bundle: Path, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path)
    meta = json.loads((copy / META_FILE).read_text())
    meta["format"] = 1
    del meta["training_distribution"]
    _rewrite(copy, meta)
    (copy / CHECKSUM_FILE).unlink()  # format 1 had none
    with pytest.raises(ModelError, match=r"field 'format'.*re-export"):
        load_bundle(copy)


def test_export_refuses_an_invalid_bundle(signal_fit: tuple[Any, ...], tmp_path: Path) -> None:
    table, y, _, res = signal_fit
    model = res.models["clinical"]
    train = table.loc[res.train_ids]
    with pytest.raises(ModelError, match="threshold"):
        save_bundle(
            tmp_path / "b", model, arm="clinical", threshold=float("nan"), X_train=train, y_train=y[train.index]
        )
    with pytest.raises(ModelError, match="arm"):
        save_bundle(tmp_path / "b", model, arm="../x", threshold=0.5, X_train=train, y_train=y[train.index])
