"""Which contrast phase a CT series shows, from the evidence in its DICOM header.

Functional core of ``rccgrade index`` (see :mod:`rccgrade.cohort.dicom_index`): no file access,
every function takes header values and returns evidence, so each rule is testable on its own.

Evidence sources, each giving at most one phase:

* ``keyword``: SeriesDescription / ProtocolName words in English, German, French, Italian,
  Spanish and the usual abbreviations (``ART``, ``PV``, ``NG``, ``DEL`` …), matched on
  accent-free, lower-cased tokens (``venös`` → ``venos``). A description naming two phases gives
  no keyword evidence (and says so).
* ``delay``: seconds after the start of the contrast bolus, from AcquisitionTime −
  ContrastBolusStartTime, or a delay written in the description (``70s``, ``5 min``).
* ``order``: rank of the acquisition among the contrast-enhanced acquisitions of the study by
  AcquisitionTime (only when the study holds exactly three of them).

:func:`decide_phase` combines them: one phase agreed by two or more sources is ``high``
confidence, one source is ``medium`` (``low`` when that source is the order alone); sources that
disagree give ``conflict`` and the phase of the most specific source (keyword > delay > order),
never silently: the case is flagged for review.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

CONTRAST_PHASES: tuple[str, ...] = ("arterial", "nephrographic", "excretory")
"""Phases of a triple-phase renal CT, in acquisition order."""

NATIVE = "native"
"""Non-contrast series: recorded but never put in a phase column."""

# Whole-token abbreviations (matched exactly) and word stems (matched as token prefixes).
_EXACT: dict[str, frozenset[str]] = {
    NATIVE: frozenset({"nc", "nect", "pre", "nativ", "native", "plain", "blanco", "ncct"}),
    "arterial": frozenset({"art", "cm", "cmp", "ap", "hap", "early", "fruh", "frueh", "angio", "cta"}),
    "nephrographic": frozenset({"pv", "pvp", "vp", "ven", "np", "ng", "nep", "neph", "portal", "venous"}),
    "excretory": frozenset({"ep", "del", "exc", "late", "uro", "dp", "delayed", "exkr", "tardif", "tardive"}),
}
_STEMS: dict[str, tuple[str, ...]] = {
    NATIVE: ("unenhanc", "noncontrast", "precontrast", "nativphase", "leer"),
    "arterial": ("arteri", "corticomedul", "kortikomedul", "corticomedol", "cortical", "kortikal"),
    "nephrographic": (
        "nephrogra",
        "nephrogen",
        "nefrogra",
        "venos",
        "venou",
        "veneu",
        "veine",
        "portoven",
        "portalven",
        "parenchym",
    ),
    "excretory": (
        "excret",
        "exkret",
        "escret",
        "ausscheid",
        "urogra",
        "delay",
        "spat",
        "spaet",
        "tardi",
        "ritard",
        "pyelo",
        "excrec",
    ),
}
_PHRASES: dict[str, tuple[str, ...]] = {
    NATIVE: (
        "non contrast",
        "without contrast",
        "ohne km",
        "ohne kontrast",
        "sans injection",
        "sans contraste",
        "senza mdc",
        "senza contrasto",
        "sin contraste",
        "w o contrast",
    ),
}
_DELAY_S = re.compile(r"(?<![\w.])(\d{1,3})\s*(?:s|sec|secs|sek|seconds|sekunden)\b")
_DELAY_MIN = re.compile(r"(?<![\w.])(\d{1,2}(?:\.\d)?)\s*(?:min|mins|minutes|minuten)\b")

# Sharp (bone/lung) kernels: Siemens B/Br/I/Hr 50–99, GE BONE/LUNG/EDGE/DETAIL, Philips YA–YD/ D/E,
# Toshiba/Canon FC5x/FC8x, and any kernel naming lung/bone/sharp.
_SHARP_KERNEL = re.compile(
    r"(lung|bone|sharp|edge|detail|^(b|br|i|hr|qr|bl|bv)[5-9]\d|^fc(5|8)\d|^y[a-d]$|^[de]$)",
    re.IGNORECASE,
)


def normalise_text(text: str) -> str:
    """Lower-case, accent-free text with every non-alphanumeric run turned into one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("ß", "ss")
    return " ".join(re.split(r"[^0-9a-z]+", plain.lower())).strip()


