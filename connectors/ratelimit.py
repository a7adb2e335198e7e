"""One app's traffic control, shared by every thread that talks to it.

Issue 7: Roster should get as close to each app's own limit as the app allows, and no
closer. Four parts, each usable alone:

* ``RateLimiter``: a token bucket (a request budget: ``rate`` per second sustained,
  ``burst`` at once). An app has one for reads (GET) and one for writes, or one shared
  by both (the older ``rate_limit`` setting). Spent per attempt, retries included.
* ``Pause``: the app-wide stop a ``Retry-After`` or rate-limit reset header asks for.
  Every thread waits it out, not only the one that got the 429, so the others do not
  walk into more 429s; the buckets restart empty when it ends (the app's own bucket is
  empty, or it would not have said so).
* ``connectors.learnedrate.RateLearner``: for a kind with no budget configured, a rate
  learned from the app's 429s (none until the first), which ``Traffic`` keeps in a
  ``RateLimiter`` of its own (``Traffic(learner=RateLearner)``).
* ``connectors.concurrency.AimdLimit``: adaptive concurrency, as TCP and Netflix's
  concurrency-limits do it (additive increase, multiplicative decrease), and the gate
  that holds the threads to it.

``Traffic`` puts them together for ``connectors.wire.Wire`` and counts what happened
(``TrafficStats``: throttled answers, seconds waited, where the concurrency settled, the
rates learned).
Nothing here sees a request's headers beyond the rate-limit ones, nor any token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from connectors.concurrency import AimdLimit, ConcurrencyGate, Ticket
from connectors.learnedrate import LearnedRate, RateLearner, published_rate

Clock = Callable[[], float]
Sleep = Callable[[float], None]

#: methods that read; everything else spends the write budget
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: an ``X-RateLimit-Reset`` above this is a Unix time (GitHub, Okta), below it seconds
EPOCH_THRESHOLD = 1_000_000_000


class Kind(StrEnum):
    READ = "read"
    WRITE = "write"


def kind_of(method: str) -> Kind:
    return Kind.READ if method.upper() in READ_METHODS else Kind.WRITE


class RateLimiter:
    """A thread-safe token bucket: ``rate_per_second`` sustained, ``burst`` at once.

    ``acquire`` reserves a token under the lock and sleeps outside it, so waiting
    threads queue in order instead of spinning on the lock. ``None`` means no limit.
    """

    def __init__(
        self,
        rate_per_second: float | None,
        burst: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate_per_second
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting if the bucket is empty. Returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def reserve(self) -> float:
        """Take one token now; returns how long the caller must wait before using it."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0  # may go negative: a reservation later callers wait behind
            # the bucket refills from ``_stamp``, later than now after ``drain_until``
            ready = self._stamp + (-self._tokens / self.rate if self._tokens < 0 else 0.0)
            return max(0.0, ready - now)

    def retune(self, rate_per_second: float | None) -> None:
        """A new rate from now on (a learned budget moved; None: no limit any more).
        Tokens earned so far keep the old rate; a bucket that had no limit starts empty
        (it is tuned after a 429: the app's bucket is empty)."""
        if rate_per_second is not None and rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        with self._lock:
            now = self._clock()
            if rate_per_second is None:
                self._tokens = self.burst
            elif self.rate is None:
                self._tokens = 0.0
                self._stamp = max(self._stamp, now)
            else:
                self._refill(now)
            self.rate = rate_per_second

    def drain_until(self, deadline: float) -> None:
        """The app said its own bucket is empty until ``deadline``: ours is too, and it
        refills from then on. Reservations already made keep their place in the queue."""
        if self.rate is None:
            return
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, 0.0)
            self._stamp = max(self._stamp, deadline)

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = max(self._stamp, now)


