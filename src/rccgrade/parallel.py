"""One executor interface for per-case work: serial, local processes, or a Dask cluster.

Per-case stages (preprocessing, radiomics) call :func:`run_cases` with a picklable function of one
item. Failures of one item never stop the others: each result is an :class:`Outcome` holding either
the value or the error message, so the stage can write a failure table and carry on.

Backends:
    * ``serial``: in this process (tests, debugging).
    * ``processes``: a ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes.
    * ``dask``: a Dask distributed ``Client`` to ``scheduler`` (an address such as
      ``tcp://10.0.0.5:8786``), or a ``LocalCluster`` with ``workers`` processes when no address
      is given. Scripts that start a LocalCluster need an ``if __name__ == "__main__":`` guard.

A worker that dies (killed, out of memory, node lost) is not a failed case: the scheduler hands its
running cases to other workers, up to ``worker_failures`` deaths per case (Dask's ``allowed-failures``,
set on the scheduler the study uses, see :func:`_run_dask`). Case functions must therefore be safe to run
twice: they write each output file atomically (:mod:`rccgrade.atomic`) and return the same value for the
same input, so a re-run on another worker leaves the same files and numbers. ``retries`` on submit is 0 on
purpose: a case's own errors are caught in the worker and reported, and re-running a deterministic
failure would only repeat it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from rccgrade.errors import ConfigError, RccgradeError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Backend = Literal["serial", "processes", "dask"]
ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each finished item."""


class ParallelSettings(BaseModel):
    """How per-case work is executed.

    Attributes:
        backend: ``serial``, ``processes`` (default) or ``dask``.
        workers: Number of worker processes; ``0`` means all cores.
        scheduler: Address of an existing Dask scheduler (implies ``backend="dask"``).
        threads_per_worker: Threads each worker may use for numerical libraries (applied before every case,
            also on Dask workers that join later, so numbers do not depend on which worker ran a case).
        worker_failures: Dask only: how many workers may die while running the same case before that case is
            given up as failed (the scheduler's ``allowed-failures``); ``0`` gives up at the first death.

    Unknown keys are errors (a typo such as ``worker: 4`` is reported, not silently ignored).
    """

    model_config = ConfigDict(extra="forbid")

    backend: Backend = "processes"
    workers: int = Field(0, ge=0)
    scheduler: str | None = None
    threads_per_worker: int = Field(1, ge=1)
    worker_failures: int = Field(3, ge=0)

    def resolved_workers(self) -> int:
        """Worker count with ``0`` replaced by the number of usable cores."""
        if self.workers > 0:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - non-Linux
            return max(1, os.cpu_count() or 1)


@dataclass
class Outcome(Generic[R]):
    """Result of one item: ``value`` when ``ok``, else ``error`` (a one-line message) and ``detail``.

    ``seconds`` is the wall time of ``fn(item)`` where it ran (None for a case lost with its worker).
    """

    key: str
    ok: bool
    value: R | None = None
    error: str | None = None
    detail: str | None = None
    seconds: float | None = None


_case_seconds_sinks: list[list[tuple[str, float | None]]] = []


@contextlib.contextmanager
def collect_case_seconds() -> Iterator[list[tuple[str, float | None]]]:
    """Collect ``(key, seconds)`` of every item that :func:`run_cases` finishes inside the ``with`` block.

    For benchmarks and profiling (the slowest single case of a stage); results are unaffected. Nested blocks
    each receive every item.
    """
    sink: list[tuple[str, float | None]] = []
    _case_seconds_sinks.append(sink)
    try:
        yield sink
    finally:
        _case_seconds_sinks.remove(sink)


