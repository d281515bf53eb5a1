"""Table 1: clinical characteristics of the patients by grade, with tests and missing counts.

A paper's first table compares the low-grade (ISUP 1–2) and high-grade (ISUP 3–4) patients of each cohort.
Numeric variables are summarised as mean ± SD (when tested with Welch's t-test) or median [IQR] (when
tested with the Mann–Whitney U test); categorical variables as n (%) per level, tested with the χ² test
or, when an expected count is small, Fisher's exact test. Missing values are counted, never imputed, and
percentages are of the patients with a known value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from rccgrade.errors import StatsError
from rccgrade.report.settings import ReportSettings

TABLE1_COLUMNS: tuple[str, ...] = ("variable", "level", "low", "high", "p_value", "test", "missing")
"""Columns of :func:`table_one` (``low``/``high`` hold formatted summaries)."""


@dataclass(frozen=True)
class TestResult:
    """A two-group comparison: the test's name, its p-value and how the groups are summarised."""

    test: str
    p_value: float
    summary: str  # "mean ± SD" or "median [IQR]" or "n (%)"


def format_p(p: float) -> str:
    """A p-value as papers print it: ``<0.001``, else three decimals (``—`` when not computable)."""
    if p is None or not math.isfinite(p):
        return "—"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def compare_numeric(
    low: np.ndarray, high: np.ndarray, method: str = "auto", normality_alpha: float = 0.05
) -> TestResult:
    """Compare a numeric variable between two groups (missing values already removed).

    Args:
        low: Values of the low-grade group.
        high: Values of the high-grade group.
        method: ``auto`` (Welch's t-test if both groups look normal by Shapiro–Wilk at ``normality_alpha``,
            else Mann–Whitney U), ``ttest`` or ``mannwhitney``.
        normality_alpha: Level of the Shapiro–Wilk test used by ``auto``.

    Returns:
        The test used, its two-sided p-value (NaN when a group has fewer than 2 values) and the summary.
    """
    low = np.asarray(low, dtype=float)
    high = np.asarray(high, dtype=float)
    if method == "auto":
        normal = all(len(g) >= 3 and np.ptp(g) > 0 and stats.shapiro(g).pvalue > normality_alpha for g in (low, high))
        method = "ttest" if normal else "mannwhitney"
    if method == "ttest":
        p = float(stats.ttest_ind(low, high, equal_var=False).pvalue) if min(len(low), len(high)) >= 2 else math.nan
        return TestResult("Welch t-test", p, "mean ± SD")
    if method == "mannwhitney":
        p = (
            float(stats.mannwhitneyu(low, high, alternative="two-sided").pvalue)
            if min(len(low), len(high)) >= 1 and np.ptp(np.concatenate([low, high])) > 0
            else math.nan
        )
        return TestResult("Mann–Whitney U", p, "median [IQR]")
    raise StatsError(f"unknown numeric test {method!r}; use auto, ttest or mannwhitney")


def compare_categorical(counts: np.ndarray, fisher_below: float = 5.0) -> TestResult:
    """Test independence of a levels × 2 (low, high) contingency table.

    Fisher's exact test is used when any expected count is below ``fisher_below`` (exact for 2 × 2 and,
    through SciPy, for larger tables), else Pearson's χ² test (with Yates' continuity correction for
    2 × 2 tables, as R's ``chisq.test`` does).
    """
    counts = np.asarray(counts, dtype=np.int64)
    counts = counts[counts.sum(axis=1) > 0]
    if counts.shape[0] < 2 or (counts.sum(axis=0) == 0).any():
        return TestResult("—", math.nan, "n (%)")
    expected = stats.contingency.expected_freq(counts)
    if (expected < fisher_below).any():
        try:
            return TestResult("Fisher exact", float(stats.fisher_exact(counts).pvalue), "n (%)")
        except (ValueError, MemoryError):  # table too large to enumerate: fall back to χ²
            pass
    chi2 = stats.chi2_contingency(counts, correction=True)
    return TestResult("χ² test", float(chi2.pvalue), "n (%)")


def _numeric_summary(values: np.ndarray, summary: str) -> str:
    if len(values) == 0:
        return "—"
    if summary == "mean ± SD":
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return f"{np.mean(values):.1f} ± {sd:.1f}"
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"{med:.1f} [{q1:.1f}–{q3:.1f}]"


def _kind(col: pd.Series, given: str | None) -> str:
    """numeric / categorical; a numeric 0/1 column (e.g. symptoms) is shown as a categorical n (%)."""
    numeric = pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype)
    if (given in (None, "numeric")) and numeric:
        values = set(pd.to_numeric(col, errors="coerce").dropna().unique().tolist())
        if values and values <= {0.0, 1.0}:
            return "categorical"
    if given is not None:
        return given
    return "numeric" if numeric else "categorical"


