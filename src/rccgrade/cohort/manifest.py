"""Read a manifest CSV (plus an optional clinical CSV) into a :class:`~rccgrade.cohort.types.Cohort`.

Structural problems — the file is missing, it has no ``patient_id`` column, no image or mask
columns — raise :class:`~rccgrade.errors.CohortError` at once, since nothing can be checked.
Problems of one row (a bad grade, a duplicate id, a clinical value of the wrong type, a path
leaving the manifest's folder) never raise: they are recorded in ``Cohort.issues`` so that
:func:`rccgrade.cohort.validate.validate_cohort` can report every case in one pass.

Reserved columns (matched case-insensitively): ``patient_id``, one column per phase (``arterial``,
``nephrographic``, ``excretory``), ``mask``, ``grade``, ``high_grade``, ``split``, ``center``,
``label`` and ``<phase>_series_uid`` / ``mask_series_uid``. Every other column is clinical.
"""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path
from typing import Literal

import pandas as pd

from rccgrade.cohort.settings import CohortSettings
from rccgrade.cohort.types import PHASES, Case, ClinicalKind, Cohort, Problem, Severity
from rccgrade.errors import CohortError
from rccgrade.safepath import check_identifier

log = logging.getLogger(__name__)

NO_PATH = Path("")
"""Placeholder stored in ``Case.mask`` when the manifest cell is empty (reported as ``mask_missing``)."""

LABEL_COLUMNS: tuple[str, ...] = ("grade", "high_grade", "split", "center", "label")
SPLITS: frozenset[str] = frozenset({"train", "test"})
# written by `rccgrade index` / `import-*` for a human to check (never clinical variables), and mask_segment
ANNOTATION_COLUMNS: tuple[str, ...] = (
    "mask_segment",
    "needs_review",
    "phase_confidence",
    "phase_evidence",
    "source_patient_id",
)


def _reserved(phases: list[str]) -> set[str]:
    names = {"patient_id", "mask", *LABEL_COLUMNS, "mask_series_uid", *ANNOTATION_COLUMNS}
    for phase in (*PHASES, *phases):
        names.add(phase)
        names.add(f"{phase}_series_uid")
    return names


