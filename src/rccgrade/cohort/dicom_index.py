"""Index a PACS export: find the CT series of every study and sort them into contrast phases.

``rccgrade index DICOM_ROOT --out draft_manifest.csv`` (see :mod:`rccgrade.cohort.index_cli`).

Steps:

1. **Headers** of every file under the root are read with ``pydicom`` (``stop_before_pixels``),
   in parallel (:func:`rccgrade.parallel.run_cases`, chunks of files). Files that are not DICOM
   (README, DICOMDIR, thumbnails) are counted and skipped. PatientName, birth date and every other
   identifying tag are never read into memory beyond pydicom's dataset, never logged and never
   written.
2. **Grouping** by PatientID → StudyInstanceUID → SeriesInstanceUID.
3. **Exclusion**, each with a reason code recorded in ``<out>_series.csv``: ``dose_report``,
   ``structured_report``, ``secondary_capture``, ``segmentation`` / ``rtstruct`` (usable as masks,
   see ``mask`` column), ``not_ct``, ``localizer`` (ImageType LOCALIZER, scout/topogram words),
   ``multiframe``, ``too_few_slices`` (< ``min_slices``), ``split_across_folders``,
   ``inconsistent_geometry``, ``gantry_tilt``, ``duplicate_slices``, ``uneven_spacing``,
   ``reformat`` (MIP/MinIP/VRT/3D), ``non_contrast``.
4. **Phase** of each remaining series from the evidence of :mod:`rccgrade.cohort.phase_rules`
   (keywords, delay after bolus, acquisition order), with a confidence; where the study's series carry
   ContrastBolusAgent, an untagged series without phase words acquired before them is the native scan.
5. **Choice** among several series of one phase (reconstructions), by the rule
   :data:`CHOICE_RULE`; the others are recorded as alternatives.
6. **Output**: one draft manifest row per study, readable by ``rccgrade validate`` (phase columns
   point at the series' folder relative to the manifest, with ``<phase>_series_uid``), with
   ``needs_review``, ``phase_confidence`` and ``phase_evidence``; ``<out>_series.csv`` (every
   series, chosen/alternative/excluded with the reason) and ``<out>_summary.csv`` (per patient).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import itertools
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rccgrade.cohort import phase_rules as pr
from rccgrade.cohort.dicom_headers import (  # noqa: F401 - moved there; names kept importable from here
    _DICOMDIR,
    _DOSE_SR,
    _DOSE_WORDS,
    _LOCALIZER_WORDS,
    _REFORMAT_WORDS,
    _RTSTRUCT,
    _SC_PREFIX,
    _SEG,
    _SR_PREFIX,
    FileHeader,
    _exclusion,
    _float,
    _floats,
    _referenced_series,
    _series_geometry,
    _text,
    find_files,
    read_header,
    read_headers,
)
from rccgrade.errors import CohortError
from rccgrade.parallel import ParallelSettings, run_cases

log = logging.getLogger(__name__)

CHOICE_RULE = "axial > soft-tissue kernel > thinnest slices > most slices > lowest SeriesNumber > SeriesInstanceUID"
"""How one series is chosen among several reconstructions of one phase (first criterion first)."""

MANIFEST_COLUMNS: tuple[str, ...] = ("patient_id", *pr.CONTRAST_PHASES, "mask", "grade")
REVIEW_COLUMNS: tuple[str, ...] = ("needs_review", "phase_confidence", "phase_evidence")
"""Columns of the draft manifest a human checks; the manifest reader treats them as reserved."""


@dataclass(frozen=True)
class SeriesRecord:
    """One series of a study with its verdict.

    Attributes:
        status: ``chosen``, ``alternative``, ``excluded`` or ``unassigned`` (phase unknown).
        reason: Exclusion code (see the module docstring) or "" for usable series.
        detail: Human-readable reason / choice rule.
        phase: Phase given to the series ("" when none).
        confidence: Confidence of that phase (see :class:`~rccgrade.cohort.phase_rules.PhaseDecision`).
        evidence: The phase evidence text.
    """

    patient_id: str
    study_uid: str
    series_uid: str
    series_number: int | None
    description: str
    modality: str
    n_files: int
    folder: str
    slice_thickness: float | None
    kernel: str
    axial: bool
    acquisition_time: float | None
    file: str = ""
    referenced_series: str = ""
    status: str = "unassigned"
    reason: str = ""
    detail: str = ""
    phase: str = ""
    confidence: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class StudyRow:
    """One draft manifest row (one study of one patient).

    Attributes:
        images: Phase → chosen series (absent when no series has that phase).
        confidence: Phase → confidence of the chosen series.
        evidence: Phase → evidence text of the chosen series.
        review: Why the row needs review (empty when it does not).
    """

    patient_id: str
    study_uid: str
    images: dict[str, SeriesRecord]
    confidence: dict[str, str]
    evidence: dict[str, str]
    review: list[str] = field(default_factory=list)
    masks: list[SeriesRecord] = field(default_factory=list)


@dataclass(frozen=True)
class DicomIndex:
    """Result of :func:`index_dicom_tree`.

    Attributes:
        rows: Draft manifest rows, one per study, in patient/study order.
        series: Every series found, with its verdict.
        unreadable: Files that are not DICOM (path, reason), in path order.
        n_files: Files looked at.
    """

    rows: list[StudyRow]
    series: list[SeriesRecord]
    unreadable: list[tuple[str, str]]
    n_files: int

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write the draft manifest ``out`` and, beside it, ``<stem>_series.csv`` (every series and its
        verdict), ``<stem>_summary.csv`` (per patient) and ``<stem>_skipped_files.csv`` (non-DICOM files).

        Paths are relative to the manifest's folder. Returns the four paths by kind.
        """
        out = Path(out)
        if out.suffix.lower() != ".csv":
            raise CohortError("the draft manifest must be a .csv file; give --out NAME.csv", path=out)
        out.parent.mkdir(parents=True, exist_ok=True)
        base = out.parent
        stem = out.name[: -len(".csv")]
        paths = {
            "manifest": out,
            "series": base / f"{stem}_series.csv",
            "summary": base / f"{stem}_summary.csv",
            "skipped": base / f"{stem}_skipped_files.csv",
        }
        header = [*MANIFEST_COLUMNS, *(f"{p}_series_uid" for p in pr.CONTRAST_PHASES), *REVIEW_COLUMNS]
        with paths["manifest"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in self.rows:
                cells = {c: "" for c in header}
                cells["patient_id"] = row.patient_id
                for phase, rec in row.images.items():
                    cells[phase] = _relative(rec.folder, base)
                    cells[f"{phase}_series_uid"] = rec.series_uid
                if len(row.masks) == 1 and row.masks[0].n_files == 1:
                    cells["mask"] = _relative(row.masks[0].file, base)
                cells["needs_review"] = "1" if row.review else "0"
                cells["phase_confidence"] = ";".join(
                    f"{p}={row.confidence.get(p, 'missing')}" for p in pr.CONTRAST_PHASES
                )
                evidence = [f"{p}: {row.evidence[p]}" for p in pr.CONTRAST_PHASES if p in row.evidence]
                cells["phase_evidence"] = " | ".join([*row.review, *evidence])
                writer.writerow([cells[c] for c in header])
        series_cols = [
            "patient_id",
            "study_uid",
            "series_uid",
            "series_number",
            "description",
            "modality",
            "n_files",
            "folder",
            "slice_thickness",
            "kernel",
            "status",
            "phase",
            "confidence",
            "reason",
            "detail",
            "evidence",
        ]
        with paths["series"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(series_cols)
            for rec in self.series:
                values = {c: getattr(rec, c) for c in series_cols}
                values["folder"] = _relative(rec.folder, base)
                writer.writerow(["" if values[c] is None else values[c] for c in series_cols])
        with paths["summary"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["patient_id", "studies", "series", "excluded", *pr.CONTRAST_PHASES, "needs_review", "why"])
            by_patient: dict[str, list[StudyRow]] = defaultdict(list)
            for row in self.rows:
                by_patient[row.patient_id.split("__study")[0]].append(row)
            for pid, rows in by_patient.items():
                recs = [r for r in self.series if r.patient_id == pid]
                writer.writerow(
                    [
                        pid,
                        len(rows),
                        len(recs),
                        sum(r.status == "excluded" for r in recs),
                        *(
                            ",".join(row.confidence[p] for row in rows if p in row.images) or "missing"
                            for p in pr.CONTRAST_PHASES
                        ),
                        int(any(row.review for row in rows)),
                        " | ".join(msg for row in rows for msg in row.review),
                    ]
                )
        with paths["skipped"].open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "reason"])
            for path, why in self.unreadable:
                writer.writerow([_relative(path, base), why])
        return paths