def numeric_methods(
    frame: pd.DataFrame, y: pd.Series, kinds: Mapping[str, str] | None = None, settings: ReportSettings | None = None
) -> dict[str, str]:
    """The test (``ttest``/``mannwhitney``) of each numeric variable, decided once on all labelled patients.

    A paper's Table 1 summarises a variable the same way in every cohort column, so the choice of
    ``auto`` (Shapiro–Wilk in both grade groups) is made on the whole cohort, not per column.
    """
    settings = settings or ReportSettings()
    kinds = dict(kinds or {})
    y = pd.Series(y).dropna().astype(int)
    frame = frame.reindex(y.index)
    out = {}
    for name in frame.columns:
        if _kind(frame[name], kinds.get(name)) != "numeric":
            continue
        if settings.numeric_test != "auto":
            out[name] = settings.numeric_test
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        lo = values[y == 0].dropna().to_numpy(float)
        hi = values[y == 1].dropna().to_numpy(float)
        out[name] = (
            "ttest"
            if compare_numeric(lo, hi, "auto", settings.normality_alpha).test.startswith("Welch")
            else "mannwhitney"
        )
    return out


def table_one(
    frame: pd.DataFrame,
    y: pd.Series,
    kinds: Mapping[str, str] | None = None,
    settings: ReportSettings | None = None,
    methods: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Clinical characteristics by grade for one cohort.

    Args:
        frame: Clinical variables indexed by ``patient_id`` (raw names, no ``clin:`` prefix).
        y: ``high_grade`` (0/1) indexed by ``patient_id``; patients with an unknown label are left out.
        kinds: Column → ``numeric``/``categorical``; others are inferred from the dtype.
        settings: Test choices (defaults: :class:`ReportSettings`).
        methods: Numeric variable → ``ttest``/``mannwhitney``, overriding ``settings.numeric_test`` (see
            :func:`numeric_methods`).

    Returns:
        One row per numeric variable and per level of a categorical variable (after a header row for the
        variable), columns :data:`TABLE1_COLUMNS`. The first row gives the patient counts.
    """
    settings = settings or ReportSettings()
    kinds = dict(kinds or {})
    y = pd.Series(y).dropna().astype(int)
    frame = frame.reindex(y.index)
    low_ids = y.index[y == 0]
    high_ids = y.index[y == 1]
    rows: list[dict[str, object]] = [
        {
            "variable": "Patients",
            "level": "",
            "low": str(len(low_ids)),
            "high": str(len(high_ids)),
            "p_value": math.nan,
            "test": "",
            "missing": 0,
        }
    ]
    for name in frame.columns:
        col = frame[name]
        kind = _kind(col, kinds.get(name))
        missing = int(col.isna().sum())
        if kind == "numeric":
            values = pd.to_numeric(col, errors="coerce")
            lo = values.loc[low_ids].dropna().to_numpy(float)
            hi = values.loc[high_ids].dropna().to_numpy(float)
            method = (methods or {}).get(name, settings.numeric_test)
            res = compare_numeric(lo, hi, method, settings.normality_alpha)
            rows.append(
                {
                    "variable": f"{name}, {res.summary}",
                    "level": "",
                    "low": _numeric_summary(lo, res.summary),
                    "high": _numeric_summary(hi, res.summary),
                    "p_value": res.p_value,
                    "test": res.test,
                    "missing": missing,
                }
            )
            continue
        values = col.astype("object").where(col.notna(), None)
        if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            values = values.map(lambda v: None if v is None else (f"{v:g}" if isinstance(v, float) else str(v)))
        levels = sorted({str(v) for v in values.dropna()}, key=_natural_key)
        lo_vals = values.loc[low_ids].dropna().astype(str)
        hi_vals = values.loc[high_ids].dropna().astype(str)
        counts = np.array([[int((lo_vals == lv).sum()), int((hi_vals == lv).sum())] for lv in levels]).reshape(-1, 2)
        res = compare_categorical(counts, settings.fisher_below)
        rows.append(
            {
                "variable": f"{name}, n (%)",
                "level": "",
                "low": "",
                "high": "",
                "p_value": res.p_value,
                "test": res.test,
                "missing": missing,
            }
        )
        n_lo, n_hi = max(len(lo_vals), 1), max(len(hi_vals), 1)
        for lv, (c_lo, c_hi) in zip(levels, counts, strict=True):
            rows.append(
                {
                    "variable": "",
                    "level": lv,
                    "low": f"{c_lo} ({100 * c_lo / n_lo:.1f})",
                    "high": f"{c_hi} ({100 * c_hi / n_hi:.1f})",
                    "p_value": math.nan,
                    "test": "",
                    "missing": 0,
                }
            )
    return pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))


def _natural_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
