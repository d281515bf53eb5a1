"""One naming scheme for feature columns, feature sources and model arms: parse, label and folder.

Feature columns (the FeatureTable contract, :mod:`rccgrade.features.table`)::

    clin:<variable>            a clinical variable                 source "clinical"
    rad:<phase>:<feature>      a PyRadiomics feature of a phase    source "radiomics"
    rad:<phase>@ring<N>mm:<f>  the same in a peritumoural ring     source "radiomics"
    kin:<feature>              a kinetic (between-phase) feature   source "kinetic"
    deep:<roi>:fNNNN           pooled deep feature NNNN of an ROI  source "deep:<roi>"

A **source** is a group of columns one per-source selection chain works on (``clinical``, ``radiomics``,
``deep:<roi>``); ``deep:*`` in a configuration stands for every ``deep:<roi>`` present. A **kind** is the
source without its ROI (``clinical``, ``radiomics``, ``deep``). An **arm** is a fitted model: a single source
(``clinical``, ``radiomics``, ``deep:<roi>``), ``combined`` (feature-level fusion of several sources) or
``stacked`` (late fusion of the other arms).

Every place that builds or parses one of these names goes through this module, so the prefix ``rad`` and the
source ``radiomics`` are never confused again. The folder of an arm (``deep:box`` → ``deep-box``) goes through
:func:`rccgrade.safepath.safe_filename`, so an arm name from a file can never leave its folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rccgrade.errors import ConfigError
from rccgrade.safepath import ID_PATTERN, safe_filename

CLINICAL = "clinical"
RADIOMICS = "radiomics"
KINETIC = "kinetic"
DEEP = "deep"
COMBINED = "combined"
STACKED = "stacked"
DEEP_ALL = "deep:*"

#: Column prefix (before the first ``:``) of each source kind.
PREFIX_OF_KIND: dict[str, str] = {CLINICAL: "clin", RADIOMICS: "rad", KINETIC: "kin", DEEP: "deep"}
#: Source kind of each column prefix.
KIND_OF_PREFIX: dict[str, str] = {v: k for k, v in PREFIX_OF_KIND.items()}
#: Single-source arms without an ROI → their column prefix.
SINGLE_SOURCES: dict[str, str] = {CLINICAL: "clin:", RADIOMICS: "rad:", KINETIC: "kin:"}
#: Arms that fuse other arms or sources.
FUSION_ARMS: tuple[str, ...] = (COMBINED, STACKED)

__all__ = [
    "CLINICAL",
    "COMBINED",
    "DEEP",
    "DEEP_ALL",
    "FUSION_ARMS",
    "KIND_OF_PREFIX",
    "KINETIC",
    "PREFIX_OF_KIND",
    "RADIOMICS",
    "SINGLE_SOURCES",
    "STACKED",
    "arm_folder",
    "arm_label",
    "arm_roi",
    "arm_sources_kinds",
    "check_arm",
    "clinical_column",
    "column_kind",
    "column_name",
    "column_source",
    "deep_arm",
    "deep_column",
    "deep_feature_index",
    "deep_rois",
    "expand_sources",
    "is_deep",
    "kinds_of_columns",
    "kinetic_column",
    "radiomics_column",
    "radiomics_feature_class",
    "source_prefix",
]


# --------------------------------------------------------------------------- columns


def clinical_column(variable: str) -> str:
    """``age`` → ``clin:age``."""
    return f"clin:{variable}"


def radiomics_column(phase: str, feature: str, ring_mm: float | None = None) -> str:
    """``arterial``, ``original_firstorder_Mean`` → ``rad:arterial:original_firstorder_Mean``.

    With ``ring_mm`` (a peritumoural ring from the tumour border out to that many mm) the region joins the
    phase: ``rad:arterial@ring5mm:original_firstorder_Mean`` (``2.5`` → ``ring2.5mm``).
    """
    if ring_mm is None:
        return f"rad:{phase}:{feature}"
    return f"rad:{phase}@ring{float(ring_mm):g}mm:{feature}"


def kinetic_column(feature: str) -> str:
    """``tumour_washout_mean`` → ``kin:tumour_washout_mean``."""
    return f"kin:{feature}"


def deep_column(roi: str, index: int) -> str:
    """``box``, 7 → ``deep:box:f0007``."""
    return f"deep:{roi}:f{index:04d}"


def column_kind(column: str) -> str:
    """Source kind of a column (``clinical``, ``radiomics``, ``kinetic`` or ``deep``).

    Raises:
        ConfigError: not a FeatureTable column name.
    """
    prefix, sep, _ = str(column).partition(":")
    if not sep or prefix not in KIND_OF_PREFIX:
        raise ConfigError(
            f"{column!r} is not a feature column ('clin:…', 'rad:<phase>:…', 'kin:…' or 'deep:<roi>:fNNNN')"
        )
    return KIND_OF_PREFIX[prefix]


def column_source(column: str) -> str:
    """Source of a column: ``clinical``, ``radiomics``, ``kinetic`` or ``deep:<roi>``."""
    kind = column_kind(column)
    if kind == DEEP:
        parts = column.split(":")
        if len(parts) < 3 or not parts[1]:
            raise ConfigError(f"{column!r} is not a deep feature column ('deep:<roi>:fNNNN')")
        return deep_arm(parts[1])
    return kind


def column_name(column: str) -> str:
    """The part after the source: ``clin:age`` → ``age``, ``rad:arterial:x`` → ``x``, ``deep:box:f0001`` → ``f0001``."""
    kind = column_kind(column)
    return column.split(":", 1 if kind == CLINICAL else 2)[-1]


def kinds_of_columns(columns: Iterable[str]) -> set[str]:
    """Source kinds present among columns."""
    return {column_kind(c) for c in columns}


def deep_feature_index(column: str, roi: str) -> int | None:
    """Feature number of a raw pooled column of ``roi`` (``deep:box:f0012`` → 12); None for any other column."""
    head = f"deep:{roi}:f"
    tail = str(column)[len(head) :]
    if not str(column).startswith(head) or not tail.isdigit():
        return None
    return int(tail)


def deep_rois(columns: Sequence[str]) -> list[str]:
    """ROI names present among ``deep:<roi>:<feature>`` columns, sorted."""
    return sorted({c.split(":")[1] for c in columns if c.startswith("deep:") and c.count(":") >= 2})


def radiomics_feature_class(column: str) -> str:
    """``rad:arterial:original_glcm_Contrast`` → ``original glcm`` (image type and feature class)."""
    name = str(column).split(":")[-1]
    parts = name.split("_")
    return f"{parts[0]} {parts[1]}" if len(parts) >= 3 else name


# --------------------------------------------------------------------------- sources and arms


def deep_arm(roi: str) -> str:
    """``box`` → ``deep:box`` (the arm and source of one ROI's deep features)."""
    return f"deep:{roi}"


def is_deep(name: str) -> bool:
    """Whether an arm or source name is a deep one (``deep:<roi>`` or ``deep:*``)."""
    return str(name).startswith("deep:")


def arm_roi(arm: str) -> str | None:
    """ROI of a deep arm (``deep:box`` → ``box``), None for any other arm."""
    return arm.split(":", 1)[1] if is_deep(arm) else None


def expand_sources(names: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Replace ``deep:*`` by one ``deep:<roi>`` per ROI in ``columns`` (order kept, duplicates removed)."""
    out: list[str] = []
    for name in names:
        items = [deep_arm(roi) for roi in deep_rois(columns)] if name == DEEP_ALL else [name]
        out.extend(i for i in items if i not in out)
    return out


def source_prefix(source: str) -> str:
    """Column prefix of a source (``clinical`` → ``clin:``, ``deep:box`` → ``deep:box:``).

    Raises:
        ConfigError: not a known source.
    """
    if source in SINGLE_SOURCES:
        return SINGLE_SOURCES[source]
    if source.startswith("deep:") and source.count(":") == 1 and len(source) > 5:
        return source + ":"
    raise ConfigError(
        f"unknown feature source {source!r}; use 'clinical', 'radiomics', 'kinetic', 'deep:<roi>' or 'deep:*' "
        "(models.arms / models.combined_sources)"
    )


def check_arm(arm: str, *, allow_wildcard: bool = True, fusion: bool = True) -> None:
    """Raise a :class:`ConfigError` unless ``arm`` is a well-formed arm (or source) name.

    Args:
        arm: The name to check.
        allow_wildcard: Accept ``deep:*``.
        fusion: Accept ``combined`` and ``stacked``.
    """
    if arm in SINGLE_SOURCES or (fusion and arm in FUSION_ARMS) or (allow_wildcard and arm == DEEP_ALL):
        return
    roi = arm_roi(arm) if isinstance(arm, str) else None
    if roi is not None and ID_PATTERN.fullmatch(roi):
        return
    allowed = "'clinical', 'radiomics', 'kinetic', 'deep:<roi>'" + (", 'deep:*'" if allow_wildcard else "")
    allowed += ", 'combined', 'stacked'" if fusion else ""
    raise ConfigError(f"unknown arm {arm!r}; use {allowed} (an ROI name holds letters, digits, '.', '_', '-')")


def arm_sources_kinds(arm: str, combined_sources: Sequence[str]) -> set[str]:
    """Source kinds an arm needs (``combined`` → the kinds of ``combined_sources``; ``stacked`` → none itself)."""
    if arm == STACKED:
        return set()
    names = combined_sources if arm == COMBINED else [arm]
    return {DEEP if is_deep(n) else n for n in names}


def arm_label(arm: str) -> str:
    """Readable arm name for legends and tables: ``deep:dilated5mm`` → ``Deep (dilated 5 mm)``."""
    roi = arm_roi(arm)
    if roi is not None:
        if roi.startswith("dilated") and roi.endswith("mm"):
            roi = f"dilated {roi[len('dilated') : -2]} mm"
        return f"Deep ({roi})"
    return arm[:1].upper() + arm[1:]


def arm_folder(arm: str) -> str:
    """Folder (or file stem) of an arm: ``deep:box`` → ``deep-box``, always one safe path component."""
    return safe_filename(arm.replace(":", "-").replace("/", "-"))
