"""Request budgets, the app-wide pause and adaptive concurrency (issue 7).

The pieces are pure or clock-injected and tested with a fake clock; then Roster runs
against a real scim2-server process behind ``bench.faultproxy.WriteLimit``, an app that
enforces a published write limit with 429 and ``Retry-After`` (or reset headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.faultproxy import FaultProxy, WriteLimit
from connectors.build import traffic
from connectors.concurrency import AimdLimit
from connectors.http import build_client
from connectors.ratelimit import (
    Kind,
    Pause,
    RateLimiter,
    Traffic,
    kind_of,
    pause_seconds,
)
from connectors.scim import ScimConnector
from connectors.wire import Wire
from directory.config import DEFAULT_MAPPING, ConfigError
from flows.sync import sync
from tasks import session
from tests.scim_apps import TOKEN, standalone_scim
from tests.sync_env import Installation, people
from tests.traffic_support import FakeClock, load


def error_of(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, extra)
    return str(error.value)


# -- configuration ----------------------------------------------------------------------


def test_rate_limits_give_separate_read_and_write_budgets(tmp_path: Path) -> None:
    app = load(
        tmp_path,
        """    concurrency: 8
    rate_limits:
      reads: {per_second: 50}
      writes: {per_minute: 180, burst: 20}
""",
    )
    assert app.rate_limits is not None and app.rate_limits.writes is not None
    assert app.rate_limits.writes.rate_per_second == 3.0
    built = traffic(app)
    reads, writes = built.budgets[Kind.READ], built.budgets[Kind.WRITE]
    assert reads is not None and writes is not None and reads is not writes
    assert (reads.rate, reads.burst, writes.rate) == (50, 1, 3.0)
    assert writes.burst == 19  # one token of the app's burst in hand (connectors.build.bucket)
    assert built.gate.limit is not None and built.gate.limit.limit == 8  # starts at the ceiling


def test_defaults_no_budget_and_adaptive_concurrency_up_to_the_ceiling(tmp_path: Path) -> None:
    app = load(tmp_path, "")
    assert app.rate_limits is None and app.adaptive.enabled and app.adaptive.min == 1
    built = traffic(app)
    assert built.budgets == {Kind.READ: None, Kind.WRITE: None}
    assert built.gate.limit is not None
    assert (built.gate.limit.ceiling, built.gate.limit.floor) == (4, 1)


def test_the_older_rate_limit_is_one_budget_for_reads_and_writes(tmp_path: Path) -> None:
    built = traffic(load(tmp_path, "    rate_limit: 5\n    adaptive: false\n"))
    assert built.budgets[Kind.READ] is built.budgets[Kind.WRITE]
    assert built.budgets[Kind.READ] is not None and built.budgets[Kind.READ].rate == 5
    assert built.gate.limit is None  # adaptive: false keeps concurrency fixed


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    rate_limits:\n      writes: {per_second: 3, per_minute: 180}\n",
            "apps[0].rate_limits.writes: Value error, set exactly one of per_second and per_minute",
        ),
        (
            "    rate_limits:\n      reads: {burst: 5}\n",
            "apps[0].rate_limits.reads: Value error, set exactly one of per_second and per_minute",
        ),
        (
            "    rate_limits:\n      writes: {per_minute: 180, burst: 0}\n",
            "apps[0].rate_limits.writes.burst: Input should be greater than or equal to 1",
        ),
        (
            "    rate_limits:\n      writes: {per_minute: -1}\n",
            "apps[0].rate_limits.writes.per_minute: Input should be greater than 0",
        ),
        (
            "    rate_limits:\n      writes: {per_hour: 10}\n",
            "apps[0].rate_limits.writes.per_hour: Extra inputs are not permitted",
        ),
        (
            "    rate_limit: 5\n    rate_limits:\n      writes: {per_second: 1}\n",
            "apps[0]: Value error, rate_limit (one budget for all requests) and rate_limits",
        ),
        (
            "    concurrency: 2\n    adaptive: {min: 3}\n",
            "apps[0]: Value error, adaptive.min (3) is above concurrency (2), the ceiling",
        ),
        (
            "    adaptive: {latency_factor: 1}\n",
            "apps[0].adaptive.latency_factor: Input should be greater than 1",
        ),
    ],
)
def test_bad_rate_settings_name_the_field(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in error_of(tmp_path, extra)


# -- budgets and the pause, on a fake clock -----------------------------------------------


def test_a_per_minute_budget_allows_its_burst_then_spaces_requests() -> None:
    clock = FakeClock()
    bucket = RateLimiter(180 / 60, burst=20, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(23)]
    assert waits[:20] == [0.0] * 20
    assert waits[20:] == pytest.approx([1 / 3] * 3)
    clock.now += 60  # a quiet minute refills the bucket, up to the burst only
    assert [bucket.acquire() for _ in range(21)][-2:] == pytest.approx([0.0, 1 / 3])


def test_draining_the_bucket_restarts_it_empty_at_the_deadline() -> None:
    clock = FakeClock()
    bucket = RateLimiter(10, burst=5, clock=clock, sleep=clock.sleep)
    bucket.drain_until(clock.now + 2)
    assert bucket.acquire() == pytest.approx(2.1)  # the deadline, then one token's time


def test_the_pause_holds_until_its_deadline_and_never_shortens() -> None:
    clock = FakeClock()
    pause = Pause(clock=clock, sleep=clock.sleep)
    assert pause.wait() == 0.0
    pause.extend(5)
    pause.extend(2)  # a shorter pause asked later does not cut the longer one
    pause.forget()  # another request of this thread: it has slept through nothing
    assert pause.wait() == pytest.approx(5.0) and pause.remaining() == 0.0


def test_pause_seconds_reads_retry_after_and_reset_headers() -> None:
    wall = lambda: 1_700_000_000.0  # noqa: E731
    assert pause_seconds(429, {}, retry_after=7.0) == 7.0
    assert pause_seconds(503, {}, retry_after=3.0) == 3.0
    assert pause_seconds(429, {}, retry_after=None) is None  # nothing said: per-thread backoff
    assert pause_seconds(429, {"RateLimit-Reset": "12"}, retry_after=None) == 12.0
    epoch = {"X-RateLimit-Reset": "1700000030"}
    assert pause_seconds(429, epoch, retry_after=None, wall_clock=wall) == 30.0
    exhausted = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000004"}
    assert pause_seconds(200, exhausted, retry_after=None, wall_clock=wall) == 4.0
    left = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "1700000004"}
    assert pause_seconds(200, left, retry_after=None, wall_clock=wall) is None
    assert pause_seconds(429, {"RateLimit-Reset": "soon"}, retry_after=None) is None


def test_a_throttled_answer_pauses_every_budget_and_thread() -> None:
    clock = FakeClock()
    writes = RateLimiter(100, burst=10, clock=clock, sleep=clock.sleep)
    traffic = Traffic("chat", writes=writes, clock=clock, sleep=clock.sleep)
    ticket = traffic.enter("POST")
    assert traffic.leave(ticket, status=429, headers={}, retry_after=2.0) == 2.0
    other = threading.Thread(target=lambda: traffic.enter("GET"))  # reads have no budget
    other.start()
    other.join()
    assert clock.slept == [pytest.approx(2.0)]  # the read waited out the write's pause
    traffic.enter("POST")  # the write budget restarts empty after the pause
    assert clock.slept[1:] == [pytest.approx(0.01)]
    stats = traffic.stats()
    assert (stats.sent, stats.throttled, stats.paused) == (3, 1, 1)
    assert stats.waited == pytest.approx(2.01)
    assert "429s: 1 of 3 requests" in stats.describe()


def test_methods_spend_the_read_or_the_write_budget() -> None:
    assert [kind_of(m) for m in ("GET", "head", "POST", "PUT", "PATCH", "DELETE")] == [
        Kind.READ,
        Kind.READ,
        Kind.WRITE,
        Kind.WRITE,
        Kind.WRITE,
        Kind.WRITE,
    ]


# -- adaptive concurrency (pure) ------------------------------------------------------------


def fill_window(limit: AimdLimit, latency: float, kind: str = "write") -> None:
    for _ in range(max(limit.limit, limit.min_window)):
        limit.answered(limit.epoch, kind, latency)


def test_aimd_halves_once_per_wave_of_429s() -> None:
    limit = AimdLimit(ceiling=16)
    started = limit.epoch
    for _ in range(8):  # eight requests in flight, all refused
        limit.throttled(started)
    assert limit.limit == 8 and limit.decreases == 1
    limit.throttled(limit.epoch)  # a request sent after the decrease: a new signal
    assert limit.limit == 4
    limit.answered(started, "write", 0.01)  # answers from before the decrease are stale
    assert limit._window == []


def test_aimd_recovers_by_one_per_window_up_to_the_ceiling_and_never_below_the_floor() -> None:
    limit = AimdLimit(ceiling=4, floor=2)
    for _ in range(5):
        limit.throttled(limit.epoch)
    assert limit.limit == 2 and limit.lowest == 2
    fill_window(limit, 0.01)
    assert limit.limit == 3
    for _ in range(5):
        fill_window(limit, 0.01)
    assert limit.limit == 4  # the ceiling: the app's concurrency


def test_aimd_halves_when_latency_rises_well_above_its_baseline() -> None:
    limit = AimdLimit(ceiling=16, latency_factor=3.0)
    fill_window(limit, 0.010)  # the baseline
    fill_window(limit, 0.025)  # slower, within the factor: still good
    assert limit.limit == 16 and limit.decreases == 0
    fill_window(limit, 0.080)  # 8x the baseline
    assert limit.limit == 8 and limit.decreases == 1


def test_aimd_keeps_a_baseline_per_kind() -> None:
    """A 500-account page is slow and a POST is fast: neither is congestion."""
    limit = AimdLimit(ceiling=4)
    fill_window(limit, 0.5, "read")
    fill_window(limit, 0.01, "write")
    fill_window(limit, 0.6, "read")
    assert limit.decreases == 0 and set(limit.baselines) == {"read", "write"}


def test_at_the_floor_a_slower_app_becomes_the_new_baseline() -> None:
    limit = AimdLimit(ceiling=2, min_window=4)
    fill_window(limit, 0.01)
    fill_window(limit, 0.1)
    assert limit.limit == 1
    for _ in range(40):  # the app stays slow: nothing left to give; the baseline follows
        fill_window(limit, 0.1)
    assert limit.limit == 2 and limit.baselines["write"] > 0.03


class Busy(httpx.BaseTransport):
    """Answers 200 after a short while, counting how many requests were in at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.02)
        with self.lock:
            self.now -= 1
        return httpx.Response(200, json={})


