"""The FeatureTable contract: a DataFrame indexed by ``patient_id`` with ``source:name`` columns.

Columns are named ``rad:<phase>:<feature>``, ``deep:<roi>:fNNNN`` or ``clin:<name>``. Tables are
stored as Parquet with the settings that produced them in the file's metadata, so a downstream
stage (or ``predict``) can check it is fed features made the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rccgrade.errors import FeatureError
from rccgrade.features.naming import CLINICAL, DEEP, KINETIC, PREFIX_OF_KIND, RADIOMICS

SOURCES: tuple[str, ...] = tuple(PREFIX_OF_KIND[k] for k in (RADIOMICS, KINETIC, DEEP, CLINICAL))
"""Column prefixes of the feature sources (:mod:`rccgrade.features.naming`)."""
_META_KEY = b"rccgrade.settings"


def validate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check the FeatureTable contract and return the table.

    Raises:
        FeatureError: index not named ``patient_id``, duplicated patients, or a column not of the
            form ``source:...`` with a known source.
    """
    if table.index.name != "patient_id":
        raise FeatureError("a feature table must be indexed by 'patient_id'")
    dup = table.index[table.index.duplicated()].unique().tolist()
    if dup:
        raise FeatureError(f"patients listed twice in a feature table: {dup[:5]}")
    bad = [c for c in table.columns if not isinstance(c, str) or c.split(":", 1)[0] not in SOURCES or ":" not in c]
    if bad:
        raise FeatureError(f"feature columns must be named 'rad:…', 'kin:…', 'deep:…' or 'clin:…'; got {bad[:5]}")
    return table


def columns_of(table: pd.DataFrame, prefix: str) -> list[str]:
    """Columns whose name starts with ``prefix`` (e.g. ``"rad:"`` or ``"deep:dilated5mm:"``)."""
    return [c for c in table.columns if c.startswith(prefix)]


def join_tables(*tables: pd.DataFrame) -> pd.DataFrame:
    """Outer-join feature tables on ``patient_id``; a column present twice is an error."""
    if not tables:
        return pd.DataFrame(index=pd.Index([], name="patient_id"))
    seen: set[str] = set()
    for t in tables:
        overlap = seen & set(t.columns)
        if overlap:
            raise FeatureError(f"feature columns present in two tables: {sorted(overlap)[:5]}")
        seen |= set(t.columns)
    out = pd.concat([validate_table(t) for t in tables], axis=1, join="outer")
    out.index.name = "patient_id"
    return out


def save_table(table: pd.DataFrame, path: str | Path, settings: dict[str, Any] | None = None) -> Path:
    """Write a FeatureTable to Parquet with ``settings`` (JSON) in the file metadata."""
    validate_table(table)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, preserve_index=True)
    meta = dict(arrow.schema.metadata or {})
    meta[_META_KEY] = json.dumps(settings or {}, sort_keys=True, default=str).encode()
    arrow = arrow.replace_schema_metadata(meta)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(arrow, tmp)
    tmp.replace(path)
    return path


def load_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a FeatureTable and the settings stored with it."""
    path = Path(path)
    if not path.exists():
        raise FeatureError("feature table not found", path=path)
    arrow = pq.read_table(path)
    meta = (arrow.schema.metadata or {}).get(_META_KEY, b"{}")
    table = arrow.to_pandas()
    table.index.name = "patient_id"
    return validate_table(table), json.loads(meta.decode())
