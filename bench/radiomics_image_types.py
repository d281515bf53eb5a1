"""Where PyRadiomics time goes on realistic cases: CPU seconds per image type (original / LoG / wavelet).

Runs the radiomics stage's own extractor (``ct_default`` parameters) on the registered arterial image and mask
of each patient given, once per image type, single-threaded, and records the tumour size with the CPU seconds.

    python bench/radiomics_image_types.py <run>/cache/preprocess-*/registered syn0001 syn0023

Writes ``bench/results/radiomics_profile_realistic.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/radiomics.py would shadow the PyRadiomics package: drop this folder from the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main(argv: list[str] | None = None) -> int:
    """Time each image type on each patient and write the JSON."""
    import numpy as np
    import SimpleITK as sitk

    from rccgrade.radiomics.job import make_extractor
    from rccgrade.radiomics.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("registered", type=Path, help="the preprocessing stage's registered/ folder")
    ap.add_argument("patients", nargs="+")
    ap.add_argument("--params", default="ct_default")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "radiomics_profile_realistic.json")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    params = load_params(args.params)
    cases: dict[str, dict[str, float]] = {}
    for pid in args.patients:
        image = sitk.ReadImage(str(args.registered / pid / "arterial.nii.gz"))
        mask = sitk.ReadImage(str(args.registered / pid / "mask.nii.gz"))
        n_vox = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
        row: dict[str, float] = {
            "tumour_voxels_native": n_vox,
            "tumour_ml": round(n_vox * np.prod(image.GetSpacing()) / 1000, 1),
        }
        for kind, options in params["imageType"].items():
            one = copy.deepcopy(params)
            one["imageType"] = {kind: options}
            extractor = make_extractor(one)
            t0 = time.process_time()
            result = extractor.execute(image, mask)
            row[f"{kind}_cpu_s"] = round(time.process_time() - t0, 2)
            row[f"{kind}_n_features"] = sum(not k.startswith("diagnostics") for k in result)
        cases[pid] = row
        print(pid, row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "radiomics_image_types", "params": args.params, "cases": cases}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
