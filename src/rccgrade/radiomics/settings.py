"""Settings of PyRadiomics extraction and stability analysis."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rccgrade.cohort.types import PHASES


class StabilitySettings(BaseModel):
    """Perturbation-based feature stability (ICC over perturbed copies of each case).

    Each perturbed copy combines, with draws from a generator seeded by ``(seed, patient_id, copy)``:
    a rigid transform of image and mask (shift up to ``max_shift_mm`` per axis, rotation up to
    ``max_rotation_deg`` about each axis), a mask volume change (erosion or dilation by ``volume_mm``
    or none), a random smooth contour perturbation of amplitude ``contour_mm`` and Gaussian image
    noise of ``noise_hu`` HU standard deviation.

    Attributes:
        enabled: Compute stability (costs ``n_perturbations`` extra extractions per case and phase).
        n_perturbations: Perturbed copies per case (the ICC's "raters"); at least 2.
        seed: Seed of the perturbation generator.
        volume_mm: Erosion/dilation distance in mm (physical units, whatever the spacing).
        contour_mm: Amplitude (standard deviation, mm) of the random contour displacement.
        contour_smoothing_mm: Correlation length (Gaussian sigma, mm) of the contour displacement field.
        max_shift_mm: Largest translation per axis in mm.
        max_rotation_deg: Largest rotation about each axis in degrees.
        noise_hu: Standard deviation of added Gaussian noise in HU.
        icc_model: ICC that decides stability: ``icc2_1`` (two-way random, absolute agreement) or
            ``icc3_1`` (two-way mixed, consistency).
        threshold: Features whose ICC is below this are marked unstable (selection drops them).
        max_patients: Perturbed copies are made for at most this many patients, chosen reproducibly from ``seed``
            (:func:`rccgrade.radiomics.stability.stability_patients`); in a study only from the training patients.
            None: every eligible patient. The ICC needs subjects, not all of them: 50 patients × 4 copies estimate
            an ICC of 0.75 with a standard error of about 0.05, while perturbing all 496 patients of a paper-size
            cohort multiplies the stage's PyRadiomics work by 1 + ``n_perturbations`` (measured at realistic image
            size: 26 CPU s per patient with 4 copies, 5.2 without; bench/results/study_realistic.json).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    n_perturbations: int = Field(4, ge=2)
    seed: int = 0
    volume_mm: float = Field(1.0, ge=0.0)
    contour_mm: float = Field(0.5, ge=0.0)
    contour_smoothing_mm: float = Field(3.0, gt=0.0)
    max_shift_mm: float = Field(1.0, ge=0.0)
    max_rotation_deg: float = Field(5.0, ge=0.0)
    noise_hu: float = Field(5.0, ge=0.0)
    icc_model: Literal["icc2_1", "icc3_1"] = "icc2_1"
    threshold: float = Field(0.75, ge=-1.0, le=1.0)
    max_patients: int | None = Field(50, ge=2)


DEFAULT_DELTA_FEATURES: tuple[str, ...] = (
    "original_firstorder_Entropy",
    "original_firstorder_Uniformity",
    "original_firstorder_Skewness",
    "original_firstorder_Kurtosis",
    "original_firstorder_InterquartileRange",
    "original_glcm_Contrast",
    "original_glcm_Correlation",
    "original_glcm_JointEntropy",
    "original_glcm_Idm",
    "original_glrlm_RunEntropy",
    "original_glszm_ZoneEntropy",
    "original_gldm_DependenceEntropy",
    "original_ngtdm_Coarseness",
)
"""First-order and texture features whose change between phases is a kinetic feature by default.

The tumour's mean and percentiles are left out here: their changes are the intensity-kinetic features,
computed on the registered voxels themselves (:mod:`rccgrade.radiomics.kinetic`). Shape features are left
out: every phase shares the mask, so their change is 0.
"""


