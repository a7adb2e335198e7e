"""Adaptive concurrency for one app: how many of its requests may be in flight.

``AimdLimit`` decides, as TCP and Netflix's concurrency-limits do (additive increase,
multiplicative decrease); it is pure (no threads, no clock), fed outcomes and latencies.
``ConcurrencyGate`` holds the app's threads to it. ``connectors.ratelimit.Traffic``
combines them with the app's request budgets and pause.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class AimdLimit:
    """How many requests may be in flight: halves on a throttled answer (429, a timeout)
    or when a window's latency rises well above its baseline, grows by one after a
    window of good answers; never above ``ceiling`` nor below ``floor``. Pure.

    Callers stamp each request with ``epoch`` when it starts and hand it back with the
    outcome: answers to requests sent before the last decrease say nothing about the
    new limit, so eight threads hitting one 429 wave halve the limit once, not eight
    times (TCP's one decrease per round trip).

    Latency: per kind (reads and writes differ: a 500-account page is no slow POST),
    the baseline is the lowest window median seen, creeping up by ``drift`` of the
    difference after each good window so it follows an app that is simply slower now.
    A window whose median latency / baseline exceeds ``latency_factor`` is congested.
    At the floor a congested window moves the baseline too: there is nothing left to
    give, and the slowness is the app's, not ours.
    """

    ceiling: int
    floor: int = 1
    latency_factor: float = 3.0
    min_window: int = 8
    drift: float = 0.1
    limit: int = 0
    epoch: int = 0
    lowest: int = 0
    decreases: int = 0
    baselines: dict[str, float] = field(default_factory=dict)
    _window: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got {self.floor}, {self.ceiling}")
        self.limit = self.limit or self.ceiling
        self.lowest = self.lowest or self.limit

    def throttled(self, epoch: int) -> None:
        """A request started at ``epoch`` was refused for load (429) or timed out."""
        if epoch == self.epoch:
            self._decrease()

    def answered(self, epoch: int, kind: str, latency: float) -> None:
        """A request started at ``epoch`` was answered (not throttled) in ``latency`` s."""
        if epoch != self.epoch:
            return
        self._window.append((kind, latency))
        if len(self._window) >= max(self.limit, self.min_window):
            self._close_window()

    def _close_window(self) -> None:
        by_kind: dict[str, list[float]] = {}
        for kind, latency in self._window:
            by_kind.setdefault(kind, []).append(latency)
        self._window = []
        medians = {kind: statistics.median(values) for kind, values in by_kind.items()}
        ratios = [m / self.baselines[k] for k, m in medians.items() if self.baselines.get(k)]
        congested = bool(ratios) and max(ratios) > self.latency_factor
        if congested and self.limit > self.floor:
            self._decrease()
            return
        for kind, median in medians.items():
            base = self.baselines.get(kind)
            if not base or median < base:
                self.baselines[kind] = median
            else:
                self.baselines[kind] = base + self.drift * (median - base)
        if not congested:
            self.limit = min(self.ceiling, self.limit + 1)

    def _decrease(self) -> None:
        self.limit = max(self.floor, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self.epoch += 1
        self.decreases += 1
        self._window = []


@dataclass(frozen=True)
class Ticket:
    """One request in flight: when it started and under which epoch of the limit."""

    kind: str
    epoch: int
    started: float


class ConcurrencyGate:
    """Holds an app's threads to the adaptive limit (no limit: never waits)."""

    def __init__(self, limit: AimdLimit | None, *, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._in_flight = 0
        self._cond = threading.Condition()

    def enter(self, kind: str) -> Ticket:
        with self._cond:
            if self.limit is not None:
                while self._in_flight >= self.limit.limit:
                    self._cond.wait()
            self._in_flight += 1
            epoch = self.limit.epoch if self.limit is not None else 0
        return Ticket(kind, epoch, self._clock())

    def leave(self, ticket: Ticket, *, throttled: bool, answered: bool) -> None:
        """``throttled``: the app refused for load; ``answered``: it answered otherwise
        (a latency sample); neither: the request failed some other way (no signal)."""
        latency = self._clock() - ticket.started
        with self._cond:
            self._in_flight -= 1
            if self.limit is not None:
                if throttled:
                    self.limit.throttled(ticket.epoch)
                elif answered:
                    self.limit.answered(ticket.epoch, ticket.kind, latency)
            self._cond.notify_all()