def _relative(folder: str, base: Path) -> str:
    return Path(os.path.relpath(folder, base)).as_posix()


def pseudonym(patient_id: str, key: str) -> str:
    """Stable pseudonym of a PatientID: ``P`` + 16 hex digits of HMAC-SHA256(key, PatientID)."""
    return "P" + hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:16]


def _group(headers: list[FileHeader]) -> dict[tuple[str, str], dict[str, list[FileHeader]]]:
    studies: dict[tuple[str, str], dict[str, list[FileHeader]]] = defaultdict(lambda: defaultdict(list))
    for h in headers:
        studies[(h.patient_id, h.study_uid)][h.series_uid].append(h)
    return studies


def _choice_key(rec: SeriesRecord) -> tuple[object, ...]:
    return (
        not rec.axial,
        pr.is_sharp_kernel(rec.kernel),
        rec.slice_thickness if rec.slice_thickness is not None else float("inf"),
        -rec.n_files,
        rec.series_number if rec.series_number is not None else 1 << 30,
        rec.series_uid,
    )


def _index_study(
    patient_id: str, study_uid: str, series: dict[str, list[FileHeader]], min_slices: int
) -> tuple[StudyRow, list[SeriesRecord]]:
    records: list[SeriesRecord] = []
    usable: list[tuple[SeriesRecord, FileHeader]] = []
    for uid in sorted(series, key=lambda u: (series[u][0].series_number or 0, u)):
        files = sorted(series[uid], key=lambda f: f.path)
        first = files[0]
        reason, detail, axial = _exclusion(files, min_slices)
        times = [f.acquisition_time for f in files if f.acquisition_time is not None]
        thickness = [f.slice_thickness for f in files if f.slice_thickness is not None]
        rec = SeriesRecord(
            patient_id=patient_id,
            study_uid=study_uid,
            series_uid=uid,
            series_number=first.series_number,
            description=first.description,
            modality=first.modality,
            n_files=len(files),
            folder=os.path.dirname(first.path),
            file=first.path,
            referenced_series=first.referenced_series,
            slice_thickness=float(np.median(thickness)) if thickness else None,
            kernel=first.kernel,
            axial=axial,
            acquisition_time=min(times) if times else first.series_time,
            status="excluded" if reason else "unassigned",
            reason=reason,
            detail=detail,
        )
        if reason:
            records.append(rec)
        else:
            usable.append((rec, first))

    # keyword + delay evidence; native series leave the phase competition before the order is taken
    pre: list[tuple[SeriesRecord, FileHeader, str | None, dict[str, list[str]], str | None, float | None, str]] = []
    for rec, first in usable:
        kw, words = pr.keyword_evidence(first.description, first.protocol)
        delay_phase, delay_s, delay_src = pr.delay_evidence(
            first.acquisition_time, first.bolus_start, first.description, first.protocol
        )
        pre.append((rec, first, kw, words, delay_phase, delay_s, delay_src))
    # contrast tags: where the study's series carry ContrastBolusAgent, an untagged series without phase words
    # or delay, acquired before every tagged one, is the non-contrast scan (low confidence, flagged)
    tagged = [item[0].acquisition_time for item in pre if item[1].contrast_agent]
    untagged_native = {
        item[0].series_uid
        for item in pre
        if tagged
        and None not in tagged
        and not item[1].contrast_agent
        and item[2] is None
        and item[4] is None
        and item[0].acquisition_time is not None
        and item[0].acquisition_time < min(t for t in tagged if t is not None)
    }
    contrast = [item for item in pre if item[2] != pr.NATIVE and item[0].series_uid not in untagged_native]
    acq_times = sorted(
        {round(item[0].acquisition_time, 0) for item in contrast if item[0].acquisition_time is not None}
    )
    review: list[str] = []
    decided: list[SeriesRecord] = []
    for rec, first, kw, words, delay_phase, delay_s, delay_src in pre:
        if rec.series_uid in untagged_native:
            evidence = (
                "no ContrastBolusAgent while the study's other series have one, and acquired before them; "
                "no phase words"
            )
            review.append(f"series {rec.series_number} '{rec.description}' taken as non-contrast ({evidence})")
            decided.append(
                replace(
                    rec,
                    status="excluded",
                    reason="non_contrast",
                    detail="non-contrast series (from the contrast tags)",
                    phase=pr.NATIVE,
                    confidence="low",
                    evidence=evidence,
                )
            )
            continue
        if kw == pr.NATIVE:
            rank: int | None = None
            order_phase, order_text = None, "native series"
        else:
            rank = None if rec.acquisition_time is None else acq_times.index(round(rec.acquisition_time, 0))
            order_phase, order_text = pr.order_evidence(rank, len(acq_times))
        ev = pr.PhaseEvidence(
            keyword=kw,
            keyword_words=words,
            delay=delay_phase,
            delay_seconds=delay_s,
            delay_source=delay_src,
            order=order_phase,
            order_text=order_text,
            contrast_agent=first.contrast_agent,
        )
        decision = pr.decide_phase(ev)
        if decision.phase == pr.NATIVE:
            decided.append(
                replace(
                    rec,
                    status="excluded",
                    reason="non_contrast",
                    detail="non-contrast series",
                    phase=pr.NATIVE,
                    confidence=decision.confidence,
                    evidence=decision.evidence,
                )
            )
            continue
        if decision.phase is None:
            review.append(f"series {rec.series_number} '{rec.description}': phase unknown ({decision.evidence})")
        decided.append(
            replace(rec, phase=decision.phase or "", confidence=decision.confidence, evidence=decision.evidence)
        )

    images: dict[str, SeriesRecord] = {}
    confidence: dict[str, str] = {}
    evidence: dict[str, str] = {}
    final: dict[str, SeriesRecord] = {r.series_uid: r for r in decided}
    for phase in pr.CONTRAST_PHASES:
        candidates = sorted((r for r in decided if r.phase == phase), key=_choice_key)
        if not candidates:
            review.append(f"{phase}: no series found")
            continue
        chosen = candidates[0]
        acquisitions = {r.acquisition_time for r in candidates}
        if len(acquisitions) > 1:
            review.append(f"{phase}: {len(acquisitions)} different acquisitions claim this phase")
        if chosen.confidence not in ("high", "medium"):
            review.append(f"{phase}: confidence {chosen.confidence}")
        alternatives = [r for r in candidates[1:]]
        alt_text = ", ".join(f"#{r.series_number} '{r.description}'" for r in alternatives)
        final[chosen.series_uid] = replace(
            chosen,
            status="chosen",
            detail=f"chosen by {CHOICE_RULE}" + (f" over {alt_text}" if alt_text else ""),
        )
        for r in alternatives:
            final[r.series_uid] = replace(
                r, status="alternative", detail=f"{phase} alternative to #{chosen.series_number} '{chosen.description}'"
            )
        images[phase] = final[chosen.series_uid]
        confidence[phase] = chosen.confidence
        evidence[phase] = f"#{chosen.series_number} '{chosen.description}' ({chosen.confidence}): {chosen.evidence}" + (
            f"; alternatives {alt_text}" if alt_text else ""
        )
    # phases must follow acquisition order (arterial before nephrographic before excretory)
    times = [(p, images[p].acquisition_time) for p in pr.CONTRAST_PHASES if p in images]
    known = [(p, t) for p, t in times if t is not None]
    if any(a[1] > b[1] for a, b in itertools.pairwise(known)):
        review.append("phases out of acquisition order: " + ", ".join(f"{p} at {t:.0f} s" for p, t in known))
    records.extend(final.values())
    masks = [r for r in records if r.reason in ("segmentation", "rtstruct")]
    phase_of = {rec.series_uid: p for p, rec in images.items()}
    for m in masks:
        drawn_on = phase_of.get(m.referenced_series)
        if drawn_on is None:
            review.append(
                f"mask '{m.description}' references series {m.referenced_series or '(none)'}, not a chosen phase"
            )
        elif drawn_on != "arterial":
            review.append(f"mask '{m.description}' was drawn on the {drawn_on} series: set cohort.mask_phase")
    if len(masks) > 1:
        review.append(f"{len(masks)} mask objects (SEG/RTSTRUCT) in the study; fill in the mask column")
    records.sort(key=lambda r: (r.series_number if r.series_number is not None else 1 << 30, r.series_uid))
    row = StudyRow(patient_id, study_uid, images, confidence, evidence, review, masks)
    return row, records


