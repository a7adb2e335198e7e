"""Retries, Retry-After, attempt counts, rate limits and auth, against the real scim2-server
behind a fault-injecting WSGI middleware. Sleeps are recorded, never slept."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any

import httpx
import pytest

from connectors.errors import TransientError
from connectors.http import BearerAuth, build_client, parse_retry_after
from connectors.ratelimit import RateLimiter
from connectors.scim import ScimConnector
from directory.config import DEFAULT_MAPPING, UpdateMethod
from tests.scim_apps import InProcessScim

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
#: path fragment -> faults to serve in order: (status, Retry-After or None)
Faults = Mapping[str, Sequence[tuple[int, str | None]]]


class FaultInjector:
    """WSGI middleware in front of scim2-server: a request whose path contains a key of
    ``faults`` gets that key's next queued fault, ``(status, Retry-After or None)``,
    until the queue is empty; then it reaches the server. Thread-safe."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app = app
        self.faults = {key: list(queue) for key, queue in faults.items()}
        self.seen: list[tuple[str, str, int | None]] = []
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        with self.lock:
            queue = next((q for key, q in self.faults.items() if key in path and q), None)
            fault = queue.pop(0) if queue else None
            self.seen.append((method, path, fault[0] if fault else None))
        if fault is None:
            return self.app(environ, start_response)
        status, retry_after = fault
        headers = [("Content-Type", "application/scim+json")]
        if retry_after is not None:
            headers.append(("Retry-After", retry_after))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        body = {"schemas": [ERROR], "status": str(status), "detail": "injected fault"}
        return [json.dumps(body).encode()]

    def requests_to(self, fragment: str) -> int:
        return sum(1 for _, path, _ in self.seen if fragment in path)


