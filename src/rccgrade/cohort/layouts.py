"""Public dataset layouts → ordinary manifests: KiTS (kits19/21/23) and nnU-Net raw datasets.

* **KiTS**: ``ROOT/case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz`` (labels 1 kidney,
  2 tumour, 3 cyst) and ``kits.json`` (clinical data, one record per ``case_id``) in ROOT or its
  parent. One contrast phase (``--phase``, default arterial); the other phase columns stay empty.
  The tumour label (2) goes into the ``label`` column. ``tumor_isup_grade`` (1–4) becomes
  ``grade``; where it is missing the grade is left empty and the import says how many.
  Clinical columns: the pre-operative fields (:data:`KITS_PREOPERATIVE`, nested dicts
  flattened as ``comorbidities.<name>``, booleans as 0/1); ``all_clinical`` flattens every scalar
  field except pathology and outcome fields, which describe the resected tumour (they are known
  only after surgery and would leak the target into a pre-operative grade model).
* **nnU-Net** (v1 and v2 ``dataset.json``): ``imagesTr/<case>_0000.nii.gz`` … one file per channel
  and ``labelsTr/<case>.nii.gz``. ``channels`` names the phase of each channel in order; the
  tumour label is found by name in ``labels`` (``tumor``/``tumour``/``lesion``) or given.
  ``dataset.json`` holds no per-case clinical data, so none is added.

Every case folder / image found is accounted for in the returned :class:`ImportResult` (imported,
or skipped with the reason), and written as ``<out>_import.csv`` beside the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rccgrade.cohort.types import PHASES
from rccgrade.errors import CohortError

log = logging.getLogger(__name__)

KITS_TUMOUR_LABEL = 2
KITS_GRADE_FIELD = "tumor_isup_grade"
KITS_PREOPERATIVE: tuple[str, ...] = (
    "age_at_nephrectomy",
    "gender",
    "body_mass_index",
    "comorbidities",
    "smoking_history",
    "age_when_quit_smoking",
    "pack_years",
    "chewing_tobacco_use",
    "alcohol_use",
    "last_preop_egfr",
    "radiographic_size",
)
"""kits.json fields known before surgery (the default clinical columns)."""
_KITS_NEVER = re.compile(
    r"^(case_id|tumor_isup_grade|patholog|tumor_histolog|malignant|vital|voxel_spacing|intraoperative|"
    r"surgery|surgical|operative|estimated_blood|hospital|cytoreductive|positive_resection|"
    r"last_postop|postop|.*_days?$|sarcomatoid|rhabdoid|tumor_necrosis)"
)
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ImportResult:
    """A manifest built from a dataset layout.

    Attributes:
        manifest: Rows of the manifest (paths relative to ``out``'s folder once written).
        skipped: Entry → reason, for every case folder / image not imported.
        notes: What the user must know (grades missing, mask phase, labels).
    """

    manifest: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write the manifest CSV and ``<stem>_import.csv`` (every entry: imported or skipped, why)."""
        out = Path(out)
        if out.suffix.lower() != ".csv":
            raise CohortError("the manifest must be a .csv file; give --out NAME.csv", path=out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame = self.manifest.copy()
        base = out.parent.resolve()
        for col in (*PHASES, "mask"):
            if col in frame.columns:
                frame[col] = [
                    Path(os.path.relpath(p, base)).as_posix() if isinstance(p, str) and p else "" for p in frame[col]
                ]
        frame.to_csv(out, index=False)
        log_path = out.parent / f"{out.name[: -len('.csv')]}_import.csv"
        rows = [{"entry": pid, "status": "imported", "reason": ""} for pid in self.manifest["patient_id"]]
        rows += [{"entry": k, "status": "skipped", "reason": v} for k, v in sorted(self.skipped.items())]
        pd.DataFrame(rows, columns=["entry", "status", "reason"]).to_csv(log_path, index=False)
        return out, log_path


def _flatten(record: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = int(value)
        elif value is None or isinstance(value, int | float | str):
            out[name] = value
    return out


def _kits_json(root: Path) -> Path | None:
    for candidate in (root / "kits.json", root.parent / "kits.json"):
        if candidate.is_file():
            return candidate
    return None


def _grade(value: object) -> int | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number == int(number) and 1 <= number <= 4 else None


def import_kits(
    root: str | Path, *, phase: str = "arterial", all_clinical: bool = False, subtype: str | None = None
) -> ImportResult:
    """Build a manifest from a KiTS tree (see the module docstring).

    Args:
        root: Folder holding the ``case_XXXXX`` folders.
        phase: Phase column the imaging goes into.
        all_clinical: Flatten every non-pathology, non-outcome field of kits.json, not only the
            pre-operative ones.
        subtype: Keep only cases whose ``tumor_histologic_subtype`` equals this (e.g.
            ``clear_cell_rcc``); the others are listed as skipped.

    Raises:
        CohortError: root missing, no case folders, kits.json unreadable, unknown phase.
    """
    root = Path(root).expanduser().resolve()
    if phase not in PHASES:
        raise CohortError(f"unknown phase '{phase}'; use one of {', '.join(PHASES)}")
    if not root.is_dir():
        raise CohortError("KiTS folder not found; give the folder holding the case_XXXXX folders", path=root)
    cases = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"case_\d+", p.name))
    if not cases:
        raise CohortError("no case_XXXXX folders found; give the KiTS data folder", path=root)
    records: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    meta_path = _kits_json(root)
    if meta_path is None:
        notes.append("kits.json not found: no grades and no clinical columns")
    else:
        try:
            data = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CohortError(f"cannot read kits.json: {exc}", path=meta_path) from None
        if not isinstance(data, list):
            raise CohortError("kits.json is not a list of case records", path=meta_path)
        records = {str(r.get("case_id")): r for r in data if isinstance(r, dict) and r.get("case_id")}
    has_grade_field = any(KITS_GRADE_FIELD in r for r in records.values())
    if records and not has_grade_field:
        notes.append(f"kits.json has no '{KITS_GRADE_FIELD}' field: grade left empty for every case")

    rows: list[dict[str, object]] = []
    skipped: dict[str, str] = {}
    for folder in cases:
        image, seg = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
        if not image.is_file():
            skipped[folder.name] = "no imaging.nii.gz"
            continue
        if not seg.is_file():
            skipped[folder.name] = "no segmentation.nii.gz (test case without labels?)"
            continue
        record = records.get(folder.name, {})
        if subtype is not None and str(record.get("tumor_histologic_subtype", "")) != subtype:
            skipped[folder.name] = f"subtype '{record.get('tumor_histologic_subtype', 'unknown')}' is not '{subtype}'"
            continue
        row: dict[str, object] = {"patient_id": folder.name}
        for p in PHASES:
            row[p] = str(image) if p == phase else ""
        row["mask"] = str(seg)
        row["label"] = KITS_TUMOUR_LABEL
        grade = _grade(record.get(KITS_GRADE_FIELD))
        row["grade"] = "" if grade is None else grade
        flat = _flatten({k: v for k, v in record.items() if all_clinical or k in KITS_PREOPERATIVE})
        for key, value in flat.items():
            if not _KITS_NEVER.match(key):
                row[key] = "" if value is None else value
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("")
    if rows:
        missing = int((frame["grade"] == "").sum())
        if missing and has_grade_field:
            notes.append(f"{missing} of {len(rows)} cases have no ISUP grade in kits.json: grade left empty")
    notes.append(f"KiTS is single-phase: the images go into '{phase}'; set cohort.phases: [{phase}] and mask_phase")
    return ImportResult(frame, skipped, notes)


def _case_channel(name: str) -> tuple[str, int] | None:
    m = re.fullmatch(r"(.+)_(\d{4})" + r"\.nii(\.gz)?", name, flags=re.IGNORECASE)
    return (m.group(1), int(m.group(2))) if m else None


def _tumour_label(labels: dict[str, object], tumour_label: int | None, path: Path) -> int:
    # v2: name -> value (int or list for regions); v1: "value" -> name
    pairs: list[tuple[str, int]] = []
    for key, value in labels.items():
        if isinstance(value, int):
            pairs.append((str(key), value))
        elif str(key).isdigit():
            pairs.append((str(value), int(key)))
    if tumour_label is not None:
        if tumour_label not in {v for _, v in pairs} and pairs:
            raise CohortError(
                f"label {tumour_label} is not in dataset.json labels {dict(pairs)}; choose one of them", path=path
            )
        return tumour_label
    hits = [(n, v) for n, v in pairs if re.search(r"tumou?r|lesion|mass|cancer|neoplasm", n, re.IGNORECASE)]
    if len(hits) != 1:
        raise CohortError(
            f"cannot tell the tumour label from dataset.json labels {dict(pairs)}; give --tumour-label N", path=path
        )
    return hits[0][1]


def import_nnunet(dataset: str | Path, *, channels: list[str], tumour_label: int | None = None) -> ImportResult:
    """Build a manifest from an nnU-Net raw dataset folder (see the module docstring).

    Args:
        dataset: Folder holding dataset.json, imagesTr/ and labelsTr/.
        channels: Phase of each channel, in channel order (``_0000`` first).
        tumour_label: Tumour value in the label maps (default: found by name in dataset.json).

    Raises:
        CohortError: folder or dataset.json missing/unreadable, unknown phase names, channel count
            different from dataset.json, tumour label not identifiable.
    """
    dataset = Path(dataset).expanduser().resolve()
    meta_path = dataset / "dataset.json"
    if not meta_path.is_file():
        raise CohortError("dataset.json not found; give the nnU-Net raw dataset folder", path=dataset)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CohortError(f"cannot read dataset.json: {exc}", path=meta_path) from None
    bad = [c for c in channels if c not in PHASES]
    if bad or len(set(channels)) != len(channels) or not channels:
        raise CohortError(f"--channels must name distinct phases among {', '.join(PHASES)}; got {channels}")
    declared = meta.get("channel_names") or meta.get("modality") or {}
    if declared and len(declared) != len(channels):
        raise CohortError(
            f"dataset.json declares {len(declared)} channel(s) {declared} but --channels names {len(channels)}",
            path=meta_path,
        )
    label = _tumour_label(meta.get("labels") or {}, tumour_label, meta_path)
    images_dir, labels_dir = dataset / "imagesTr", dataset / "labelsTr"
    if not images_dir.is_dir():
        raise CohortError("imagesTr/ not found in the dataset folder", path=dataset)
    files: dict[str, dict[int, Path]] = {}
    skipped: dict[str, str] = {}
    for path in sorted(images_dir.iterdir()):
        parsed = _case_channel(path.name)
        if parsed is None:
            skipped[f"imagesTr/{path.name}"] = "not <case>_XXXX.nii.gz"
            continue
        files.setdefault(parsed[0], {})[parsed[1]] = path
    rows = []
    for case, chans in sorted(files.items()):
        missing = [i for i in range(len(channels)) if i not in chans]
        extra = sorted(set(chans) - set(range(len(channels))))
        seg = next((p for p in (labels_dir / f"{case}.nii.gz", labels_dir / f"{case}.nii") if p.is_file()), None)
        if missing or extra:
            skipped[case] = f"channels {missing} missing / {extra} unexpected for --channels {','.join(channels)}"
            continue
        if seg is None:
            skipped[case] = "no labelsTr/<case>.nii.gz"
            continue
        row: dict[str, object] = {"patient_id": case}
        for p in PHASES:
            row[p] = str(chans[channels.index(p)]) if p in channels else ""
        row["mask"] = str(seg)
        row["label"] = label
        row["grade"] = ""
        rows.append(row)
    notes = [
        "nnU-Net datasets carry no grades: fill in the grade column (or join a clinical CSV with --clinical-csv)",
        f"tumour label {label}; masks are on the grid of channel 0 ({channels[0]}), which all channels share",
    ]
    if (dataset / "imagesTs").is_dir():
        n_test = sum(1 for p in (dataset / "imagesTs").iterdir() if _NIFTI.search(p.name))
        if n_test:
            notes.append(f"imagesTs/ ({n_test} files) has no labels and was not imported")
    return ImportResult(pd.DataFrame(rows, columns=["patient_id", *PHASES, "mask", "label", "grade"]), skipped, notes)
