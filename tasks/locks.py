"""One run writes to an app at a time.

Two syncs of one app at once would each see the other's new accounts as missing and
create them again. A run therefore holds the app's lock in the directory database
(``directory.locks``) while it plans and applies, renewing it from a background thread; a
second run waits up to ``wait`` seconds and then stops with a message naming the holder.
A run killed with its lock held stops renewing; the lock expires after ``LOCK_TTL`` and the
next run takes it over, so a crash never blocks an app for good. On the machine the dead
run ran on, the next run sees its process is gone and takes the lock over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from directory.errors import AppLockedError
from directory.store import LockState, Store

#: how long a lock outlives its holder's last renewal
LOCK_TTL = timedelta(minutes=5)
#: seconds between attempts while waiting for a lock
POLL_SECONDS = 1.0

logger = logging.getLogger("roster.locks")


def lock_holder(run_id: str) -> str:
    """Who we are, in words the next run's message can show (``host:pid:run id``)."""
    return f"{socket.gethostname()}:{os.getpid()}:run {run_id}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder ran on this machine and its process is gone; a holder
    elsewhere can only be waited out (its lock expires)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


@contextmanager
def app_lock(
    store: Store, app: str, holder: str, *, wait: float = 0, ttl: timedelta | None = None
) -> Iterator[LockState]:
    """Hold ``app``'s lock for the block; raises ``AppLockedError`` after ``wait`` seconds."""
    ttl = ttl or LOCK_TTL
    state = _acquire(store, app, holder, wait, ttl)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(store, app, holder, ttl, stop), name=f"lock-{app}", daemon=True
    )
    renewer.start()
    try:
        yield state
    finally:
        stop.set()
        renewer.join()
        store.release_app_lock(app, holder)


def _acquire(store: Store, app: str, holder: str, wait: float, ttl: timedelta) -> LockState:
    deadline = time.monotonic() + wait
    while True:
        state = store.try_lock_app(app, holder, ttl)
        if state.held_by(holder):
            return state
        if holder_is_dead(state.holder) and store.take_over_app_lock(
            app, state.holder, holder, ttl
        ):
            logger.warning("took over the lock on app %s from %s (gone)", app, state.holder)
            continue
        if time.monotonic() >= deadline:
            raise AppLockedError(
                f"app {app} is being synced by another run ({state.holder}, since"
                f" {state.acquired_at:%Y-%m-%d %H:%M:%S} UTC); its lock expires at"
                f" {state.expires_at:%H:%M:%S} UTC unless renewed. Try again later, or"
                " wait for it with --wait-for-lock SECONDS"
            )
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _renew(store: Store, app: str, holder: str, ttl: timedelta, stop: threading.Event) -> None:
    """Renew at a third of the TTL, so two missed renewals still leave the lock ours."""
    while not stop.wait(ttl.total_seconds() / 3):
        try:
            if not store.renew_app_lock(app, holder, ttl):
                logger.error("lost the lock on app %s: another run took it over", app)
                return
        except Exception as exc:  # a database hiccup: try again at the next tick
            logger.warning("could not renew the lock on app %s: %s", app, exc)
