"""Stage caches that cannot go stale.

A cached stage keeps its files in ``<run_dir>/cache/<stage>-<key>/`` and marks them finished with
``stage.json``. The key is :func:`rccgrade.cache.stable_hash` of

* rccgrade's version (an upgrade recomputes everything),
* :data:`LAYOUT_VERSION` (the study layer's own folder layout),
* the stage's name and its ``version`` (bumped whenever the stage's code changes what it writes),
* the stage's own settings and the keys of what it reads.

A re-run whose key matches reuses the folder (status ``cached``). ``--force STAGE`` deletes the stage's
folder (only inside the run folder, :func:`rccgrade.safepath.remove_tree_inside`) and recomputes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rccgrade import __version__
from rccgrade.cache import stable_hash
from rccgrade.safepath import remove_tree_inside
from rccgrade.study.context import StageRecord, StudyContext, log

LAYOUT_VERSION = "study-2"
"""Bumped when the study's run-folder layout changes (invalidates every stage cache)."""

Compute = Callable[[Path, Callable[[int, int], None]], dict[str, Any]]


def stage_key(name: str, version: str, *parts: Any) -> str:
    """Cache key of a stage: rccgrade's version, the layout and stage code versions, settings and inputs."""
    return stable_hash(__version__, LAYOUT_VERSION, name, version, *parts)


def stage_dir(run_dir: Path, stage: str, key: str) -> Path:
    """Cache folder of a stage: ``<run_dir>/cache/<stage>-<key>``."""
    return Path(run_dir) / "cache" / f"{stage}-{key}"


def cached(
    ctx: StudyContext,
    record: StageRecord,
    version: str,
    key_parts: tuple[Any, ...],
    compute: Compute,
) -> tuple[Path, dict[str, Any]]:
    """Run ``compute(folder, progress)`` unless ``<stage>-<key>/stage.json`` exists; return folder and manifest.

    ``compute`` writes its files into the folder and returns a JSON-able manifest (counts, failures, …)
    that is stored in ``stage.json`` and returned again on a cached run. A forced stage's folder is deleted
    first, so nothing of the old result (per-case caches included) is reused.
    """
    name = record.name
    key = stage_key(name, version, *key_parts)
    folder = stage_dir(ctx.run_dir, name, key)
    record.key = key
    marker = folder / "stage.json"
    if name in ctx.force and folder.exists():
        log.info("stage %s forced: deleting its cache folder %s", name, folder)
        remove_tree_inside(folder, ctx.run_dir)
    if name in ctx.force:
        record.forced = True
    if marker.is_file():
        manifest = json.loads(marker.read_text())["manifest"]
        record.status = "cached"
    else:
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        manifest = compute(folder, ctx.progress(name))
        payload = {"stage": name, "key": key, "seconds": round(time.perf_counter() - t0, 3), "manifest": manifest}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        tmp.replace(marker)
    record.n_failures = ctx.add_failures(name, manifest.get("failures", []))
    record.detail = str(manifest.get("detail", ""))
    return folder, manifest
