"""rccgrade: predict the WHO/ISUP grade of clear cell renal cell carcinoma from triple-phase CT.

The study flows one way: cohort → preprocess → {radiomics, deep, clinical} features → models →
evaluate → report. Each stage is a subpackage with a typed contract; ``rccgrade.study`` runs them in
order (see ``docs/architecture.md``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rccgrade.errors import RccgradeError

try:
    __version__ = version("rccgrade")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["RccgradeError", "__version__"]
