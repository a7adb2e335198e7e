"""Apps side by side: a Prefect task runner for one sync's per-app tasks, at most ``limit``
at once.

Threads (the default) share the flow's process: its store (a SQLAlchemy engine is safe
across threads; each store call takes its own connection), its logger and the CLI's
progress bar. Dask (prefect-dask's ``DaskTaskRunner``) runs each app in a Dask worker:
what crosses must pickle, so an app task gets configs and plain data, never an open
store or connector, and opens its own there. A Dask cluster costs 2.5-3 s to start and
about 170 ms per task (../shared/PREFECT-NOTES.md): worth it for whole apps, not batches.

The runner is built per run from the configuration, not fixed in the ``@flow`` decorator,
so ``roster.yaml`` and a flow parameter choose it for deployed runs and the CLI alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from prefect.futures import PrefectFuture, wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import Task

T = TypeVar("T")
R = TypeVar("R")


class RunnerKind(StrEnum):
    THREADS = "threads"
    DASK = "dask"


def app_task_runner(
    kind: RunnerKind, limit: int, dask_address: str | None = None
) -> TaskRunner[Any]:
    """A task runner running at most ``limit`` app tasks at once. Dask: a temporary local
    cluster of ``limit`` single-threaded worker processes, or the running cluster at
    ``dask_address`` (whose size then sets the limit)."""
    if kind is RunnerKind.DASK:
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": limit, "threads_per_worker": 1})
    return ThreadPoolTaskRunner(max_workers=limit)


def fan_out(
    runner: TaskRunner[Any],
    task: Task[..., R],
    items: Sequence[T],
    parameters: Callable[[T], dict[str, Any]],
) -> list[R]:
    """Submit ``task`` once per item to ``runner`` and wait for every one; results in the
    items' order. A task that raised is waited out with the others, then its error
    raised (the first in order): one app's crash never cuts another app's apply short."""
    with runner:
        futures: list[PrefectFuture[R]] = [runner.submit(task, parameters(item)) for item in items]
        wait(futures)
        return [future.result() for future in futures]