def index_dicom_tree(
    root: str | Path,
    *,
    parallel: ParallelSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    min_slices: int = 5,
    pseudonymise_key: str | None = None,
    chunk: int = 64,
) -> DicomIndex:
    """Index every DICOM file under ``root`` into draft manifest rows (see the module docstring).

    Args:
        root: Folder of the PACS export (searched recursively; any file name or extension).
        parallel: How the headers are read (default: local processes).
        progress: ``progress(done, total)`` over chunks of files.
        min_slices: Series with fewer slices are ``too_few_slices`` (scouts, key images).
        pseudonymise_key: Secret for :func:`pseudonym`; None keeps PatientID.
        chunk: Files per work item.

    Raises:
        CohortError: root missing, or no DICOM series found under it.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CohortError("DICOM root folder not found; give the folder of the PACS export", path=root)
    files = find_files(root)
    chunks = [files[i : i + chunk] for i in range(0, len(files), chunk)]
    outcomes = run_cases(read_headers, chunks, settings=parallel, progress=progress)
    headers: list[FileHeader] = []
    unreadable: list[tuple[str, str]] = []
    for part, outcome in zip(chunks, outcomes, strict=True):
        if not outcome.ok or outcome.value is None:
            unreadable.extend((p, f"header scan failed: {outcome.error}") for p in part)
            continue
        for path, result in zip(part, outcome.value, strict=True):
            if isinstance(result, str):
                unreadable.append((path, result))
            else:
                headers.append(result)
    if not headers:
        raise CohortError(
            f"no DICOM series found under the folder ({len(files)} files looked at); point it at a PACS export",
            path=root,
        )
    if unreadable:
        log.info("%d of %d files are not DICOM images and were skipped", len(unreadable), len(files))

    rows: list[StudyRow] = []
    series: list[SeriesRecord] = []
    studies = _group(headers)
    by_patient: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in studies:
        by_patient[key[0]].append(key)
    leaky = 0
    for raw_pid in sorted(by_patient):
        keys = sorted(
            by_patient[raw_pid],
            key=lambda k: (
                next(iter(studies[k].values()))[0].study_date,
                next(iter(studies[k].values()))[0].study_time or 0,
                k[1],
            ),
        )
        pid = raw_pid or "NO_PATIENT_ID"
        if pseudonymise_key is not None:
            pid = pseudonym(raw_pid, pseudonymise_key)
        for k, key in enumerate(keys, start=1):
            row_id = pid if len(keys) == 1 else f"{pid}__study{k}"
            row, recs = _index_study(pid, key[1], studies[key], min_slices)
            review = list(row.review)
            if not raw_pid:
                review.insert(0, "no PatientID in the headers")
            if len(keys) > 1:
                review.insert(0, f"patient has {len(keys)} studies; keep one row per patient")
            rows.append(replace(row, patient_id=row_id, review=review))
            series.extend(recs)
            if pseudonymise_key is not None and len(raw_pid) >= 3:
                leaky += any(raw_pid.lower() in os.path.relpath(r.folder, root).lower() for r in recs)
    if leaky:
        log.warning(
            "%d patient(s) have their PatientID in the export's folder names, which the manifest paths repeat: "
            "rename the folders (or copy the export) before sharing the outputs",
            leaky,
        )
    return DicomIndex(rows=rows, series=series, unreadable=sorted(unreadable), n_files=len(files))
