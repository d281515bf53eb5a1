"""Atomic per-case writes: a writer killed mid-file leaves no truncated file under an output's final name.

On a cluster a worker can be SIGKILLed (out of memory, pre-empted) while it writes; no cleanup code runs then.
The killing is real here: a child process preprocesses one case with ``numpy.save`` / ``SimpleITK.WriteImage``
replaced by writers that put half of the bytes into the file they are given and then SIGKILL their own process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from rccgrade.atomic import atomic_path, is_temporary, save_npy_atomic, temporary_path, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]

KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
import numpy as np
import SimpleITK as sitk
from rccgrade.cohort.manifest import load_cohort
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess.pipeline import run_preprocess
from rccgrade.preprocess.settings import PreprocessSettings

target = sys.argv[3]  # "npy" or "image": which writer dies

def half_then_die(dest, payload: bytes):
    if hasattr(dest, "write"):
        dest.write(payload[: len(payload) // 2]); dest.flush()
    else:
        with open(dest, "wb") as fh:
            fh.write(payload[: len(payload) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

if target == "npy":
    np.save = lambda dest, arr, *a, **k: half_then_die(dest, np.ascontiguousarray(arr).tobytes())
else:
    sitk.WriteImage = lambda image, dest, *a, **k: half_then_die(dest, b"\x1f\x8b" + bytes(4096))

cohort = load_cohort(sys.argv[1])
settings = PreprocessSettings(registration={"enabled": False}, rois=["tumour"], image_size=32, qc=False)
run_preprocess(cohort, sys.argv[2], settings, ParallelSettings(backend="serial"))
"""


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "case.json"
    write_text_atomic(target, '{"v": 1}')

    def failing(tmp: Path) -> None:
        tmp.write_text('{"v": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        failing(tmp)
    assert target.read_text() == '{"v": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.json"]  # the temporary file is gone


def test_temporary_names_keep_the_extension_and_are_unique(tmp_path: Path) -> None:
    a, b = temporary_path(tmp_path / "P1.nii.gz"), temporary_path(tmp_path / "P1.nii.gz")
    assert a != b and a.parent == tmp_path and a.name.endswith(".nii.gz") and a.name.startswith(".")
    assert is_temporary(a) and not is_temporary(tmp_path / "P1.nii.gz") and not is_temporary(tmp_path / ".lock")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy_atomic(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), arr)


@pytest.mark.parametrize("writer", ["npy", "image"])
def test_a_worker_killed_mid_write_leaves_no_truncated_output(tmp_path: Path, writer: str) -> None:
    from rccgrade.parallel import ParallelSettings
    from rccgrade.synth.writer import write_cohort

    manifest = write_cohort(tmp_path / "cohort", n=1, seed=5, size="small", parallel=ParallelSettings(backend="serial"))
    out = tmp_path / "pre"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(manifest), str(out), writer],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]  # it really died mid-write
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(is_temporary(p) for p in files)  # the half-written bytes went to a temporary name …
    for p in files:  # … and every file under a final name is complete
        if is_temporary(p):
            continue
        if p.suffix == ".npy":
            np.load(p)
        elif p.name.endswith(".nii.gz"):
            sitk.ReadImage(str(p))