def keyword_phases(*texts: str) -> dict[str, list[str]]:
    """Phase → the words that named it, over every text (SeriesDescription, ProtocolName …).

    ``late arterial`` / ``early arterial`` count as arterial only.
    """
    hits: dict[str, list[str]] = {}
    for text in texts:
        norm = normalise_text(text or "")
        if not norm:
            continue
        tokens = norm.split()
        for phase, phrases in _PHRASES.items():
            for phrase in phrases:
                if re.search(rf"(?<![0-9a-z]){re.escape(phrase)}(?![0-9a-z])", norm):
                    hits.setdefault(phase, []).append(phrase)
        for tok in tokens:
            for phase in (NATIVE, *CONTRAST_PHASES):
                if tok in _EXACT[phase] or any(tok.startswith(stem) for stem in _STEMS[phase]):
                    hits.setdefault(phase, []).append(tok)
    if "arterial" in hits and set(hits.get("excretory", [])) <= {"late"}:
        hits.pop("excretory", None)  # "late arterial"
    if "arterial" in hits and NATIVE in hits and set(hits[NATIVE]) <= {"pre"}:
        hits.pop(NATIVE, None)  # "pre-arterial" bolus tracking names
    return {phase: sorted(set(words)) for phase, words in hits.items()}


def description_delay(*texts: str) -> float | None:
    """Delay after contrast (seconds) written in a description (``70s``, ``5 min``), else None."""
    for text in texts:
        norm = (text or "").lower()
        m = _DELAY_S.search(norm)
        if m:
            return float(m.group(1))
        m = _DELAY_MIN.search(norm)
        if m:
            return float(m.group(1)) * 60.0
    return None


def phase_from_delay(seconds: float) -> str | None:
    """Phase of a delay after bolus start: < 50 s arterial, 60–150 s nephrographic, ≥ 180 s excretory.

    Delays in the gaps (50–60 s, 150–180 s) are ambiguous and give None.
    """
    if seconds < 0:
        return None
    if seconds < 50:
        return "arterial"
    if 60 <= seconds <= 150:
        return "nephrographic"
    if seconds >= 180:
        return "excretory"
    return None


def is_sharp_kernel(kernel: str) -> bool:
    """True for bone/lung (sharp) reconstruction kernels, False for soft-tissue or unknown ones."""
    return any(_SHARP_KERNEL.search(part.strip()) for part in re.split(r"[\\/,]", kernel or "") if part.strip())


def dicom_time_seconds(value: object) -> float | None:
    """Seconds since midnight of a DICOM TM value (``HHMMSS.FFFFFF``, ``HH:MM:SS``), else None."""
    text = str(value or "").strip().replace(":", "")
    if not text:
        return None
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if not m:
        return None
    hours, minutes, secs = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    if hours > 23 or minutes > 59 or secs > 60:
        return None
    return hours * 3600 + minutes * 60 + secs + float(m.group(4) or 0.0)


@dataclass(frozen=True)
class PhaseEvidence:
    """What one series' header says about its phase.

    Attributes:
        keyword: Phase named by the description/protocol words (None when none or several).
        keyword_words: The words behind each phase found (phase → words), for the review text.
        delay: Phase from the delay after bolus start (None when unknown or ambiguous).
        delay_seconds: That delay in seconds (None when unknown).
        delay_source: ``bolus`` (AcquisitionTime − ContrastBolusStartTime) or ``description``.
        order: Phase from the acquisition's rank among the study's contrast acquisitions.
        order_text: ``"2nd of 3 contrast acquisitions"`` or why no order evidence exists.
        contrast_agent: ContrastBolusAgent, "" when absent.
    """

    keyword: str | None
    keyword_words: dict[str, list[str]]
    delay: str | None
    delay_seconds: float | None
    delay_source: str
    order: str | None
    order_text: str
    contrast_agent: str


