"""Progress of a long apply, shown twice from one source: a Prefect progress artifact
(updated after each batch, visible in the UI while the run goes on) and any in-process
listener, such as the CLI's rich progress bar.

Apps apply side by side in threads of one process (``tasks.fanout``): each app has its own
``ApplyProgress`` and artifact, and listeners are called from the app's thread, so a
listener must be thread-safe. Registration is guarded by a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

#: (app, accounts done, accounts planned) -> None; the CLI registers one while a flow runs
Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []
_registering = threading.Lock()


def add_listener(listener: Listener) -> Callable[[], None]:
    """Register ``listener``; returns a function that removes it."""
    with _registering:
        _listeners.append(listener)

    def remove() -> None:
        with _registering:
            _listeners.remove(listener)

    return remove


@dataclass
class ApplyProgress:
    """Counts one app's applied accounts and tells the UI and the listeners."""

    app: str
    total: int
    done: int = 0
    artifact_id: UUID | None = field(default=None, repr=False)
    #: seconds between two updates of the artifact (each is a call to the Prefect API,
    #: about 10 ms of CPU); the listeners and the last update are never skipped
    every: float = 1.0
    _sent_at: float = field(default=float("-inf"), repr=False)

    def start(self) -> None:
        key = "apply-" + "".join(ch if ch.isalnum() else "-" for ch in self.app.lower())
        if self.total:
            artifact_id = create_progress_artifact(
                progress=0.0, key=key, description=f"Accounts applied in {self.app}"
            )
            assert isinstance(artifact_id, UUID)  # sync context: not a coroutine
            self.artifact_id = artifact_id
            self._sent_at = time.monotonic()
        self._notify()

    def advance(self, accounts: int) -> None:
        self.done = min(self.total, self.done + accounts)
        now = time.monotonic()
        due = self.done == self.total or now - self._sent_at >= self.every
        if self.artifact_id is not None and due:
            update_progress_artifact(self.artifact_id, progress=self.percent)
            self._sent_at = now
        self._notify()

    @property
    def percent(self) -> float:
        return 100.0 if not self.total else round(100.0 * self.done / self.total, 1)

    def _notify(self) -> None:
        with _registering:
            listeners = list(_listeners)
        for listener in listeners:
            listener(self.app, self.done, self.total)
