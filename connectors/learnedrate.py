"""A request rate learned from an app's 429s, for a kind (reads or writes) with no budget.

Issue 7: with no ``rate_limits`` configured, adaptive concurrency alone cannot cap a
*rate* (one request in flight is still a hundred writes a second), so an app with a
per-minute limit answers about one write in four with 429. ``RateLearner`` learns the
rate instead. It is pure (no threads, no clock): ``connectors.ratelimit.Traffic`` feeds it
each answer with the time its request was sent, and turns ``rate`` into a token bucket.

How it learns:

* **No limit until the first 429.** That 429 is the *anchor*: the app's bucket is empty
  at that moment. Requests accepted before it are not counted (the initial burst says
  nothing about the sustained rate).
* **Estimate between two 429s.** At a later 429 the app's bucket is empty again, so the
  requests it accepted in between (sent after the anchor) are what it refilled: for a
  token bucket, accepted / seconds between the two sends is its rate, whatever Roster
  did in between, or a little less when the app's bucket was full for a while (it
  refills no further: Roster waited out a ``Retry-After`` longer than the app's burst
  takes to refill, or sat well under the rate). Over a span long enough to mean
  something (``min_accepted`` answers and ``min_span`` seconds) the rate is set a
  ``margin`` under the estimate and the 429 becomes the next anchor. Before that, the
  first 429 at least ``first_span`` after the anchor gives a first, rough rate from what
  was accepted so far (so learning costs a pause or two, not one per second); any
  other 429 backs the rate off by ``backoff`` (multiplicative), never below ``floor``
  nor, once there is an estimate, below ``trust`` (half) of it: only an estimate
  moves the rate further down, so 429s that are not about a rate cannot ratchet it.
  A 429 sent before the last change is part of the wave that caused it and changes
  nothing (as TCP decreases once per round trip). Answers are counted by when their
  request was *sent*: one still in flight when a 429 closed a span is counted in it when
  it comes, and revises the rate that span set (until something else changed it).
* **Probe upward gently.** After each ``window`` (seconds, and at least ten requests'
  time) in which Roster kept the bucket busy (sent at least ``busy`` of what the rate
  allowed) without a 429, the rate grows by ``probe``, the step doubling per further
  quiet window (up to ``max_step``): a low first estimate, or an app whose limit rose,
  is found in a few windows. Once an estimate confirms the previous one (within twice
  the ``margin``), probing first waits ``plateau`` quiet windows, twice as many at each
  further confirmation (up to ``max_plateau``): near a limit that does not move, Roster
  sits just under it and probes, and meets a 429, ever more rarely. An estimate that
  moved (the limit changed) starts probing at once again.
* **Give up when the 429s follow Roster's pace.** Under a rate limit, Roster a margin
  under an estimate meets no 429 until it probes above the limit, so the next estimate
  confirms the last (or the limit fell, once). When ``give_up_after`` estimates in a row
  each come out under the one before, the 429s are not a rate limit (faults, an app that
  refuses for other reasons): the learner drops its rate for the rest of the run
  (``gave_up``), and Roster's traffic line says so. This is why learning is opt-in
  (``adaptive.learn_rate``): it costs a slower start wherever 429s mean something else.

Headers: a published quota with its window (``RateLimit-Policy`` or ``RateLimit-Limit``
in the IETF draft's ``10;w=1`` form, draft-ietf-httpapi-ratelimit-headers), read from the
app's 429 answers, caps the learned rate and gives it a start at the first 429
(``published_rate``). A bare
``X-RateLimit-Limit`` is ignored: it names no window (GitHub's is per hour, Okta's per
minute), and guessing one would be worse than learning. ``X-RateLimit-Remaining: 0``
already pauses the app (``connectors.ratelimit.pause_seconds``); it is not an anchor here,
since apps send it for a shared quota that another client may have spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LearnedRate:
    """The rate learned for one kind (requests per second) and from how many 429s."""

    kind: str
    per_second: float | None
    throttles: int
    #: the 429s came whatever pace Roster kept: not a rate limit, nothing learned
    gave_up: bool = False

    def describe(self) -> str:
        if self.gave_up or self.per_second is None:
            return f"no {self.kind} rate learned: its {self.throttles} 429s came whatever the pace"
        return f"learned {self.kind} rate {self.per_second:.2f}/s from {self.throttles} 429s"


@dataclass
class Span:
    """Between two 429s (send times): what the app accepted; ``full``: long enough for an
    estimate, else a first, rough rate."""

    start: float
    end: float
    accepted: int
    full: bool

    @property
    def rate(self) -> float:
        return self.accepted / (self.end - self.start)


@dataclass
class RateLearner:
    """One kind's learned rate (requests per second; None: no limit yet). Pure: every
    call carries its own times. See the module docstring for the method."""

    floor: float = 0.05
    margin: float = 0.02
    backoff: float = 0.7
    probe: float = 0.01
    max_step: float = 0.25
    window: float = 5.0
    busy: float = 0.8
    plateau: int = 4
    max_plateau: int = 32
    min_accepted: int = 20
    min_span: float = 2.0
    first_span: float = 1.0
    trust: float = 0.5
    give_up_after: int = 3
    rate: float | None = None
    gave_up: bool = False
    ceiling: float | None = None
    estimate: float | None = None
    throttles: int = 0
    _anchor: float | None = None
    _accepted: int = 0
    _changed: float = float("-inf")
    _window_start: float | None = None
    _window_sent: int = 0
    _quiet: int = 0
    _plateau: int = 0
    _span: Span | None = None
    _falls: int = 0
    _best: float | None = None

    def __post_init__(self) -> None:
        if self.floor <= 0:
            raise ValueError(f"floor must be positive, got {self.floor}")

    def published(self, rate: float | None) -> None:
        """The app published its quota (``published_rate``): the learned rate stays
        under it."""
        if rate is not None and rate > 0:
            self.ceiling = rate
            if self.rate is not None:
                self.rate = self._bounded(self.rate)

    def sent(self, now: float) -> None:
        """A request of this kind leaves at ``now``; closes a probing window when due."""
        if self.rate is None:
            return
        if self._window_start is None:
            self._window_start = now
        self._window_sent += 1
        span = now - self._window_start
        if span >= max(self.window, 10 / self.rate):
            self._close_window(span)
            self._window_start, self._window_sent = now, 0

    def accepted(self, sent_at: float) -> None:
        """The app answered a request sent at ``sent_at`` with anything but 429: it spent
        a token of its bucket on it. One sent inside the span that set the rate, but
        answered after the 429 that closed it, still belongs to it: the rate is revised."""
        if self.gave_up:
            return
        if self._anchor is not None and sent_at >= self._anchor:
            self._accepted += 1
        span = self._span
        if span is not None and span.start <= sent_at < span.end:
            span.accepted += 1
            self._set(span)

    def throttled(self, sent_at: float, now: float) -> None:
        """The app answered 429 to a request sent at ``sent_at``: its bucket is empty."""
        self.throttles += 1
        if self.gave_up or sent_at < self._changed:
            return  # the wave that caused the last change
        self._changed = now
        self._quiet, self._window_start, self._window_sent = 0, None, 0
        self._span = None
        if self._anchor is None:
            self._restart(sent_at)
            if self.ceiling is not None:
                self.rate = self._bounded(self.ceiling)
            return
        span = sent_at - self._anchor
        if self._accepted >= self.min_accepted and span >= self.min_span:
            self._learn(Span(self._anchor, sent_at, self._accepted, full=True))
            self._restart(sent_at)
        elif self.rate is None and self._accepted and span >= self.first_span:
            self._span = Span(self._anchor, sent_at, self._accepted, full=False)
            self._set(self._span)
        elif self.rate is not None:
            self.rate = self._bounded(max(self.rate * self.backoff, self._trusted()))

    def _learn(self, span: Span) -> None:
        estimate = span.rate
        # Under a rate limit, Roster a margin under an estimate meets no 429 until it
        # probes above the limit, so the next estimate confirms the last (or the limit
        # fell, once). 429s that keep coming below each estimate follow Roster's own pace
        # (injected faults, an app refusing for other reasons): learning from them would
        # only slow Roster down, step by step, so it stops.
        falling = self.estimate is not None and estimate < self.estimate * (1 - self.margin)
        self._falls = self._falls + 1 if falling else 0
        if self._falls >= self.give_up_after:
            self.gave_up, self.rate, self._span = True, None, None
            return
        confirmed = (
            self.estimate is not None and abs(estimate / self.estimate - 1) <= 2 * self.margin
        )
        # an estimate that moved: the limit changed, probe again soon; else less often
        doubled = max(self.plateau, self._plateau * 2)
        self._plateau = min(self.max_plateau, doubled) if confirmed else 0
        self._span = span
        self._set(span)

    def _set(self, span: Span) -> None:
        """The rate from ``span``, a ``margin`` under what the app accepted in it."""
        if span.full:
            self.estimate = span.rate
        self._best = max(self._best or 0.0, span.rate)
        self.rate = self._bounded(span.rate * (1 - self.margin))

    def _trusted(self) -> float:
        """How far 429s alone (too close together for an estimate) may push the rate:
        half the last estimate, or, before there is one, half the best rate the app was
        seen to accept. A 429 that says nothing of a rate (an app refusing concurrent
        requests, a stray one) must not ratchet Roster down for good; a limit that
        really fell is learnt from the next span between two 429s."""
        known = self.estimate if self.estimate is not None else self._best
        return self.trust * known if known is not None else self.floor

    def _close_window(self, span: float) -> None:
        assert self.rate is not None
        if self._window_sent < self.busy * self.rate * span:
            return  # Roster was not pressing on the budget: nothing was tested
        self._quiet += 1
        beyond = self._quiet - self._plateau
        if beyond > 0:
            step = min(self.max_step, self.probe * 2 ** (beyond - 1))
            self.rate = self._bounded(self.rate * (1 + step))
            self._span = None

    def _restart(self, anchor: float) -> None:
        self._anchor, self._accepted = anchor, 0

    def _bounded(self, rate: float) -> float:
        if self.ceiling is not None:
            rate = min(rate, self.ceiling * (1 - self.margin))
        return max(self.floor, rate)


def published_rate(headers: Mapping[str, str]) -> float | None:
    """Requests per second from a quota with its window, None when none is given: the
    IETF draft's ``RateLimit-Policy: "default";q=100;w=60`` or the older
    ``RateLimit-Limit: 100, 100;w=60``. The smallest rate wins (all of them bind)."""
    rates = []
    for name in ("RateLimit-Policy", "RateLimit-Limit"):
        for item in headers.get(name, "").split(","):
            rate = _quota_rate(item)
            if rate is not None:
                rates.append(rate)
    return min(rates) if rates else None


def _quota_rate(item: str) -> float | None:
    """``100;w=60`` or ``"name";q=100;w=60``: quota / window; None without a window."""
    first, *params = (part.strip() for part in item.split(";"))
    values = dict(p.partition("=")[::2] for p in params)
    quota, window = _positive(values.get("q", first)), _positive(values.get("w"))
    return quota / window if quota is not None and window is not None else None


def _positive(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < float("inf") else None