@dataclass(frozen=True)
class PhaseDecision:
    """The phase given to a series and why.

    Attributes:
        phase: ``arterial`` / ``nephrographic`` / ``excretory`` / ``native``, or None when the
            evidence names no phase or several equally.
        confidence: ``high`` (≥ 2 sources agree), ``medium`` (one keyword or delay source),
            ``low`` (acquisition order only), ``conflict`` (sources disagree) or ``none``.
        evidence: Human-readable account of every source, for the ``phase_evidence`` column.
    """

    phase: str | None
    confidence: str
    evidence: str


def keyword_evidence(description: str, protocol: str) -> tuple[str | None, dict[str, list[str]]]:
    """Keyword phase (None when no phase or several are named) and the words per phase."""
    words = keyword_phases(description, protocol)
    return (next(iter(words)) if len(words) == 1 else None), words


def delay_evidence(
    acquisition_time: float | None, bolus_start: float | None, description: str, protocol: str
) -> tuple[str | None, float | None, str]:
    """Delay phase, delay seconds and source (``bolus``/``description``/"")."""
    if acquisition_time is not None and bolus_start is not None:
        delay = acquisition_time - bolus_start
        if delay < -12 * 3600:  # acquisition after midnight, bolus before
            delay += 24 * 3600
        return phase_from_delay(delay), delay, "bolus"
    text_delay = description_delay(description, protocol)
    if text_delay is not None:
        return phase_from_delay(text_delay), text_delay, "description"
    return None, None, ""


def order_evidence(rank: int | None, n_acquisitions: int) -> tuple[str | None, str]:
    """Order phase for the ``rank``-th (0-based) of ``n_acquisitions`` contrast acquisitions."""
    if rank is None:
        return None, "no acquisition time"
    ordinal = {0: "1st", 1: "2nd", 2: "3rd"}.get(rank, f"{rank + 1}th")
    text = f"{ordinal} of {n_acquisitions} contrast acquisitions"
    if n_acquisitions == len(CONTRAST_PHASES):
        return CONTRAST_PHASES[rank], text
    return None, text + " (order used only with exactly 3)"


def decide_phase(ev: PhaseEvidence) -> PhaseDecision:
    """Combine the evidence of one series into a phase, a confidence and a review text."""
    parts: list[str] = []
    if ev.keyword_words:
        named = "; ".join(f"{p} ({', '.join(w)})" for p, w in ev.keyword_words.items())
        parts.append(f"keywords: {named}" + ("" if ev.keyword or not ev.keyword_words else " - several phases named"))
    else:
        parts.append("keywords: none")
    if ev.delay_seconds is not None:
        parts.append(f"delay {ev.delay_seconds:.0f} s ({ev.delay_source}) -> {ev.delay or 'ambiguous'}")
    parts.append(f"order: {ev.order_text}" + (f" -> {ev.order}" if ev.order else ""))
    if ev.contrast_agent:
        parts.append(f"contrast agent: {ev.contrast_agent}")
    evidence = "; ".join(parts)

    if ev.keyword == NATIVE:
        return PhaseDecision(NATIVE, "medium", evidence)
    sources = [(name, phase) for name, phase in (("keyword", ev.keyword), ("delay", ev.delay), ("order", ev.order))]
    named = [(name, phase) for name, phase in sources if phase is not None]
    phases = {phase for _, phase in named}
    if not named:
        return PhaseDecision(None, "none", evidence)
    if len(phases) == 1:
        phase = named[0][1]
        if len(named) >= 2:
            return PhaseDecision(phase, "high", evidence)
        return PhaseDecision(phase, "low" if named[0][0] == "order" else "medium", evidence)
    return PhaseDecision(named[0][1], "conflict", evidence + f" - sources disagree ({', '.join(sorted(phases))})")


def ordered_ranks(times: Iterable[float | None]) -> list[int | None]:
    """0-based rank of each distinct time (equal times share a rank); None stays None."""
    values = list(times)
    distinct = sorted({t for t in values if t is not None})
    return [None if t is None else distinct.index(t) for t in values]