class Pause:
    """The app-wide pause: until a deadline (on ``clock``) no request of the app is sent.

    The thread whose answer set the deadline sleeps it out in its own retry backoff
    (``Wire``), so it is marked as served for that thread until its next request
    (``forget``); every other thread waits here.
    """

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = float("-inf")
        self._lock = threading.Lock()
        self._local = threading.local()

    def extend(self, seconds: float) -> float:
        """Pause for ``seconds`` from now, never shortening a longer pause. Returns the
        deadline; when this call set it, the calling thread will sleep it out itself."""
        with self._lock:
            wanted = self._clock() + seconds
            if wanted > self._until:
                self._until = wanted
                self._local.served = wanted
            return self._until

    def forget(self) -> None:
        """A new request of this thread: it has slept through no deadline yet."""
        self._local.served = None

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())

    def wait(self) -> float:
        """Sleep until the pause ends; again if it was extended meanwhile. Returns the
        seconds slept. Each deadline is slept for once, so an injected sleep that only
        records (tests) cannot loop forever."""
        slept = 0.0
        seen: float | None = getattr(self._local, "served", None)
        while True:
            with self._lock:
                deadline = self._until
                remaining = deadline - self._clock()
            if remaining <= 0 or deadline == seen:
                return slept
            self._sleep(remaining)
            slept += remaining
            seen = deadline


def pause_seconds(
    status: int,
    headers: Mapping[str, str],
    *,
    retry_after: float | None,
    wall_clock: Clock = time.time,
) -> float | None:
    """How long the app asks everyone to stop, from one answer's headers; None: no pause.

    * a 429 or 503 with ``Retry-After`` (RFC 9110 §10.2.3; parsed by the caller);
    * ``RateLimit-Remaining: 0`` or ``X-RateLimit-Remaining: 0`` (any status), or a 429
      without ``Retry-After``, with a reset header: ``RateLimit-Reset`` (seconds, IETF
      draft-ietf-httpapi-ratelimit-headers) or ``X-RateLimit-Reset`` (a Unix time when
      it looks like one, GitHub style; else seconds).
    """
    if status in (429, 503) and retry_after is not None:
        return retry_after
    exhausted = any(
        headers.get(name, "").strip() == "0"
        for name in ("RateLimit-Remaining", "X-RateLimit-Remaining")
    )
    if not exhausted and status != 429:
        return None
    for name in ("RateLimit-Reset", "X-RateLimit-Reset"):
        value = _number(headers.get(name))
        if value is None:
            continue
        if value > EPOCH_THRESHOLD:
            return max(0.0, value - wall_clock())
        return value
    return None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < float("inf") else None


# -- one app's traffic ----------------------------------------------------------------


