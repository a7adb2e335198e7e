"""A rich progress bar on stderr, one line per app, fed by ``tasks.progress`` listeners.

Apps sync side by side (``parallel_apps``), so the listener is called from several
threads at once; rich's ``Progress`` locks its own state, and the bar table here is
guarded by a lock of its own. Apps synced on Dask worker processes report to the Prefect
UI's progress artifacts only: their listeners live in other processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TaskID as BarId


@contextmanager
def apply_progress(console: Console, label: str) -> Iterator[None]:
    """While the block runs, ``label`` pulses until work starts; then every app's apply
    shows as a bar (only apps with work). Transient: gone when the block ends."""
    from tasks.progress import add_listener

    bars: dict[str, BarId] = {}
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        waiting = progress.add_task(label, total=None)

        def update(app: str, done: int, total: int) -> None:
            if not total:
                return
            with lock:
                if app not in bars:
                    progress.update(waiting, visible=False)
                    bars[app] = progress.add_task(app, total=total)
                bar = bars[app]
            progress.update(bar, completed=done)

        remove = add_listener(update)
        try:
            yield
        finally:
            remove()
