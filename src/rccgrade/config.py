"""The study configuration (YAML), as pydantic models with defaults and validation.

Each stage owns its settings model (``rccgrade.<stage>.settings``); :class:`StudyConfig` composes
them. Unknown keys are errors, so a typo in a YAML file is reported instead of silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rccgrade.cluster import ClusterSettings
from rccgrade.cohort.settings import CohortSettings
from rccgrade.deep.settings import DeepSettings
from rccgrade.errors import ConfigError
from rccgrade.models.settings import ModelSettings
from rccgrade.parallel import ParallelSettings
from rccgrade.preprocess.settings import PreprocessSettings
from rccgrade.radiomics.params import SHIPPED
from rccgrade.radiomics.settings import RadiomicsSettings
from rccgrade.report.settings import ReportSettings
from rccgrade.stats.settings import EvaluationSettings
from rccgrade.synth.settings import SynthSettings

SHIPPED_PARAMS = SHIPPED
"""Names of the PyRadiomics parameter files shipped with rccgrade (not resolved as paths; defined once, in
:data:`rccgrade.radiomics.params.SHIPPED`)."""


class StudyConfig(BaseModel):
    """A whole study: where the data is, every stage's settings, the seed and the run folder.

    Attributes:
        name: Run name; outputs go to ``<runs_dir>/<name>/``.
        runs_dir: Parent folder of run folders (relative paths: to the config file's folder).
        seed: Master seed; every random step derives its generator from it.
        synth: When set and ``cohort.manifest`` is missing, a synthetic cohort is generated.
        cluster: Where per-case work runs: this machine (``local``), an existing Dask scheduler, or a
            SLURM/PBS/SGE/Kubernetes cluster the study starts (:mod:`rccgrade.cluster`, docs/cluster.md).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "study"
    runs_dir: Path = Path("runs")
    seed: int = 0
    cohort: CohortSettings = CohortSettings()
    synth: SynthSettings | None = None
    parallel: ParallelSettings = ParallelSettings()
    cluster: ClusterSettings = ClusterSettings()
    preprocess: PreprocessSettings = PreprocessSettings()
    radiomics: RadiomicsSettings = RadiomicsSettings()
    deep: DeepSettings = DeepSettings()
    models: ModelSettings = ModelSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    report: ReportSettings = ReportSettings()

    @property
    def run_dir(self) -> Path:
        """The run folder ``<runs_dir>/<name>``."""
        return self.runs_dir / self.name


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid study configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  - {loc}: {err['msg']}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> StudyConfig:
    """Validate a mapping into a :class:`StudyConfig`; relative paths resolve against ``base_dir``."""
    try:
        cfg = StudyConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    if base_dir is not None:
        if not cfg.runs_dir.is_absolute():
            cfg.runs_dir = (base_dir / cfg.runs_dir).resolve()
        for attr in ("manifest", "clinical_csv"):
            value = getattr(cfg.cohort, attr)
            if value is not None and not Path(value).is_absolute():
                setattr(cfg.cohort, attr, (base_dir / value).resolve())
        params = cfg.radiomics.params
        if params not in SHIPPED_PARAMS and not Path(params).is_absolute():
            cfg.radiomics.params = str((base_dir / params).resolve())
        weights = str(cfg.deep.weights)
        if weights not in ("imagenet", "none") and not Path(weights).is_absolute():
            cfg.deep.weights = str((base_dir / weights).resolve())
    if cfg.radiomics.params not in SHIPPED_PARAMS:
        # a user's parameter file is read and checked against PyRadiomics' schema now, not after preprocessing
        from rccgrade.radiomics.params import load_params

        load_params(cfg.radiomics.params)
    return cfg


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML file.

    Raises:
        ConfigError: file missing, not YAML, or not a valid configuration (every problem listed).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("configuration file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping", path=path)
    return config_from_dict(data or {}, source=str(path), base_dir=path.parent.resolve())


def dump_config(cfg: StudyConfig, path: str | Path, notes: Sequence[str] = ()) -> Path:
    """Write the fully resolved configuration (defaults included) as YAML.

    Args:
        cfg: The configuration.
        path: The YAML file to write.
        notes: Lines written first as YAML comments (``# …``), e.g. what the run used instead of a setting;
            :func:`load_config` ignores them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for note in notes for line in str(note).splitlines())
    path.write_text(header + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
