"""Settings of PyRadiomics extraction and stability analysis."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        stability: Perturbation/ICC stability analysis.
    """

    model_config = ConfigDict(extra="forbid")

    params: str = "ct_default"
    phases: list[str] = Field(default_factory=lambda: ["arterial"], min_length=1)
    label: int | None = Field(None, ge=1)
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