class Sleeps(list[float]):
    """An injectable ``sleep`` that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def setup(
    faults: Faults,
    scim: InProcessScim | None = None,
    **options: Any,
) -> tuple[InProcessScim, FaultInjector, ScimConnector, Sleeps]:
    scim = scim or InProcessScim()
    injector = FaultInjector(scim.app, faults)
    sleeps = Sleeps()
    client = build_client(
        scim.base_url("acme"),
        scim.token,
        timeout=5,
        verify_tls=True,
        concurrency=8,
        transport=httpx.WSGITransport(app=injector),
    )
    connector = ScimConnector("acme", client, paths=list(DEFAULT_MAPPING), sleep=sleeps, **options)
    return scim, injector, connector, sleeps


def seed(scim: InProcessScim, *user_names: str) -> list[str]:
    with scim.client("acme") as client:
        return [
            client.post("/Users", json={"schemas": [USER], "userName": name}).json()["id"]
            for name in user_names
        ]


def test_429_with_retry_after_is_retried_after_the_stated_delay() -> None:
    scim, injector, connector, sleeps = setup({"/Users/": [(429, "2"), (429, "1")]})
    [remote_id] = seed(scim, "alice")
    account = connector.get_account(remote_id)
    assert account.attributes["userName"] == "alice"
    assert connector.last_attempts == 3
    assert connector.last_operation.retries == 2
    assert sleeps == [2.0, 1.0]
    assert [status for _, _, status in injector.seen] == [429, 429, None]


def test_retry_after_is_capped() -> None:
    scim, _, connector, sleeps = setup({"/Users/": [(503, "3600")]}, backoff_cap=1.5)
    [remote_id] = seed(scim, "alice")
    connector.get_account(remote_id)
    assert sleeps == [1.5]


def test_without_retry_after_backoff_is_capped_exponential_with_jitter() -> None:
    faults = {"/Users": [(503, None), (502, None), (504, None), (503, None)]}
    _, _, connector, sleeps = setup(faults, backoff_base=0.5, backoff_cap=1.5)
    assert next(iter(connector.list_accounts())).accounts == []
    assert connector.last_attempts == 5
    windows = [0.5, 1.0, 1.5, 1.5]  # base * 2**n, capped; full jitter draws below it
    assert len(sleeps) == 4
    assert all(0 <= slept <= window for slept, window in zip(sleeps, windows, strict=True))


def test_exhausted_retries_raise_transient_error() -> None:
    scim, injector, connector, sleeps = setup({"/Users/": [(503, "0")] * 10}, max_retries=2)
    [remote_id] = seed(scim, "alice")
    with pytest.raises(TransientError) as caught:
        connector.get_account(remote_id)
    assert caught.value.status == 503
    assert str(caught.value) == f"GET /Users/{remote_id}: 503 injected fault"
    assert connector.last_attempts == 3
    assert injector.requests_to("/Users/") == 3
    assert sleeps == [0.0, 0.0]


def test_500_is_transient_but_left_to_the_caller() -> None:
    scim, _, connector, sleeps = setup({"/Users/": [(500, None)]})
    [remote_id] = seed(scim, "alice")
    with pytest.raises(TransientError, match="500"):
        connector.get_account(remote_id)
    assert connector.last_attempts == 1 and sleeps == []


def test_a_retried_create_creates_one_account() -> None:
    scim, _, connector, _ = setup({"/Users": [(503, "0")]})
    connector.create_account({"userName": "once"})
    assert connector.last_attempts == 2
    assert [u["userName"] for u in scim.users("acme")] == ["once"]


def test_network_errors_and_timeouts_are_retried() -> None:
    scim = InProcessScim()
    inner = scim.transport()
    failures: list[Exception] = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]

    def handle(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return inner.handle_request(request)

    sleeps = Sleeps()
    client = build_client(
        scim.base_url("acme"),
        scim.token,
        timeout=5,
        verify_tls=True,
        concurrency=1,
        transport=httpx.MockTransport(handle),
    )
    connector = ScimConnector("acme", client, paths=["userName"], sleep=sleeps)
    assert next(iter(connector.list_accounts())).accounts == []
    assert connector.last_attempts == 3 and len(sleeps) == 2


def test_attempt_counts_are_per_thread_in_a_pool() -> None:
    """The apply layer reads ``last_attempts`` in the worker thread that made the call."""
    scim = InProcessScim()
    ids = seed(scim, *(f"user{n}" for n in range(12)))
    faults = {remote_id: [(429, "0")] * (n % 3) for n, remote_id in enumerate(ids)}
    _, _, connector, _ = setup(faults, scim, update_method=UpdateMethod.PATCH)

    def work(n: int) -> tuple[int, int]:
        connector.update_account(ids[n], {"title": f"t{n}"}, {"title": f"t{n}"})
        return n, connector.last_attempts

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = dict(pool.map(work, range(len(ids))))
    assert results == {n: 1 + n % 3 for n in range(len(ids))}
    assert sorted(u["title"] for u in scim.users("acme")) == sorted(f"t{n}" for n in range(12))


def test_the_rate_limiter_is_consulted_on_every_attempt() -> None:
    class Counting(RateLimiter):
        calls = 0

        def acquire(self) -> float:
            Counting.calls += 1
            return 0.0

    scim, _, connector, _ = setup({"/Users/": [(429, "0")]}, rate_limiter=Counting(None))
    [remote_id] = seed(scim, "alice")
    connector.get_account(remote_id)
    assert Counting.calls == 2


# -- the pieces -------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(unreadable) is None


def test_bearer_auth_never_shows_its_token() -> None:
    auth = BearerAuth("s3cr3t-token")
    assert "s3cr3t" not in repr(auth) and "s3cr3t" not in str(auth)
    request = httpx.Request("GET", "http://app.test/Users")
    assert next(auth.auth_flow(request)).headers["Authorization"] == "Bearer s3cr3t-token"


def test_build_client_warns_without_the_token_when_tls_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = build_client(
        "https://app.test/scim/v2",
        "s3cr3t-token",
        timeout=3,
        verify_tls=False,
        concurrency=2,
        app_name="acme",
    )
    assert "acme" in caplog.text and "https://app.test/scim/v2" in caplog.text
    assert "s3cr3t" not in caplog.text
    assert client.timeout.read == 3
    client.close()


def test_rate_limiter_spaces_requests_after_the_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, burst=2, clock=lambda: now[0], sleep=sleep)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.1])
    now[0] += 10  # idle time refills the bucket, up to the burst only
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_rate_limiter_without_a_rate_never_waits() -> None:
    limiter = RateLimiter(None, sleep=lambda s: pytest.fail("slept"))
    assert [limiter.acquire() for _ in range(100)] == [0.0] * 100


def test_rate_limiter_is_shared_fairly_between_threads() -> None:
    lock = threading.Lock()
    now = [0.0]

    def sleep(seconds: float) -> None:  # a fake clock: each waiter moves time forward
        with lock:
            now[0] = max(now[0], seconds)

    limiter = RateLimiter(100, burst=1, clock=lambda: 0.0, sleep=sleep)
    with ThreadPoolExecutor(max_workers=8) as pool:
        waits = sorted(pool.map(lambda _: limiter.acquire(), range(50)))
    assert waits == pytest.approx([n / 100 for n in range(50)])
