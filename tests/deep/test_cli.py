"""``rccgrade deep``: reads the preprocessing output, writes the FeatureTable, metadata and Grad-CAM PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from rccgrade.cli import app
from rccgrade.features.table import load_table


def _preprocess_dir(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pid = f"case{i}"
        path = root / "slices" / "box" / f"{pid}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.random((1, 3, 32, 32), dtype=np.float32))
        rows.append(
            {
                "patient_id": pid,
                "roi": "box",
                "path": f"slices/box/{pid}.npy",
                "n_slices": 1,
                "slice_indices": "5",
                "selection": "largest",
                "channels": "arterial;nephrographic;excretory",
            }
        )
    pd.DataFrame(rows).to_csv(root / "slices" / "index.csv", index=False)
    return root


def test_deep_command_frozen(tmp_path: Path) -> None:
    pre = _preprocess_dir(tmp_path / "pre")
    out = tmp_path / "out" / "deep.parquet"
    args = ["deep", str(pre), "--out", str(out), "--weights", "none", "--arch", "resnet_tiny", "--roi", "box"]
    args += ["--input-size", "32", "--threads", "1", "--device", "cpu", "--gradcam", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table, meta = load_table(out)
    assert table.shape == (3, 512) and list(table.index) == ["case0", "case1", "case2"]
    assert meta["random_init"] is True
    assert json.loads(out.with_suffix(".json").read_text())["weights"]["source"] == "none"
    assert (tmp_path / "out" / "gradcam" / "box" / "case0.png").is_file()


def test_deep_command_finetune_needs_manifest(tmp_path: Path) -> None:
    pre = _preprocess_dir(tmp_path / "pre", n=1)
    args = ["deep", str(pre), "--out", str(tmp_path / "d.parquet"), "--mode", "finetune", "--weights", "none"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--manifest" in result.output


def test_deep_command_finetune_with_manifest(tmp_path: Path) -> None:
    pre = _preprocess_dir(tmp_path / "pre", n=8)
    lines = ["patient_id,arterial,nephrographic,excretory,mask,grade,split"]
    for i in range(8):
        lines.append(f"case{i},a.nii.gz,n.nii.gz,e.nii.gz,m.nii.gz,{1 + 2 * (i % 2)},{'train' if i < 6 else 'test'}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "deep.parquet"
    args = ["deep", str(pre), "--out", str(out), "--mode", "finetune", "--manifest", str(manifest)]
    args += ["--weights", "none", "--arch", "resnet_tiny", "--input-size", "32", "--threads", "1", "--device", "cpu"]
    args += ["--epochs", "1", "--folds", "2", "--gradcam", "1", "--cache", str(tmp_path / "cache"), "--roi", "box"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    probs = pd.read_csv(out.with_suffix(".probabilities.csv"), index_col="patient_id")
    assert list(probs.columns) == ["p_high:box", "fold:box"]
    assert (probs.loc[["case6", "case7"], "fold:box"] == -1).all()
    assert set(probs.loc[[f"case{i}" for i in range(6)], "fold:box"]) == {0, 1}
    assert probs["p_high:box"].between(0, 1).all()
    assert (tmp_path / "out" / "gradcam" / "box" / "case6.png").is_file()  # a test patient