class KineticSettings(BaseModel):
    """Kinetic features between registered phases (source ``kinetic``, columns ``kin:<feature>``).

    Formulas: :mod:`rccgrade.radiomics.kinetic`. They need at least two of ``radiomics.phases``.

    Attributes:
        enabled: Compute them (with the radiomics stage, from the same reads of the registered images).
        percentiles: Percentiles of the tumour's HU values whose enhancement/washout is a feature (besides
            the mean).
        washout_min_peak_hu: Floor (HU) of the relative washout's denominator, max(peak, floor): a tumour
            peaking near 0 HU would otherwise divide by ≈ 0.
        delta_features: PyRadiomics features (names without the phase, e.g. ``original_glcm_Contrast``)
            whose later-minus-earlier change between phases is a feature; each must be extracted by the
            parameter file.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    percentiles: list[float] = Field(default_factory=lambda: [10.0, 50.0, 90.0])
    washout_min_peak_hu: float = Field(20.0, gt=0.0)
    delta_features: list[str] = Field(default_factory=lambda: list(DEFAULT_DELTA_FEATURES))

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, value: list[float]) -> list[float]:
        bad = [q for q in value if not 0.0 <= float(q) <= 100.0]
        if bad:
            raise ValueError(f"percentiles must lie in 0 … 100, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"percentiles listed twice: {value}")
        return value

    @field_validator("delta_features")
    @classmethod
    def _delta_names(cls, value: list[str]) -> list[str]:
        bad = [f for f in value if not f or ":" in f or f.startswith("diagnostics_")]
        if bad:
            raise ValueError(
                f"delta_features must be PyRadiomics feature names without the phase "
                f"(e.g. 'original_glcm_Contrast'), got {bad}"
            )
        return value


class RadiomicsSettings(BaseModel):
    """Settings of PyRadiomics extraction and stability analysis.

    Attributes:
        params: PyRadiomics parameter file: ``ct_default`` (shipped; 1 mm isotropic B-spline resampling,
            binWidth 25 HU, original + LoG σ 1–5 mm + wavelet, all classes), ``ibsi`` (shipped; IBSI
            digital-phantom settings) or the path of a user's YAML file. Every file is validated against
            PyRadiomics' own schema.
        phases: Phases to extract features from (registered onto the mask grid). The reference study
            used the arterial phase only.
        label: Label value of the tumour in the mask; ``None`` uses the case's label or 1.
        rings_mm: Peritumoural rings: for each N, the voxels outside the tumour within N mm of it (physical
            distance, anisotropic spacing honoured) and within ``ring_hu_range``; features named
            ``rad:<phase>@ring<N>mm:<feature>``, every phase, shape features left out (see
            :mod:`rccgrade.radiomics.regions`). Empty: no rings (the reference study).
        ring_hu_range: Inclusive HU window of ring voxels in each phase, default −100 … +300 HU (soft tissue:
            air and bone do not enter a ring; see :data:`rccgrade.radiomics.regions.SOFT_TISSUE_HU`).
        ring_min_voxels: A ring with fewer voxels (or one voxel thick) is not described: its features are
            missing (NaN) for that patient and phase, with the reason in ``regions_missing.csv``.
        kinetic: Kinetic features between phases (``kin:…``).
        stability: Perturbation/ICC stability analysis (of the tumour region; ring features have no ICC).
    """

    model_config = ConfigDict(extra="forbid")

    params: str = "ct_default"
    phases: list[str] = Field(default_factory=lambda: ["arterial"], min_length=1)
    label: int | None = Field(None, ge=1)
    rings_mm: list[float] = Field(default_factory=list)
    ring_hu_range: tuple[float, float] = (-100.0, 300.0)
    ring_min_voxels: int = Field(10, ge=1)
    kinetic: KineticSettings = KineticSettings()
    stability: StabilitySettings = StabilitySettings()

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: str) -> str:
        """A shipped name, or the path of a YAML/JSON file (an absolute one must exist and pass the schema).

        Relative paths are resolved against the configuration file's folder and checked by
        :func:`rccgrade.config.config_from_dict`, before any work starts.
        """
        from pathlib import Path

        from rccgrade.radiomics.params import SHIPPED, load_params

        text = value.strip()
        if text in SHIPPED:
            return text
        path = Path(text).expanduser()
        if path.suffix.lower() not in (".yaml", ".yml", ".json"):
            raise ValueError(
                f"unknown PyRadiomics parameter set {value!r}; use a shipped one {list(SHIPPED)} or the path of a "
                ".yaml/.yml/.json parameter file"
            )
        if path.is_absolute():
            from rccgrade.errors import ConfigError

            try:
                load_params(path)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return text

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if p not in PHASES]
        if bad:
            raise ValueError(f"unknown phase(s) {bad}; choose from {list(PHASES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"phases listed twice: {value}")
        return value

    @field_validator("rings_mm")
    @classmethod
    def _rings(cls, value: list[float]) -> list[float]:
        bad = [r for r in value if not 0.0 < float(r) <= 100.0]
        if bad:
            raise ValueError(f"ring distances must lie in (0, 100] mm, got {bad}")
        names = [f"{float(r):g}" for r in value]
        if len(set(names)) != len(names):
            raise ValueError(f"rings listed twice: {value}")
        return [float(r) for r in value]

    @field_validator("ring_hu_range")
    @classmethod
    def _hu_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if float(value[0]) >= float(value[1]):
            raise ValueError(f"ring_hu_range must be [low, high] with low < high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _kinetic_needs_phases(self) -> RadiomicsSettings:
        if self.kinetic.enabled and len(self.phases) < 2:
            raise ValueError(
                f"kinetic features compare phases: radiomics.phases lists {self.phases}; list at least two "
                "(e.g. [arterial, nephrographic, excretory]) or set radiomics.kinetic.enabled: false"
            )
        return self


def methods_sentence(settings: RadiomicsSettings) -> str:
    """The rings and kinetic features of a run in words, for the report's methods (empty when both are off)."""
    parts = []
    if settings.rings_mm:
        lo, hi = settings.ring_hu_range
        rings = ", ".join(f"{r:g}" for r in settings.rings_mm)
        parts.append(
            f"peritumoural rings out to {rings} mm from the tumour border (Euclidean distance in mm, voxels of "
            f"{lo:g} to {hi:g} HU only; shape features left out)"
        )
    if settings.kinetic.enabled:
        stats = ", ".join(["mean", *(f"p{q:g}" for q in settings.kinetic.percentiles)])
        parts.append(
            f"kinetic features between the phases (enhancement and washout of the tumour's {stats}, and the "
            f"change of {len(settings.kinetic.delta_features)} first-order and texture features)"
        )
    return ("Also " + "; ".join(parts) + ". ") if parts else ""