def wire_over(transport: httpx.BaseTransport, control: Traffic) -> Wire:
    client = httpx.Client(transport=transport, base_url="http://app.test")
    return Wire("app", client, logger=logging.getLogger("test"), rate_limiter=control)


def test_the_gate_holds_the_threads_to_the_adaptive_limit() -> None:
    busy = Busy()
    control = Traffic("app", adaptive=AimdLimit(ceiling=8))
    control.gate.limit.limit = 2  # type: ignore[union-attr]  # as after two halvings
    control.gate.limit.min_window = 10_000  # type: ignore[union-attr]  # no recovery here
    wire = wire_over(busy, control)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: wire.send("GET", "/Users", check=lambda *a: None), range(24)))
    assert busy.most == 2


def test_a_request_that_raises_gives_its_in_flight_slot_back() -> None:
    class Broken(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            raise RuntimeError("not an httpx error")

    control = Traffic("app", adaptive=AimdLimit(ceiling=1))
    wire = wire_over(Broken(), control)
    with pytest.raises(RuntimeError):
        wire.send("GET", "/Users", check=lambda *a: None)
    assert control.gate._in_flight == 0


# -- against a rate-limited app ---------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with standalone_scim(["chat", "pause", "reset"]) as root:
        yield root


class SendTimes(httpx.BaseTransport):
    """The real network, recording when each request leaves."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[float] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.sent.append(time.monotonic())
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class RecordedPause(Pause):
    """Remembers each pause it was asked for: (from, until)."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[tuple[float, float]] = []

    def extend(self, seconds: float) -> float:
        start = time.monotonic()
        deadline = super().extend(seconds)
        self.windows.append((start, deadline))
        return deadline


#: a request that passed the gate just before a 429 came in leaves a moment later
GRACE = 0.05


@pytest.mark.parametrize("style", ["retry-after", "reset"])
def test_a_429_pauses_every_thread_until_the_app_says(upstream: str, style: str) -> None:
    """No budget configured: four threads learn the limit from 429s. After each, nothing
    leaves until the pause ends, and every account is created."""
    tenant = "pause" if style == "retry-after" else "reset"
    limit = WriteLimit(20 * 60, 5, style=style)
    sends = SendTimes()
    with FaultProxy(upstream, limit=limit) as proxy:
        client = build_client(
            f"{proxy.url}/{tenant}/v2",
            TOKEN,
            timeout=10,
            verify_tls=True,
            concurrency=4,
            transport=sends,
        )
        control = Traffic(tenant, adaptive=AimdLimit(ceiling=4))
        control.pause = RecordedPause()
        scim = ScimConnector(
            tenant, client, paths=list(DEFAULT_MAPPING), rate_limiter=control, max_retries=8
        )
        with ThreadPoolExecutor(max_workers=4) as pool:
            made = list(pool.map(lambda i: scim.create_account({"userName": f"p{i}"}), range(40)))
        scim.close()
    windows = control.pause.windows
    assert len(made) == 40 and limit.counts()["admitted"] == 40
    assert windows and limit.refusals  # the limit was hit and the app paused
    during = [t for t in sends.sent for start, end in windows if start + GRACE < t < end]
    assert during == []
    stats = control.stats()
    assert stats.throttled == len(limit.refusals) and stats.lowest is not None
    assert stats.lowest < 4  # the 429s halved the in-flight limit


def test_a_sync_within_the_configured_budget_creates_everyone_without_429s(
    upstream: str, make_installation: Callable[..., Installation]
) -> None:
    """100 users through an app allowing 20 writes/s, burst 5, with that budget set."""
    limit = WriteLimit(20 * 60, 5)
    with FaultProxy(upstream, limit=limit) as proxy:
        env = make_installation(
            ["chat"],
            chat={
                "base_url": f"{proxy.url}/chat/v2",
                "rate_limits": {"writes": {"per_second": 20, "burst": 5}},
            },
        )
        session.TRANSPORTS.pop("chat")  # the real socket, through the proxy
        env.import_people(people(100, apps="chat"))
        started = time.monotonic()
        result = sync(config_path=env.config_path)
        elapsed = time.monotonic() - started
    summary = result["apps"]["chat"]["summary"]
    assert summary["created"] == 100 and summary["failed"] == 0
    counts = limit.counts()
    assert counts["admitted"] == 100
    assert counts["refused"] <= 1  # at most 1% answered 429
    assert elapsed > (100 - 5) / 20 * 0.9  # the budget really held the pace
    traffic = result["apps"]["chat"]["traffic"]  # the run reports what held it back
    assert traffic["throttled"] == counts["refused"] and traffic["sent"] >= 101
    assert traffic["waited"] > 1
    assert any(n.startswith("traffic: ") for n in result["apps"]["chat"]["notes"])
