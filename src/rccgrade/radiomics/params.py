"""PyRadiomics parameter files: the shipped ones by name, or a user's file, validated by PyRadiomics' schema.

PyRadiomics ships a pykwalify schema (``radiomics/schemas/paramSchema.yaml``) and custom checks
(``schemaFuncs.py``). We run the same validation when a file is loaded, so a typo in a user's file is
reported with the file's name before any case is touched, instead of failing inside every worker.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import yaml

from rccgrade.errors import ConfigError

log = logging.getLogger(__name__)

PARAMS_DIR = Path(__file__).resolve().parent / "params"
PYKWALIFY_LOCK = threading.Lock()
"""pykwalify's schema loading is not thread-safe (threaded Dask workers)."""
SHIPPED: tuple[str, ...] = ("ct_default", "ibsi")
"""Names of the parameter files shipped with rccgrade (``params/<name>.yaml``)."""


def params_path(spec: str | Path) -> Path:
    """Resolve a params spec (a shipped name or a file path) to a file path.

    Raises:
        ConfigError: neither a shipped name nor an existing file.
    """
    text = str(spec)
    if text in SHIPPED:
        return PARAMS_DIR / f"{text}.yaml"
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"PyRadiomics parameter file not found; give one of the shipped names {list(SHIPPED)} "
            "or the path of an existing YAML file",
            path=path,
        )
    return path


def validate_params(params: dict[str, Any], source: str | Path = "<dict>") -> dict[str, Any]:
    """Validate a parameter mapping with PyRadiomics' own pykwalify schema and return it.

    Args:
        params: The parsed YAML mapping (``imageType``, ``featureClass``, ``setting`` …).
        source: The file it came from, for the error message.

    Raises:
        ConfigError: the mapping does not satisfy the schema (PyRadiomics' message included).
    """
    import pykwalify.core
    from pykwalify.errors import PyKwalifyException

    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    try:
        with PYKWALIFY_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pykwalify loads schemaFuncs with load_module()
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(params), schema_files=[schema_file], extensions=[schema_funcs]
            )
            return core.validate(raise_exception=True)
    except PyKwalifyException as exc:
        msg = getattr(exc, "msg", None) or str(exc)
        raise ConfigError(
            f"invalid PyRadiomics parameter file: {msg}. See "
            "https://pyradiomics.readthedocs.io/en/latest/customization.html for the allowed keys",
            path=source,
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid PyRadiomics parameter file: {exc}", path=source) from None


def load_params(spec: str | Path) -> dict[str, Any]:
    """Read and validate a PyRadiomics parameter file.

    Args:
        spec: ``"ct_default"``, ``"ibsi"`` or the path of a YAML/JSON file.

    Returns:
        The validated mapping (what ``RadiomicsFeatureExtractor(mapping)`` accepts).

    Raises:
        ConfigError: file missing, not YAML, not a mapping, or rejected by the schema.
    """
    path = params_path(spec)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"PyRadiomics parameter file is not valid YAML: {exc}", path=path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a PyRadiomics parameter file must be a YAML mapping", path=path)
    return validate_params(data, source=path)
