"""Benchmark (needs a CUDA GPU): the deep stage's forward on the GPU, with and without mixed precision, against the CPU.

Runs rccgrade's own ``load_backbone`` (ResNet50, random weights, seed 0: ImageNet weights cannot be fetched
offline, and agreement between precisions does not depend on which weights are loaded) and ``embed_slices`` on
the same slice images, and reports:

* agreement of the pooled 2,048 features with the CPU float32 forward, for CUDA float32 with torch's defaults
  outside rccgrade (cuDNN convolutions use TF32), CUDA ``amp: off`` as the deep stage runs it (TF32 off), CUDA
  ``amp: auto`` (float16) and ``amp: bf16``:
  the largest absolute difference relative to the largest feature, the median relative difference of features
  above 1 % of the largest, and the smallest per-image cosine similarity;
* repeatability (the same call twice), and independence of the number of images and of the batch setting in the
  default deterministic mode (every forward padded to one shape), against the same without it;
* throughput of the paper's 1,488 images (496 patients x 3 ROIs) at 224², for float32 and ``amp: auto``, with the
  automatic batch size from free memory (``resolve_batch_size``).

    python bench/deep_gpu.py --out bench/results/deep_gpu.json

No test or CI runs this: it needs a GPU. tests/deep/test_amp.py checks the autocast path on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def slice_images(n: int, seed: int = 0, low: int = 28, size: int = 224) -> np.ndarray:
    """``(n, 3, size, size)`` float32 images in [0, 1]: smooth random fields (bilinear upsampling of low-res noise)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    coarse = torch.as_tensor(rng.uniform(0.0, 1.0, size=(n, 3, low, low)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).numpy()


def agreement(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How closely ``got`` ``(N, D)`` matches ``ref`` ``(N, D)``."""
    scale = float(np.abs(ref).max())
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    big = np.abs(ref) > 0.01 * scale
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "max_abs_diff_over_max_feature": float(diff.max() / scale),
        "median_rel_diff_features_above_1pct": float(np.median(diff[big] / np.abs(ref[big]))),
        "min_cosine": float(cos.min()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the JSON."""
    import torch

    from rccgrade.deep.data import autocast_dtype, resolve_batch_size, torch_runtime
    from rccgrade.deep.embed import embed_slices
    from rccgrade.deep.settings import DeepSettings
    from rccgrade.deep.weights import load_backbone

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-compare", type=int, default=64, help="images compared across precisions")
    ap.add_argument("--n-throughput", type=int, default=1488, help="images timed (paper: 496 x 3 ROIs)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "deep_gpu.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench/deep_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")

    def run(
        x: np.ndarray, amp: str, device: torch.device, batch: int = 0, *, det: bool = True, runtime: bool = True
    ) -> tuple[np.ndarray, int, float]:
        """Features as the deep stage computes them (inside ``torch_runtime``, unless ``runtime`` is False)."""
        s = DeepSettings(
            arch="resnet50",
            weights="none",
            device=device.type,
            amp=amp,
            batch_size=batch,
            deterministic=det,  # type: ignore[arg-type]
        )
        model, info = load_backbone(s, seed=0)
        with torch_runtime(s) if runtime else contextlib.nullcontext():
            bs = resolve_batch_size(s, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            f, _ = embed_slices(model, x, mean=info.mean, std=info.std, settings=s, device=device, batch_size=bs)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return f, bs, time.perf_counter() - t0

    x = slice_images(args.n_compare)
    ref, bs_cpu, t_cpu = run(x, "off", cpu)
    out: dict[str, Any] = {
        "benchmark": "deep_gpu",
        "model": "ResNet50 (MONAI, torchvision layout), random weights seed 0, pooled 2,048 features",
        "images": f"{args.n_compare} smooth random 3-channel fields at 224², values in [0, 1]",
        "cpu_float32": {"batch": bs_cpu, "seconds": round(t_cpu, 3), "torch_threads": torch.get_num_threads()},
        "agreement_with_cpu_float32": {},
    }
    cmp = out["agreement_with_cpu_float32"]
    tf32 = torch.backends.cudnn.allow_tf32
    f32_default, _, _ = run(x, "off", cuda, runtime=False)
    cmp["cuda_float32_torch_defaults_outside_rccgrade"] = {**agreement(ref, f32_default), "cudnn_allow_tf32": tf32}
    f32, _, _ = run(x, "off", cuda)
    cmp["cuda_amp_off"] = agreement(ref, f32)
    f16, bs16, _ = run(x, "auto", cuda)
    cmp["cuda_amp_auto"] = {**agreement(ref, f16), "dtype": str(autocast_dtype(DeepSettings(device="cuda"), cuda))}
    bf16, _, _ = run(x, "bf16", cuda)
    cmp["cuda_amp_bf16"] = agreement(ref, bf16)
    f16b, _, _ = run(x, "auto", cuda)
    out["cuda_amp_auto_batch"] = bs16
    out["cuda_amp_auto_repeat_identical"] = bool(np.array_equal(f16, f16b))
    # deterministic (default): every forward padded to one shape, so a run of fewer images gives the same numbers
    f16_50, _, _ = run(x[:50], "auto", cuda)
    f16_b7, _, _ = run(x, "auto", cuda, batch=7)
    out["cuda_amp_auto_first50_of_64_identical"] = bool(np.array_equal(f16[:50], f16_50))
    out["cuda_amp_auto_batch7_identical_images"] = int((f16_b7 == f16).all(axis=1).sum())
    # without deterministic: shapes follow the batch, and so does cuDNN's rounding
    nd_auto, nd_bs, _ = run(x, "auto", cuda, det=False)
    nd_b7, _, _ = run(x, "auto", cuda, batch=7, det=False)
    out["cuda_amp_auto_nondeterministic_batch7_vs_auto"] = {"auto_batch": nd_bs, **agreement(nd_auto, nd_b7)}

    xt = slice_images(args.n_throughput, seed=1)
    speed: dict[str, Any] = {}
    for amp in ("off", "auto"):
        run(xt[:64], amp, cuda)  # warm-up (cuDNN plans, allocator)
        _, bs, secs = run(xt, amp, cuda)
        speed[f"amp_{amp}"] = {"batch": bs, "seconds": round(secs, 3), "images_per_s": round(len(xt) / secs, 1)}
    out["throughput_cuda"] = {"images": len(xt), **speed}
    out["gpu"] = torch.cuda.get_device_name(0)
    out["torch"] = torch.__version__
    out["machine"] = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    out["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