@dataclass(frozen=True)
class TrafficStats:
    """What one app's traffic control did in a run (for logs and reports)."""

    sent: int
    throttled: int
    waited: float
    paused: int
    concurrency: int | None
    lowest: int | None
    learned: tuple[LearnedRate, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.concurrency is not None:
            parts.append(f"concurrency settled at {self.concurrency} (lowest {self.lowest})")
        parts += [learned.describe() for learned in self.learned]
        parts.append(f"429s: {self.throttled} of {self.sent} requests")
        parts.append(
            f"threads waited {self.waited:.1f} s in all for budgets and pauses"
            f" ({self.paused} pauses)"
        )
        return ", ".join(parts)


class Traffic:
    """One app's budgets, pause and adaptive limit, shared by its threads.

    ``reads`` and ``writes`` may be the same ``RateLimiter`` (one shared budget) or None
    (no budget). With ``learner`` (``RateLearner`` or a factory of tuned ones), a kind
    with no budget gets one learned from the app's 429s (``connectors.learnedrate``).
    ``max_pause`` caps how long one header can stop the app.
    """

    def __init__(
        self,
        name: str,
        *,
        reads: RateLimiter | None = None,
        writes: RateLimiter | None = None,
        adaptive: AimdLimit | None = None,
        learner: Callable[[], RateLearner] | None = None,
        max_pause: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self.budgets = {Kind.READ: reads, Kind.WRITE: writes}
        #: per kind with no budget (when learning): the learner and the bucket it tunes
        self.learned: dict[Kind, tuple[RateLearner, RateLimiter]] = {
            kind: (learner(), RateLimiter(None, clock=clock, sleep=sleep))
            for kind, budget in self.budgets.items()
            if learner is not None and budget is None
        }
        self.pause = Pause(clock=clock, sleep=sleep)
        self.gate = ConcurrencyGate(adaptive, clock=clock)
        self.max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._logger = logger or logging.getLogger("roster.connectors.ratelimit")
        self._lock = threading.Lock()
        self._sent = self._throttled = self._pauses = 0
        self._waited = 0.0

    def begin(self) -> None:
        """A new logical request of the calling thread (its retries follow)."""
        self.pause.forget()

    def enter(self, method: str) -> Ticket:
        """Wait for a slot under the adaptive limit, a token of the method's budget and the
        end of any pause, in that order; the pause is checked last, right before sending,
        so a pause that began while this thread waited for its token still holds it."""
        kind = kind_of(method)
        ticket = self.gate.enter(kind)
        budget = self._budget(kind)
        try:
            waited = budget.acquire() if budget is not None else 0.0
            waited += self.pause.wait()
        except BaseException:  # interrupted while waiting: the slot is given back
            self.gate.leave(ticket, throttled=False, answered=False)
            raise
        now = self._clock()
        with self._lock:
            self._sent += 1
            self._waited += waited
            if kind in self.learned:
                self._tune(kind, lambda learner: learner.sent(now))
        if waited > 0:
            self._logger.debug("app %s: waited %.2fs for the %s budget", self.name, waited, kind)
        return Ticket(ticket.kind, ticket.epoch, now)  # latency from the send

    def _budget(self, kind: Kind) -> RateLimiter | None:
        """The configured budget of ``kind``, else its learned one, if any."""
        budget = self.budgets[kind]
        if budget is None and kind in self.learned:
            budget = self.learned[kind][1]
        return budget

    def _tune(self, kind: Kind, event: Callable[[RateLearner], None]) -> None:
        """Feed ``kind``'s learner one event (under ``_lock``); retune its bucket when the
        learned rate moved."""
        learner, bucket = self.learned[kind]
        before = learner.rate
        event(learner)
        if learner.rate != before:
            bucket.retune(learner.rate)
            if learner.rate is None:
                self._logger.info(
                    "app %s: its 429s came whatever the %s pace: no %s rate learned",
                    self.name,
                    kind,
                    kind,
                )
            else:
                self._logger.debug("app %s: learned %s rate %.3f/s", self.name, kind, learner.rate)

    def _learn(self, ticket: Ticket, status: int | None, headers: Mapping[str, str]) -> None:
        """What an answer says about the app's rate for the request's kind."""
        kind = Kind(ticket.kind)
        if status is None or kind not in self.learned:
            return
        # a quota is only worth reading once the app refuses: it caps and starts the
        # learned rate, and two header lookups on every answer cost a create ~1% of its CPU
        now = self._clock()
        published = published_rate(headers) if status == 429 else None
        with self._lock:
            if published is not None:
                self._tune(kind, lambda learner: learner.published(published))
            if status == 429:
                self._tune(kind, lambda learner: learner.throttled(ticket.started, now))
            else:
                self._tune(kind, lambda learner: learner.accepted(ticket.started))

    def leave(
        self,
        ticket: Ticket,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> float | None:
        """Record an attempt's outcome; returns the pause it started, if any."""
        throttled = status == 429 or timed_out
        self.gate.leave(ticket, throttled=throttled, answered=status is not None and not throttled)
        self._learn(ticket, status, headers or {})
        seconds = None
        if status is not None:
            seconds = pause_seconds(status, headers or {}, retry_after=retry_after)
        with self._lock:
            self._throttled += status == 429
        if seconds is None or seconds <= 0:
            return None
        seconds = min(seconds, self.max_pause)
        deadline = self.pause.extend(seconds)
        buckets = [*self.budgets.values(), *(bucket for _, bucket in self.learned.values())]
        for budget in {id(b): b for b in buckets if b is not None}.values():
            budget.drain_until(deadline)
        with self._lock:
            self._pauses += 1
        self._logger.debug("app %s: paused for %.2fs (status %s)", self.name, seconds, status)
        return seconds

    def stats(self) -> TrafficStats:
        limit = self.gate.limit
        with self._lock:
            return TrafficStats(
                sent=self._sent,
                throttled=self._throttled,
                waited=self._waited,
                paused=self._pauses,
                concurrency=limit.limit if limit is not None else None,
                lowest=limit.lowest if limit is not None else None,
                learned=tuple(
                    LearnedRate(str(kind), learner.rate, learner.throttles, learner.gave_up)
                    for kind, (learner, _) in self.learned.items()
                    if learner.rate is not None or learner.gave_up
                ),
            )