#: Cell texts read as "missing" in every column except ``patient_id`` (pandas' default NA tokens).
NA_TOKENS: frozenset[str] = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A"}
    | {"NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)


def read_manifest_table(path: str | Path, what: str = "manifest") -> pd.DataFrame:
    """Read a manifest or clinical CSV as text, exactly as written.

    The file must be UTF-8 (a byte-order mark is allowed). Anything else is refused with a message naming
    the file, the line and the byte, rather than guessed: a wrong guess (latin-1 for a UTF-8 file or the
    reverse) silently changes patient ids and file paths.

    ``patient_id`` cells are kept verbatim (``NA``, ``null``, ``None``, ``001`` are ids); in the other
    columns an empty cell or one of :data:`NA_TOKENS` is missing (``None``). Column names are stripped.

    Raises:
        CohortError: the file is missing, unreadable, not UTF-8, or not parseable as CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"{what} not found; check the path (or create it: see README, 'Input format')", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CohortError(f"cannot read the {what}: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CohortError(
            f"the {what} is not UTF-8 text (byte 0x{raw[exc.start]:02X} on line {line} is not valid UTF-8; it was "
            "probably saved as Latin-1/Windows-1252); save it as UTF-8 ('CSV UTF-8' in Excel, or "
            "'iconv -f cp1252 -t utf-8')",
            path=path,
        ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CohortError(
            f"cannot parse the {what} as CSV: {exc}; save it as comma-separated UTF-8 text with a header row",
            path=path,
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in frame.columns:
        if col.lower() != "patient_id":
            frame[col] = frame[col].map(lambda v: None if v.strip() in NA_TOKENS else v)
    return frame


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    return read_manifest_table(path, what)


def _canonical_columns(frame: pd.DataFrame, reserved: set[str], path: Path) -> pd.DataFrame:
    """Lower-case reserved column names (``Patient_ID`` → ``patient_id``); refuse duplicates."""
    rename = {c: c.lower() for c in frame.columns if c.lower() in reserved}
    frame = frame.rename(columns=rename)
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise CohortError(f"duplicate column(s) {dupes}; keep one column of each name", path=path)
    return frame


def _cell(value: object) -> str | None:
    """A stripped string, or None for a missing/blank cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def parse_number(text: str | None) -> float | None:
    """``float(text)`` for a finite number, else None."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def infer_clinical_type(values: pd.Series, parse_fraction: float = 1.0) -> ClinicalKind:
    """``numeric`` when at least ``parse_fraction`` of the non-missing values parse as numbers.

    An all-missing column is numeric (it carries no category either).
    """
    present = [v for v in (_cell(x) for x in values) if v is not None]
    if not present:
        return "numeric"
    parsed = sum(parse_number(v) is not None for v in present)
    return "numeric" if parsed / len(present) >= parse_fraction - 1e-12 else "categorical"


def _resolve(root: Path, text: str) -> tuple[Path, bool]:
    """Path of a manifest cell and whether a relative path escapes ``root``."""
    raw = Path(os.path.expanduser(text))
    if raw.is_absolute():
        return Path(os.path.normpath(raw)), False
    full = Path(os.path.normpath(root / raw))
    try:
        full.relative_to(root)
        escapes = False
    except ValueError:
        escapes = True
    return full, escapes


def _join_clinical(frame: pd.DataFrame, clinical_csv: Path, reserved: set[str]) -> pd.DataFrame:
    clin = _canonical_columns(_read_csv(clinical_csv, "clinical CSV"), reserved, clinical_csv)
    if "patient_id" not in clin.columns:
        raise CohortError(
            f"clinical CSV has no 'patient_id' column (columns: {list(clin.columns)}); add one to join on",
            path=clinical_csv,
        )
    clin["patient_id"] = clin["patient_id"].map(_cell)
    dup = clin["patient_id"][clin["patient_id"].duplicated(keep=False) & clin["patient_id"].notna()]
    if len(dup):
        raise CohortError(
            f"clinical CSV lists patient(s) {sorted(set(dup))} more than once; keep one row per patient",
            path=clinical_csv,
        )
    clash = sorted((set(clin.columns) & set(frame.columns)) - {"patient_id"})
    if clash:
        raise CohortError(
            f"column(s) {clash} appear in both the manifest and the clinical CSV; keep them in one file",
            path=clinical_csv,
        )
    extra = set(clin["patient_id"].dropna()) - set(frame["patient_id"].map(_cell).dropna())
    if extra:
        log.warning("clinical CSV %s has %d patient(s) not in the manifest (ignored)", clinical_csv, len(extra))
    keyed = frame.assign(_pid=frame["patient_id"].map(_cell))
    merged = keyed.merge(clin.rename(columns={"patient_id": "_pid"}), on="_pid", how="left")
    return merged.drop(columns="_pid")


def load_cohort(
    manifest: str | Path,
    *,
    clinical_csv: str | Path | None = None,
    settings: CohortSettings | None = None,
    bad_ids: Literal["raise", "report"] = "raise",
) -> Cohort:
    """Read a manifest (and optional clinical CSV) into a :class:`Cohort`.

    Patient ids are read as written (``NA``, ``001`` stay ids) and must follow the identifier rule of
    :func:`rccgrade.safepath.check_identifier` (letters, digits, ``.``, ``_``, ``-``; starting with a letter or
    digit; at most 64 characters), so that no id can act as a path.

    Args:
        manifest: Manifest CSV (UTF-8); relative image paths are resolved against its folder.
        clinical_csv: Clinical CSV joined on ``patient_id`` (default: ``settings.clinical_csv``).
        settings: Phases, mask phase, clinical typing; defaults to :class:`CohortSettings`.
        bad_ids: ``"raise"`` (default: commands that process images) raises a CohortError listing every
            row whose id breaks the rule; ``"report"`` (validation) records a ``bad_patient_id`` problem for
            each such row in ``Cohort.issues`` and keeps the row.

    Returns:
        The cohort, one case per manifest row in manifest order (duplicates included), with
        per-row problems in ``Cohort.issues``.

    Raises:
        CohortError: manifest or clinical CSV missing/unparseable/not UTF-8, no rows, no ``patient_id``,
            a required phase column or the mask column absent, unknown clinical columns requested, or (with
            ``bad_ids="raise"``) a patient id that breaks the identifier rule.
    """
    settings = settings or CohortSettings()
    manifest = Path(manifest).expanduser().resolve()
    root = manifest.parent
    phases = list(dict.fromkeys(settings.phases))
    reserved = _reserved(phases)
    frame = _canonical_columns(_read_csv(manifest, "manifest"), reserved, manifest)

    if "patient_id" not in frame.columns:
        raise CohortError(
            f"manifest has no 'patient_id' column (columns: {list(frame.columns)}); the header must start "
            "with patient_id,arterial,nephrographic,excretory,mask,grade",
            path=manifest,
        )
    missing_cols = [p for p in phases if p not in frame.columns]
    if "mask" not in frame.columns:
        missing_cols.append("mask")
    if missing_cols:
        raise CohortError(
            f"manifest lacks image column(s) {missing_cols}; it needs one column per phase "
            f"({', '.join(phases)}) and a 'mask' column with paths relative to the manifest",
            path=manifest,
        )
    if settings.mask_phase not in frame.columns:
        raise CohortError(
            f"the mask phase '{settings.mask_phase}' has no column in the manifest; set cohort.mask_phase to one of "
            f"{phases}",
            path=manifest,
        )
    if frame.empty:
        raise CohortError("manifest has no rows; add one row per patient", path=manifest)

    clinical_csv = clinical_csv if clinical_csv is not None else settings.clinical_csv
    if clinical_csv is not None:
        frame = _join_clinical(frame, Path(clinical_csv).expanduser().resolve(), reserved)
    if settings.column_map:
        from rccgrade.cohort.column_map import apply_column_map

        reserved_mapped = sorted(set(settings.column_map) & reserved)
        if reserved_mapped:
            raise CohortError(
                f"cohort.column_map renames onto reserved column(s) {reserved_mapped}; map clinical variables only",
                path=manifest,
            )
        frame = apply_column_map(frame, settings.column_map, manifest)

    if settings.clinical_columns is not None:
        absent = [c for c in settings.clinical_columns if c not in frame.columns]
        if absent:
            raise CohortError(
                f"clinical column(s) {absent} requested in cohort.clinical_columns are not in the manifest or "
                "clinical CSV; fix the names or remove them",
                path=manifest,
            )
        clinical_cols = list(settings.clinical_columns)
    else:
        clinical_cols = [c for c in frame.columns if c not in reserved]

    unknown = sorted(set(settings.clinical_types) - set(frame.columns))
    if unknown:
        log.warning("cohort.clinical_types names column(s) %s that are not in the manifest or clinical CSV", unknown)
    types: dict[str, ClinicalKind] = {}
    for col in clinical_cols:
        declared = settings.clinical_types.get(col)
        types[col] = declared or infer_clinical_type(frame[col], settings.numeric_parse_fraction)

    image_cols = [p for p in (*phases, *[q for q in PHASES if q not in phases]) if p in frame.columns]
    issues: list[Problem] = []
    cases: list[Case] = []
    bad: list[str] = []
    ids = frame["patient_id"].map(_cell)
    duplicated = ids.duplicated(keep=False) & ids.notna()

    for i, rec in enumerate(frame.to_dict(orient="records")):
        line = i + 2
        pid = _cell(rec.get("patient_id"))

        patient = pid if pid is not None else f"(line {line})"
        issue = _RowIssues(issues, patient, line)
        if pid is None:
            issue("patient_id_missing", f"manifest line {line} has no patient_id; fill it in or delete the row")
        elif (reason := check_identifier(pid)) is not None:
            bad.append(f"line {line}: {reason}")
            issue("bad_patient_id", f"manifest line {line}: {reason}")
        elif bool(duplicated.iloc[i]):
            others = [str(j + 2) for j in range(len(ids)) if ids.iloc[j] == pid and j != i]
            issue(
                "duplicate_patient_id",
                f"patient id '{pid}' appears on manifest lines {line} and {', '.join(others)}; "
                "give every patient a unique id or remove the duplicate row",
            )

        images: dict[str, Path] = {}
        for phase in image_cols:
            text = _cell(rec.get(phase))
            if text is None:
                if phase in phases:
                    issue(
                        "phase_missing",
                        f"no {phase} image given; fill in the '{phase}' column with the image file or DICOM folder",
                    )
                continue
            path, escapes = _resolve(root, text)
            images[phase] = path
            if escapes:
                issue(
                    "path_escapes_root",
                    f"{phase} path '{text}' leads outside the manifest's folder {root}; allowed, but the cohort "
                    "is no longer self-contained (move the files under the manifest's folder to share it)",
                    severity="warning",
                    file=str(path),
                )

        mask_text = _cell(rec.get("mask"))
        mask = NO_PATH
        if mask_text is None:
            issue("mask_missing", "no mask given; fill in the 'mask' column with the tumour mask file")
        else:
            mask, escapes = _resolve(root, mask_text)
            if escapes:
                issue(
                    "path_escapes_root",
                    f"mask path '{mask_text}' leads outside the manifest's folder {root}; allowed, but the cohort "
                    "is no longer self-contained (move the files under the manifest's folder to share it)",
                    severity="warning",
                    file=str(mask),
                )

        series_uids = {}
        for key in (*image_cols, "mask"):
            uid = _cell(rec.get(f"{key}_series_uid"))
            if uid is not None:
                series_uids[key] = uid

        grade, high_grade = _parse_labels(rec, issue, settings.require_labels)

        split = _cell(rec.get("split"))
        if split is not None:
            split = split.lower()
            if split not in SPLITS:
                issue("split_invalid", f"split '{split}' is not 'train' or 'test'; fix it or leave it empty")
                split = None

        label = settings.label
        label_text = _cell(rec.get("label"))
        if label_text is not None:
            value = parse_number(label_text)
            if value is None or value != int(value) or value <= 0:
                issue(
                    "label_invalid",
                    f"label '{label_text}' is not a positive integer; give the tumour's label value in the mask",
                )
            else:
                label = int(value)

        clinical: dict[str, float | str | None] = {}
        for col in clinical_cols:
            text = _cell(rec.get(col))
            if types[col] == "numeric":
                value = parse_number(text)
                if text is not None and value is None:
                    issue(
                        "clinical_wrong_type",
                        f"clinical column '{col}' is numeric but holds '{text}'; correct the value, leave the cell "
                        f"empty if unknown, or declare '{col}' categorical in cohort.clinical_types",
                    )
                clinical[col] = value
            else:
                clinical[col] = text

        cases.append(
            Case(
                patient_id=patient,
                images=images,
                mask=mask,
                mask_phase=settings.mask_phase,
                grade=grade,
                high_grade=high_grade,
                split=split,
                center=_cell(rec.get("center")),
                clinical=clinical,
                label=label,
                mask_segment=_cell(rec.get("mask_segment")) or settings.mask_segment,
                series_uids=series_uids,
                row=line,
            )
        )

    if bad and bad_ids == "raise":
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CohortError(
            f"{len(bad)} patient id(s) break the id rule and cannot be processed: {shown}. "
            "Run 'rccgrade validate' for the full list",
            path=manifest,
        )
    if settings.require_labels and "grade" not in frame.columns and "high_grade" not in frame.columns:
        log.warning("manifest %s has neither a 'grade' nor a 'high_grade' column", manifest)
    cohort = Cohort(cases=cases, root=root, manifest=manifest, clinical_types=types, issues=issues)
    if clinical_cols:
        missing = cohort.clinical_missing()
        log.info(
            "clinical columns: %s",
            ", ".join(f"{c} ({types[c]}, {int(missing.get(c, 0))} missing)" for c in clinical_cols),
        )
    return cohort


class _RowIssues:
    """Collects the problems of one manifest row: ``issue(code, message, severity, file)``."""

    def __init__(self, sink: list[Problem], patient_id: str, line: int) -> None:
        self.sink = sink
        self.patient_id = patient_id
        self.line = line

    def __call__(self, code: str, message: str, severity: Severity = "error", file: str = "") -> None:
        self.sink.append(Problem(self.patient_id, code, severity, message, file, self.line))


def _parse_labels(rec: dict[str, object], report: _RowIssues, require: bool) -> tuple[int | None, int | None]:
    """Grade (1–4) and high_grade (0/1) of one row; problems go to ``report``."""
    grade: int | None = None
    high_grade: int | None = None
    grade_text = _cell(rec.get("grade"))
    if grade_text is not None:
        value = parse_number(grade_text)
        if value is None or value != int(value) or not 1 <= value <= 4:
            report(
                "grade_out_of_range",
                f"grade '{grade_text}' is not a WHO/ISUP grade 1, 2, 3 or 4; correct it (or leave it empty and "
                "give high_grade 0/1)",
            )
        else:
            grade = int(value)
            high_grade = int(grade >= 3)
    hg_text = _cell(rec.get("high_grade"))
    if hg_text is not None:
        lowered = hg_text.lower()
        value = {"true": 1.0, "false": 0.0}.get(lowered, parse_number(hg_text))
        if value not in (0.0, 1.0):
            report(
                "grade_out_of_range",
                f"high_grade '{hg_text}' is not 0 (ISUP 1–2) or 1 (ISUP 3–4); correct it",
            )
        elif grade is not None and int(value) != high_grade:
            report(
                "label_conflict",
                f"grade {grade} implies high_grade {high_grade} but the high_grade column says {int(value)}; "
                "correct one of them",
            )
        else:
            high_grade = int(value)
    if grade_text is None and hg_text is None:
        report(
            "grade_missing",
            "no grade and no high_grade; give the WHO/ISUP grade (1–4) or high_grade (0/1), or remove the patient",
            severity="error" if require else "warning",
        )
    return grade, high_grade
