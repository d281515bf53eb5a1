"""Tissue classes and their attenuation (HU) in the three contrast phases.

Each tissue's HU in a phase is ``unenhanced + iodine_scale × enhancement[phase]``: iodinated
contrast adds attenuation proportional to its concentration, and the centre's tube voltage scales
the HU per mg of iodine (``iodine_scale``, see :mod:`rccgrade.synth.acquisition`). The tables give
typical values of a 120 kVp triple-phase renal CT (arterial/corticomedullary ≈ 35 s, nephrographic ≈
100 s, excretory ≈ 5–10 min after injection). Per patient, the arterial bolus peak and the density
of excreted contrast vary (:class:`PatientKinetics`). The tumour's enhancement is not in this table:
it comes from its latent factors (:mod:`rccgrade.synth.tumour`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

PHASES: tuple[str, ...] = ("arterial", "nephrographic", "excretory")


class Tissue(IntEnum):
    """Labels of the anatomical label map (uint8)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    BONE_CORTICAL = 3
    BONE_CANCELLOUS = 4
    DISC = 5
    CSF = 6
    AORTA = 7
    IVC = 8
    LIVER = 9
    SPLEEN = 10
    BOWEL = 11
    GAS = 12
    CORTEX = 13
    MEDULLA = 14
    SINUS_FAT = 15
    URINE = 16
    PERIRENAL_FAT = 17
    TUMOUR = 18
    NECROSIS = 19


# tissue: (unenhanced HU, enhancement arterial, nephrographic, excretory) at iodine_scale 1.
HU_TABLE: dict[Tissue, tuple[float, float, float, float]] = {
    Tissue.AIR: (-1000.0, 0.0, 0.0, 0.0),
    Tissue.FAT: (-100.0, 0.0, 3.0, 2.0),
    Tissue.MUSCLE: (50.0, 10.0, 15.0, 12.0),
    Tissue.BONE_CORTICAL: (800.0, 0.0, 0.0, 0.0),
    Tissue.BONE_CANCELLOUS: (220.0, 10.0, 15.0, 12.0),
    Tissue.DISC: (80.0, 0.0, 5.0, 5.0),
    Tissue.CSF: (10.0, 0.0, 0.0, 0.0),
    Tissue.AORTA: (40.0, 260.0, 120.0, 80.0),
    Tissue.IVC: (40.0, 40.0, 110.0, 80.0),
    Tissue.LIVER: (55.0, 20.0, 55.0, 40.0),
    Tissue.SPLEEN: (45.0, 80.0, 75.0, 55.0),
    Tissue.BOWEL: (30.0, 30.0, 50.0, 40.0),
    Tissue.GAS: (-900.0, 0.0, 0.0, 0.0),
    Tissue.CORTEX: (35.0, 145.0, 125.0, 95.0),
    Tissue.MEDULLA: (30.0, 45.0, 130.0, 100.0),
    Tissue.SINUS_FAT: (-90.0, 0.0, 3.0, 2.0),
    Tissue.URINE: (5.0, 0.0, 5.0, 700.0),
    Tissue.PERIRENAL_FAT: (-100.0, 0.0, 3.0, 2.0),
    Tissue.TUMOUR: (35.0, 0.0, 0.0, 0.0),
    Tissue.NECROSIS: (20.0, 2.0, 5.0, 5.0),
}
"""Unenhanced HU and contrast enhancement (HU) per phase of each tissue at ``iodine_scale = 1``.

Tumour enhancement is 0 here because it is set per voxel from the tumour's latent factors.
Pattern: aorta brightest in the arterial phase; renal cortex ≫ medulla in the arterial phase
(corticomedullary differentiation) and cortex ≈ medulla in the nephrographic phase (homogeneous
nephrogram); urine in the collecting system dense only in the excretory phase.
"""


@dataclass(frozen=True)
class PatientKinetics:
    """Per-patient variation of contrast kinetics.

    Attributes:
        bolus: Multiplies arterial enhancement of blood and enhancing organs (bolus timing and cardiac
            output; 0.8–1.25).
        venous: Multiplies nephrographic/excretory enhancement (dose per kg; 0.85–1.15).
        excretion: Multiplies the excretory density of urine (renal function, hydration; 0.5–1.6).
    """

    bolus: float
    venous: float
    excretion: float


def draw_kinetics(rng: np.random.Generator) -> PatientKinetics:
    """Draw :class:`PatientKinetics` for one patient."""
    return PatientKinetics(
        bolus=float(rng.uniform(0.8, 1.25)),
        venous=float(rng.uniform(0.85, 1.15)),
        excretion=float(rng.uniform(0.5, 1.6)),
    )


def phase_lut(phase: str, kinetics: PatientKinetics, iodine_scale: float) -> np.ndarray:
    """HU of every :class:`Tissue` label in ``phase`` (a lookup table indexed by label).

    Args:
        phase: ``arterial``, ``nephrographic`` or ``excretory``.
        kinetics: The patient's kinetics.
        iodine_scale: HU per unit iodine of the centre's scanner relative to 120 kVp.

    Returns:
        float32 array of length ``max(Tissue) + 1``.
    """
    k = PHASES.index(phase)
    lut = np.zeros(max(Tissue) + 1, dtype=np.float32)
    factor = kinetics.bolus if k == 0 else kinetics.venous
    for tissue, values in HU_TABLE.items():
        enh = values[1 + k] * factor
        if tissue == Tissue.URINE and k == 2:
            enh = values[3] * kinetics.excretion
        lut[tissue] = values[0] + iodine_scale * enh
    return lut