def _call(fn: Callable[[T], R], key: str, item: T) -> Outcome[R]:
    """Run ``fn(item)`` and wrap the result or the error, with its wall seconds; never raises."""
    t0 = time.perf_counter()
    try:
        value = fn(item)
    except RccgradeError as exc:
        return Outcome(key=key, ok=False, error=str(exc), detail=None, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - one bad case must never stop the batch
        return Outcome(
            key=key,
            ok=False,
            error=f"{type(exc).__name__}: {exc}",
            detail=traceback.format_exc(),
            seconds=time.perf_counter() - t0,
        )
    return Outcome(key=key, ok=True, value=value, seconds=time.perf_counter() - t0)


def _call_on_worker(threads: int, fn: Callable[[T], R], key: str, item: T) -> Outcome[R]:
    """:func:`_call` after limiting threads (Dask workers: every case, whichever worker runs it)."""
    _init_worker(threads)
    return _call(fn, key, item)


def _init_worker(threads: int) -> None:
    """Limit numerical threads in a worker so workers × threads ≤ cores."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:  # pragma: no cover
        pass
    # torch is not imported here (seconds per worker); it reads OMP_NUM_THREADS when a task imports it.


def run_cases(
    fn: Callable[[T], R],
    items: Sequence[T],
    keys: Sequence[str] | None = None,
    settings: ParallelSettings | None = None,
    progress: ProgressCallback | None = None,
) -> list[Outcome[R]]:
    """Apply ``fn`` to every item with the configured backend; results keep the input order.

    Args:
        fn: A picklable (module-level) function of one item.
        items: The work items (e.g. cases).
        keys: A label per item for error tables (default: the item's index).
        settings: Backend choice; default runs on local processes with all cores.
        progress: Optional callback ``progress(done, total)``.

    Returns:
        One :class:`Outcome` per item, in input order.
    """
    settings = settings or ParallelSettings()
    keys = list(keys) if keys is not None else [str(i) for i in range(len(items))]
    if len(keys) != len(items):
        raise ValueError("keys and items differ in length")
    backend = "dask" if settings.scheduler else settings.backend
    workers = settings.resolved_workers()
    if not items:
        return []
    if backend == "serial" or (backend == "processes" and (workers == 1 or len(items) == 1)):
        outcomes = _run_serial(fn, items, keys, progress)
    elif backend == "processes":
        outcomes = _run_processes(fn, items, keys, workers, settings.threads_per_worker, progress)
    elif backend == "dask":
        outcomes = _run_dask(fn, items, keys, settings, progress)
    else:
        raise ConfigError(f"unknown parallel backend {backend!r}; use serial, processes or dask")
    for sink in _case_seconds_sinks:
        sink.extend((o.key, o.seconds) for o in outcomes)
    return outcomes


def _run_serial(
    fn: Callable[[T], R], items: Sequence[T], keys: Sequence[str], progress: ProgressCallback | None
) -> list[Outcome[R]]:
    results: list[Outcome[R]] = []
    for i, (key, item) in enumerate(zip(keys, items, strict=True)):
        results.append(_call(fn, key, item))
        if progress:
            progress(i + 1, len(items))
    return results


def _run_processes(
    fn: Callable[[T], R],
    items: Sequence[T],
    keys: Sequence[str],
    workers: int,
    threads: int,
    progress: ProgressCallback | None,
) -> list[Outcome[R]]:
    import multiprocessing as mp

    results: list[Outcome[R] | None] = [None] * len(items)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)), mp_context=ctx, initializer=_init_worker, initargs=(threads,)
    ) as pool:
        pending = {pool.submit(_call, fn, key, item): i for i, (key, item) in enumerate(zip(keys, items, strict=True))}
        done_count = 0
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                try:
                    results[i] = fut.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker loses one item, not the batch
                    results[i] = Outcome(key=keys[i], ok=False, error=f"worker crashed: {exc}")
                done_count += 1
                if progress:
                    progress(done_count, len(items))
    return [r for r in results if r is not None]


def _run_dask(
    fn: Callable[[T], R],
    items: Sequence[T],
    keys: Sequence[str],
    settings: ParallelSettings,
    progress: ProgressCallback | None,
) -> list[Outcome[R]]:
    try:
        import dask
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - dask is a core dependency
        raise ConfigError("the dask backend needs 'dask[distributed]' installed") from exc
    cluster = None
    if settings.scheduler:
        try:
            client = Client(settings.scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {settings.scheduler}: {exc}. "
                "Start one with 'dask scheduler' or drop --scheduler."
            ) from exc
        _set_allowed_failures(client, settings.worker_failures)
    else:
        with dask.config.set({"distributed.scheduler.allowed-failures": settings.worker_failures}):
            cluster = LocalCluster(
                n_workers=settings.resolved_workers(),
                threads_per_worker=settings.threads_per_worker,
                processes=True,
                dashboard_address=None,
            )
        client = Client(cluster)
    try:
        threads = settings.threads_per_worker
        futures = [
            client.submit(_call_on_worker, threads, fn, key, item, key=f"rccgrade-{i}-{key}", pure=False, retries=0)
            for i, (key, item) in enumerate(zip(keys, items, strict=True))
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Outcome[R] | None] = [None] * len(items)
        for n, fut in enumerate(as_completed(futures), start=1):
            i = index[fut.key]
            try:
                results[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after worker_failures deaths
                results[i] = Outcome(
                    key=keys[i],
                    ok=False,
                    error=f"dask worker failed: {type(exc).__name__}: {exc} (workers running this case died "
                    f"{settings.worker_failures + 1} times; check worker memory and logs, or raise "
                    "parallel.worker_failures)",
                )
            # Released, so a worker dying later does not make the scheduler recompute a case already gathered.
            fut.release()
            if progress:
                progress(n, len(items))
        return [r for r in results if r is not None]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _set_allowed_failures(client: Any, n: int) -> None:
    """Set the scheduler's ``allowed-failures`` to ``n`` (the study's policy, whatever the scheduler was started with).

    The function is defined locally so it travels by value: the scheduler needs no rccgrade installed.
    """

    def apply(dask_scheduler: Any = None) -> int:
        old = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = n
        return int(old)

    try:
        old = client.run_on_scheduler(apply)
    except Exception as exc:  # noqa: BLE001 - a locked-down scheduler keeps its own setting
        log.warning(
            "could not set allowed-failures=%d on the Dask scheduler (%s); it keeps its own setting "
            "(start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=%d)",
            n,
            exc,
            n,
        )
        return
    if old != n:
        log.info("Dask scheduler allowed-failures: %d → %d (parallel.worker_failures)", old, n)


def failures_table(outcomes: Iterable[Outcome[Any]]) -> list[dict[str, str]]:
    """Rows ``{"patient_id", "error"}`` for every failed outcome (for a ``failures.csv``)."""
    return [{"patient_id": o.key, "error": o.error or ""} for o in outcomes if not o.ok]
