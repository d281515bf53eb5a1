"""The study's stages, one module each (see :mod:`rccgrade.study.runner` for the order)."""

from rccgrade.study.stages.clinical import ClinicalStage
from rccgrade.study.stages.cohort import CohortStage
from rccgrade.study.stages.deep import DeepStage
from rccgrade.study.stages.evaluate import EvaluateStage
from rccgrade.study.stages.models import ModelsStage
from rccgrade.study.stages.preprocess import PreprocessStage
from rccgrade.study.stages.radiomics import RadiomicsStage
from rccgrade.study.stages.report import ReportStage
from rccgrade.study.stages.split import SplitStage

__all__ = [
    "ClinicalStage",
    "CohortStage",
    "DeepStage",
    "EvaluateStage",
    "ModelsStage",
    "PreprocessStage",
    "RadiomicsStage",
    "ReportStage",
    "SplitStage",
]
