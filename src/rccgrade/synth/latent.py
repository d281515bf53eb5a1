"""The patient-level ground truth: latent factors, clinical variables, p_high, grade, centre, misalignment.

Everything here is drawn from the first child of ``SeedSequence([seed, patient_index])`` and costs
microseconds, so tests and power calculations can draw thousands of patients without rendering an
image (:func:`sample_truth`). The image renderer reads the same :class:`PatientDraw`, so the images
and the truth table always agree.

Generative model (also stated in ``docs/synthetic_cohort.md``):

1. Eight latent factors ``z`` (standard normal, correlated through :data:`FACTOR_CORRELATION`), each
   a signal source of grade: ``size``, ``margin`` (irregularity), ``heterogeneity`` (multi-scale
   texture), ``necrosis``, ``enhancement`` (arterial *hypo*-enhancement: higher = less enhancing),
   ``washout``, ``peritumoural`` (fat stranding / infiltrative margin within ~5 mm) and ``systemic``
   (inflammation / paraneoplastic state, seen only through the clinical variables).
2. ``logit p_high = INTERCEPT + Σ_k COEFFICIENTS[k] z_k + AGE_COEF (age - 62)/10 + MALE_COEF male``.
3. ``high_grade ~ Bernoulli(p_high)``; ISUP grade 3 or 4 when high (4 more likely as p_high rises),
   1 or 2 when low (1 more likely as p_high falls).
4. Clinical variables from demographics, body habitus and ``systemic``/``size``; ~5% missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LATENT_FACTORS: tuple[str, ...] = (
    "size",
    "margin",
    "heterogeneity",
    "necrosis",
    "enhancement",
    "washout",
    "peritumoural",
    "systemic",
)
"""Names of the latent grade factors (standard normal z-scores; higher = more aggressive)."""

COEFFICIENTS: dict[str, float] = {
    "size": 0.80,
    "margin": 0.62,
    "heterogeneity": 0.62,
    "necrosis": 0.58,
    "enhancement": 0.62,
    "washout": 0.62,
    "peritumoural": 0.66,
    "systemic": 0.60,
}
"""Log-odds of high grade per standard deviation of each latent factor."""

INTERCEPT: float = -1.26
"""Intercept of the logistic model (gives a prevalence of about 35%)."""

AGE_COEF: float = 0.15
"""Log-odds per 10 years of age above 62."""

MALE_COEF: float = 0.20
"""Log-odds for male sex."""

_PAIRS: dict[tuple[str, str], float] = {
    ("size", "necrosis"): 0.35,
    ("size", "margin"): 0.20,
    ("heterogeneity", "necrosis"): 0.30,
    ("enhancement", "washout"): 0.25,
    ("margin", "peritumoural"): 0.30,
    ("size", "systemic"): 0.25,
    ("heterogeneity", "enhancement"): 0.15,
}


def _correlation() -> np.ndarray:
    idx = {n: i for i, n in enumerate(LATENT_FACTORS)}
    c = np.eye(len(LATENT_FACTORS))
    for (a, b), r in _PAIRS.items():
        c[idx[a], idx[b]] = c[idx[b], idx[a]] = r
    return c


FACTOR_CORRELATION: np.ndarray = _correlation()
"""Correlation matrix of the latent factors (order of :data:`LATENT_FACTORS`)."""
_CHOL = np.linalg.cholesky(FACTOR_CORRELATION)

CENTERS: tuple[str, ...] = ("A", "B", "C", "D")
"""Centre / scanner labels (acquisition properties in :mod:`rccgrade.synth.acquisition`)."""
CENTER_WEIGHTS: tuple[float, ...] = (0.45, 0.35, 0.20, 0.0)
"""Default acquisition mix: how often each centre occurs (``D`` only with another mix)."""
DEFAULT_CENTER_WEIGHTS: dict[str, float] = dict(zip(CENTERS, CENTER_WEIGHTS, strict=True))


def center_probabilities(weights: dict[str, float] | None) -> tuple[float, ...]:
    """The acquisition mix as probabilities in the order of :data:`CENTERS` (None: the default mix).

    Only *which scanner* a patient is imaged on changes with the mix: the centre is drawn with a single
    uniform number whatever the weights, after ``p_high`` and the outcome and before the clinical values,
    so the latent factors, ``p_high``, grade, clinical values and misalignment of patient ``i`` are the same
    under every mix.

    Raises:
        ValueError: an unknown centre, a negative weight, or weights that sum to zero.
    """
    if weights is None:
        return CENTER_WEIGHTS
    unknown = sorted(set(weights) - set(CENTERS))
    if unknown:
        raise ValueError(f"unknown centre(s) {unknown} in the acquisition mix; use {list(CENTERS)}")
    w = np.array([float(weights.get(c, 0.0)) for c in CENTERS])
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"acquisition-mix weights must be finite, ≥ 0 and not all 0, got {weights}")
    return tuple(float(v) for v in w / w.sum())


def parse_center_weights(text: str) -> dict[str, float]:
    """``"A=0.1,B=0.2,C=0.2,D=0.5"`` → ``{"A": 0.1, …}`` (the ``--centers`` option).

    Raises:
        ValueError: malformed text (with the expected form), or weights :func:`center_probabilities` refuses.
    """
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"cannot read acquisition mix {text!r}; write it as A=0.1,B=0.2,C=0.2,D=0.5") from None
    center_probabilities(out)
    return out


CLINICAL_COLUMNS: tuple[str, ...] = (
    "age",
    "sex",
    "bmi",
    "symptoms",
    "haemoglobin",
    "platelets",
    "crp",
    "size_cm",
)
"""Clinical columns written to the manifest (``sex`` is categorical M/F, ``symptoms`` 0/1)."""

MISSING_RATE: dict[str, float] = {
    "age": 0.01,
    "sex": 0.0,
    "bmi": 0.08,
    "symptoms": 0.05,
    "haemoglobin": 0.06,
    "platelets": 0.06,
    "crp": 0.12,
    "size_cm": 0.02,
}
"""Probability that each clinical value is missing (missing completely at random); mean ≈ 5%."""

MOVING_PHASES: tuple[str, ...] = ("nephrographic", "excretory")

MAX_TRANSLATION_MM: tuple[float, float, float] = (2.5, 2.5, 6.0)
"""Half-range (mm) of the uniform inter-phase translation along x (L), y (P), z (S)."""
MAX_ROTATION_DEG: float = 3.0
"""Half-range (degrees) of the uniform inter-phase rotation about each axis."""


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


@dataclass(frozen=True)
class Misalignment:
    """Rigid transform of one moving phase (see :func:`rccgrade.synth.acquisition.misalignment_transform`).

    The transform maps a physical point of the arterial image to the physical point where the same
    anatomy appears in the moving phase: ``x_moving = R (x_arterial - c) + c + t`` with ``R`` the
    SimpleITK ``Euler3DTransform`` rotation of angles (``rx``, ``ry``, ``rz``) and ``c`` the
    centre, which the renderer sets to the centre of the arterial image.

    Attributes:
        translation_mm: ``t`` = (tx, ty, tz) in mm (LPS).
        rotation_deg: (rx, ry, rz) in degrees.
    """

    translation_mm: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]


@dataclass(frozen=True)
class PatientDraw:
    """The non-image part of one synthetic patient.

    Attributes:
        patient_index: Index within the cohort (0-based).
        seed: Cohort seed.
        factors: Latent factor → z-score.
        age: Years (true value, before missingness).
        male: True for male.
        bmi: kg/m² (true value).
        linear_predictor: Logit of p_high.
        p_high: True probability of ISUP 3–4.
        high_grade: 0/1 outcome.
        grade: ISUP grade 1–4.
        center: Centre label.
        clinical: Manifest clinical values (None = missing).
        diameter_mm: True maximal tumour diameter before shape irregularity (mm).
        misalignment: Moving phase → its rigid misalignment.
    """

    patient_index: int
    seed: int
    factors: dict[str, float]
    age: float
    male: bool
    bmi: float
    linear_predictor: float
    p_high: float
    high_grade: int
    grade: int
    center: str
    clinical: dict[str, float | str | None]
    diameter_mm: float
    misalignment: dict[str, Misalignment] = field(default_factory=dict)


def patient_id(patient_index: int) -> str:
    """Identifier of the ``patient_index``-th synthetic patient (independent of the cohort size)."""
    return f"syn{patient_index:04d}"


def child_generators(patient_index: int, seed: int) -> tuple[np.random.Generator, ...]:
    """Three independent generators of one patient: (truth, anatomy, scanner noise).

    Derived from ``numpy.random.SeedSequence([seed, patient_index])`` so each case is reproducible on
    its own, whatever the cohort size or the order cases are generated in.
    """
    if patient_index < 0 or seed < 0:
        raise ValueError("patient_index and seed must be non-negative")
    children = np.random.SeedSequence([seed, patient_index]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)


def diameter_from_size(z_size: float) -> float:
    """Tumour diameter (mm) from the size factor: log-normal, median 45 mm, clipped to 15–120 mm."""
    return float(np.clip(45.0 * np.exp(0.5 * z_size), 15.0, 120.0))


def draw_patient(patient_index: int, seed: int, center_weights: dict[str, float] | None = None) -> PatientDraw:
    """Draw the latent factors, clinical variables, outcome, centre and misalignment of one patient.

    Args:
        patient_index: 0-based index in the cohort.
        seed: Cohort seed.
        center_weights: Acquisition mix (centre → weight; None: the default mix). Changes only the centre.

    Returns:
        The :class:`PatientDraw`; identical for identical (seed, patient_index).
    """
    rng = child_generators(patient_index, seed)[0]
    z = _CHOL @ rng.standard_normal(len(LATENT_FACTORS))
    factors = {n: float(v) for n, v in zip(LATENT_FACTORS, z, strict=True)}

    male = bool(rng.random() < 0.65)
    age = float(np.clip(rng.normal(62.0, 11.0), 25.0, 90.0))
    bmi = float(np.clip(np.exp(rng.normal(np.log(27.0), 0.17)) - 0.6 * factors["systemic"], 17.0, 48.0))

    lp = INTERCEPT + sum(COEFFICIENTS[n] * factors[n] for n in LATENT_FACTORS)
    lp += AGE_COEF * (age - 62.0) / 10.0 + MALE_COEF * float(male)
    p_high = float(sigmoid(lp))
    high = int(rng.random() < p_high)
    u = rng.random()
    if high:
        grade = 4 if u < 0.08 + 0.32 * p_high else 3
    else:
        grade = 1 if u < 0.05 + 0.27 * (1.0 - p_high) else 2
    center = str(rng.choice(CENTERS, p=center_probabilities(center_weights)))

    diameter = diameter_from_size(factors["size"])
    s = factors["systemic"]
    hb = rng.normal(14.6 if male else 13.2, 1.1) - 0.75 * s - 0.004 * (diameter - 45.0)
    plt = rng.normal(255.0, 50.0) + 38.0 * s
    crp = float(np.exp(rng.normal(np.log(3.0) + 0.8 * s + 0.006 * (diameter - 45.0), 0.8)))
    p_sympt = float(sigmoid(-1.0 + 0.7 * s + 0.025 * (diameter - 45.0)))
    symptoms = int(rng.random() < p_sympt)
    size_cm = float(np.round(diameter * rng.normal(1.0, 0.05) / 10.0, 1))
    clinical: dict[str, float | str | None] = {
        "age": float(np.round(age)),
        "sex": "M" if male else "F",
        "bmi": float(np.round(bmi, 1)),
        "symptoms": float(symptoms),
        "haemoglobin": float(np.round(np.clip(hb, 6.0, 19.0), 1)),
        "platelets": float(np.round(np.clip(plt, 60.0, 700.0))),
        "crp": float(np.round(np.clip(crp, 0.2, 300.0), 1)),
        "size_cm": size_cm,
    }
    missing = rng.random(len(CLINICAL_COLUMNS))
    for name, m in zip(CLINICAL_COLUMNS, missing, strict=True):
        if m < MISSING_RATE[name]:
            clinical[name] = None

    mis = {}
    for phase in MOVING_PHASES:
        t = rng.uniform(-1.0, 1.0, 3) * np.asarray(MAX_TRANSLATION_MM)
        r = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3)
        mis[phase] = Misalignment(
            translation_mm=(float(t[0]), float(t[1]), float(t[2])), rotation_deg=(float(r[0]), float(r[1]), float(r[2]))
        )

    return PatientDraw(
        patient_index=patient_index,
        seed=seed,
        factors=factors,
        age=age,
        male=male,
        bmi=bmi,
        linear_predictor=float(lp),
        p_high=p_high,
        high_grade=high,
        grade=grade,
        center=center,
        clinical=clinical,
        diameter_mm=diameter,
        misalignment=mis,
    )


def truth_row(draw: PatientDraw) -> dict[str, float | int | str]:
    """The ``truth.csv`` columns that do not need an image (p_high, factors, outcome, misalignment)."""
    row: dict[str, float | int | str] = {
        "patient_id": patient_id(draw.patient_index),
        "p_high": draw.p_high,
        "linear_predictor": draw.linear_predictor,
        "high_grade": draw.high_grade,
        "grade": draw.grade,
        "center": draw.center,
    }
    for name in LATENT_FACTORS:
        row[f"z_{name}"] = draw.factors[name]
    row["true_age"] = draw.age
    row["true_male"] = int(draw.male)
    row["true_bmi"] = draw.bmi
    row["diameter_mm"] = draw.diameter_mm
    for phase, m in draw.misalignment.items():
        for ax, v in zip("xyz", m.translation_mm, strict=True):
            row[f"{phase}_t{ax}_mm"] = v
        for ax, v in zip("xyz", m.rotation_deg, strict=True):
            row[f"{phase}_r{ax}_deg"] = v
    return row


def sample_truth(n: int, seed: int, start: int = 0, center_weights: dict[str, float] | None = None) -> pd.DataFrame:
    """Truth of ``n`` patients without rendering images (fast: well under a millisecond a patient).

    Args:
        n: Number of patients.
        seed: Cohort seed.
        start: Index of the first patient.
        center_weights: Acquisition mix (see :func:`center_probabilities`).

    Returns:
        DataFrame indexed by ``patient_id`` with the :func:`truth_row` columns plus the clinical values
        as they appear in the manifest (prefixed ``clin_``).
    """
    rows = []
    for i in range(start, start + n):
        d = draw_patient(i, seed, center_weights)
        row = truth_row(d)
        row.update({f"clin_{k}": (np.nan if v is None else v) for k, v in d.clinical.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("patient_id")
