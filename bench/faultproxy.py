"""A fault-injecting HTTP proxy in front of a real SCIM server, for tests and benchmarks.

Roster's retry, paging and crash-safety claims only mean something against the failures a
real network and a real app produce, on real sockets. This proxy sits between Roster and a
``scim2-server`` and, for each request to a SCIM resource path (``/Users``, ``/Groups``),
draws at most one fault from a seeded ``random.Random``, each kind at its own rate:

==================  =====================================================================
fault               what the client gets
==================  =====================================================================
500, 503            that status, the request never reaches the app
429                 429 with ``Retry-After``, the request never reaches the app
429-no-retry-after  429 without ``Retry-After``
reset               the connection closed with an RST (SO_LINGER 0) before forwarding
timeout             forwarded (the app does the work), the answer held for ``hold``
                    seconds then dropped: the client's timeout fires first
slow                forwarded, answered after ``slow`` seconds
truncated           forwarded, the body cut in half (Content-Length matches the cut)
invalid-json        forwarded, the body replaced by an HTML error page
wrong-total         list responses only: ``totalResults`` off by 1 to 3
page-shift          paged list requests only: ``startIndex`` forwarded shifted by 1 to 10
                    (repeating or skipping accounts) while the answer claims the asked one
==================  =====================================================================

A fault that cannot apply to a request (a wrong total on a POST) is not drawn for it, so
rates are per applicable request; a body fault drawn for an answer without a body (a 204)
is not injected, nor counted. ``injected`` counts what was really injected per kind and
``upstream`` counts, per method, the requests that reached the app, so a test can count
writes. Threads interleave, so a seed fixes the fault sequence only for sequential requests.

In-process::

    with FaultProxy("http://127.0.0.1:8000", spread(0.2), seed=7) as proxy:
        client = httpx.Client(base_url=f"{proxy.url}/tenant/v2")

Standalone (counters on ``GET /_faultproxy/stats``, printed as JSON on exit)::

    python -m bench.faultproxy --upstream http://127.0.0.1:8000 --port 8001 --seed 7 \\
        --rate-503 0.05 --rate-timeout 0.02 [--methods POST,PATCH] [--hold 5] [--slow 0.5]

A ``WriteLimit`` makes the proxy an app with a published rate limit (Slack: 180 user
writes per minute, burst 20): writes to a resource path over its token bucket get 429
with ``Retry-After`` in whole seconds, or, in the ``reset`` style, with
``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` (a Unix time) instead. It counts
what it admitted (with times, for the achieved rate) and refused::

    python -m bench.faultproxy --upstream http://127.0.0.1:8000 --writes-per-minute 180 --burst 20

Bodies and headers are never logged: the client's Authorization header passes through.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx


class Fault(StrEnum):
    STATUS_500 = "500"
    STATUS_503 = "503"
    RATE_LIMITED = "429"
    RATE_LIMITED_BARE = "429-no-retry-after"
    RESET = "reset"
    TIMEOUT = "timeout"
    SLOW = "slow"
    TRUNCATED = "truncated"
    INVALID_JSON = "invalid-json"
    WRONG_TOTAL = "wrong-total"
    PAGE_SHIFT = "page-shift"


#: answered by the proxy itself; the app never sees the request
REFUSALS: dict[Fault, int] = {
    Fault.STATUS_500: 500,
    Fault.STATUS_503: 503,
    Fault.RATE_LIMITED: 429,
    Fault.RATE_LIMITED_BARE: 429,
}
LIST_FAULTS = frozenset({Fault.WRONG_TOTAL, Fault.PAGE_SHIFT})
BODY_FAULTS = frozenset({Fault.TRUNCATED, Fault.INVALID_JSON})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: resource endpoints only: discovery (/ServiceProviderConfig, /Schemas) passes clean
SCIM_RESOURCES = re.compile(r"/(Users|Groups)(/[^/]*)?$")
STATS_PATH = "/_faultproxy/stats"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
HTML_ERROR = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
#: hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy recomputes
# fmt: off
_DROP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "host", "content-length", "content-encoding", "accept-encoding", "date", "server",
})
# fmt: on


def spread(total: float, faults: Collection[Fault] = tuple(Fault)) -> dict[Fault, float]:
    """``total`` shared evenly between ``faults`` (every kind by default)."""
    return {fault: total / len(faults) for fault in faults}


def check_rates(rates: Mapping[Fault, float]) -> dict[Fault, float]:
    """Rates are probabilities of disjoint outcomes: each in [0, 1], summing to at most 1."""
    checked = {Fault(fault): float(rate) for fault, rate in rates.items()}
    if any(not 0 <= rate <= 1 for rate in checked.values()) or sum(checked.values()) > 1:
        raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {checked}")
    return checked


@dataclass(frozen=True)
class Exchange:
    """One request as the proxy read it."""

    method: str
    path: str  # without the query
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def is_list(self) -> bool:
        """A GET on a collection: a ListResponse comes back (RFC 7644 §3.4.2)."""
        return self.method == "GET" and re.search(r"/(Users|Groups)$", self.path) is not None

    @property
    def start_index(self) -> int | None:
        value = dict(self.query).get("startIndex")
        return int(value) if value is not None and value.isdigit() else None


class WriteLimit:
    """A token bucket over the writes an app accepts: ``per_minute`` sustained, ``burst``
    at once, full at the start. ``style`` says how a refusal tells the client when to
    come back: ``retry-after`` (seconds) or ``reset`` (``X-RateLimit-*`` headers)."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        style: str = "retry-after",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if style not in ("retry-after", "reset"):
            raise ValueError(f"style must be retry-after or reset, got {style!r}")
        self.rate = per_minute / 60
        self.per_minute = per_minute
        self.burst = burst
        self.style = style
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()
        #: when each admitted write arrived (``clock``), in order
        self.admitted: list[float] = []
        #: (arrival, seconds the client was told to wait) of each refusal
        self.refusals: list[tuple[float, float]] = []

    def admit(self) -> list[tuple[str, str]] | None:
        """None when the write may pass (a token spent), else the 429's headers."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                self.admitted.append(now)
                return None
            wait = max(1, math.ceil((1 - self._tokens) / self.rate))
            self.refusals.append((now, float(wait)))
        if self.style == "retry-after":
            return [("Retry-After", str(wait))]
        return [
            ("X-RateLimit-Limit", str(int(self.per_minute))),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", str(math.ceil(time.time() + wait))),
        ]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"admitted": len(self.admitted), "refused": len(self.refusals)}


class FaultProxy:
    """A threaded proxy on 127.0.0.1 (``url``) in front of ``upstream``. See the module
    docstring. ``rates`` may be replaced while it runs (``proxy.rates = {}`` stops faults).

    ``on_upstream(method, path)`` runs after the app answered and before the client gets
    the answer: the crash tests kill Roster there, with the write done and unacknowledged.
    """

    def __init__(
        self,
        upstream: str,
        rates: Mapping[Fault, float] | None = None,
        seed: int = 0,
        *,
        port: int = 0,
        methods: Collection[str] | None = None,
        retry_after: int = 1,
        hold: float = 5.0,
        slow: float = 0.5,
        on_upstream: Callable[[str, str], None] | None = None,
        limit: WriteLimit | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.limit = limit
        self.rates = check_rates(rates or {})
        self.methods = frozenset(m.upper() for m in methods) if methods else None
        self.retry_after = retry_after
        self.hold = hold
        self.slow = slow
        self.on_upstream = on_upstream
        #: faults really injected, per kind
        self.injected: Counter[Fault] = Counter()
        #: requests that reached the app, per method
        self.upstream_requests: Counter[str] = Counter()
        #: requests received from clients, per method
        self.received: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._client = httpx.Client(base_url=self.upstream, timeout=60.0)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        # a short poll: ``stop`` waits up to one interval, and tests start many proxies
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, release held answers, close the upstream client."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def writes(self) -> int:
        """Mutating requests that reached the app."""
        with self._lock:
            return sum(n for method, n in self.upstream_requests.items() if method in WRITES)

    def counts(self) -> dict[str, dict[str, int]]:
        """A consistent snapshot of every counter, JSON-ready."""
        with self._lock:
            counts = {
                "injected": {str(k): v for k, v in sorted(self.injected.items())},
                "upstream": dict(sorted(self.upstream_requests.items())),
                "received": dict(sorted(self.received.items())),
            }
        if self.limit is not None:
            counts["limit"] = self.limit.counts()
        return counts

    # -- used by the handler threads ----------------------------------------------------

    def draw(self, exchange: Exchange) -> Fault | None:
        """At most one fault for this request, among those that can apply to it."""
        if not SCIM_RESOURCES.search(exchange.path):
            return None
        if self.methods is not None and exchange.method not in self.methods:
            return None
        rates = self.rates
        with self._lock:
            roll = self._rng.random()
            for fault, rate in rates.items():
                if not _applies(fault, exchange):
                    continue
                if roll < rate:
                    return fault
                roll -= rate
        return None

    def randint(self, low: int, high: int) -> int:
        with self._lock:
            return self._rng.randint(low, high)

    def count(self, counter: Counter[Any], key: Any) -> None:
        with self._lock:
            counter[key] += 1

    def forward(self, exchange: Exchange, query: list[tuple[str, str]]) -> httpx.Response:
        response = self._client.request(
            exchange.method,
            exchange.path,
            params=urlencode(query),
            headers=exchange.headers,
            content=exchange.body or None,
        )
        self.count(self.upstream_requests, exchange.method)
        if self.on_upstream is not None:
            self.on_upstream(exchange.method, exchange.path)
        return response

    def pause(self, seconds: float) -> None:
        """Sleep, cut short when the proxy stops (so held answers never outlive it)."""
        self._stopping.wait(seconds)


def _applies(fault: Fault, exchange: Exchange) -> bool:
    if fault is Fault.PAGE_SHIFT:
        return exchange.is_list and exchange.start_index is not None
    if fault is Fault.WRONG_TOTAL:
        return exchange.is_list
    if fault in BODY_FAULTS:
        return exchange.method != "DELETE"
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanishes (reset, killed) is part of the game, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One client connection (HTTP/1.1 keep-alive, as httpx uses it)."""

    protocol_version = "HTTP/1.1"
    #: idle keep-alive connections end, so a stopped proxy leaves no thread behind for long
    timeout = 60
    server: _Server

    def setup(self) -> None:
        """TCP_NODELAY: headers and body go out in two writes, and Nagle plus the client's
        delayed ACK would add 40 ms to every answer."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would flood test output (and headers are never logged)."""

    def _serve(self) -> None:
        proxy = self.server.proxy
        exchange = self._read()
        proxy.count(proxy.received, exchange.method)
        if exchange.path == STATS_PATH:
            self._send(
                200, json.dumps(proxy.counts()).encode(), [("Content-Type", "application/json")]
            )
            return
        limited = proxy.limit is not None and exchange.method in WRITES
        if limited and SCIM_RESOURCES.search(exchange.path):
            assert proxy.limit is not None
            refusal = proxy.limit.admit()
            if refusal is not None:
                body = {"schemas": [ERROR_SCHEMA], "status": "429", "detail": "rate limited"}
                headers = [("Content-Type", "application/scim+json"), *refusal]
                self._send(429, json.dumps(body).encode(), headers)
                return
        fault = proxy.draw(exchange)
        try:
            self._answer(proxy, exchange, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (or was killed): nothing to do

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _answer(self, proxy: FaultProxy, exchange: Exchange, fault: Fault | None) -> None:
        if fault in REFUSALS:
            assert fault is not None
            proxy.count(proxy.injected, fault)
            self._refuse(REFUSALS[fault], fault is Fault.RATE_LIMITED, proxy.retry_after)
            return
        if fault is Fault.RESET:
            proxy.count(proxy.injected, fault)
            self._reset()
            return
        query = exchange.query
        if fault is Fault.PAGE_SHIFT:
            query = _shifted(exchange, proxy)
        try:
            response = proxy.forward(exchange, query)
        except httpx.HTTPError:
            self._refuse(502, False, 0)
            return
        if fault is Fault.TIMEOUT:
            proxy.count(proxy.injected, fault)
            proxy.pause(proxy.hold)
            self.close_connection = True  # the answer is never sent
            return
        body, injected = _damage(response, exchange, fault, proxy)
        if fault is Fault.SLOW:
            injected = True
            proxy.pause(proxy.slow)
        if injected:
            assert fault is not None
            proxy.count(proxy.injected, fault)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _DROP]
        self._send(response.status_code, body, headers)

    def _read(self) -> Exchange:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROP}
        return Exchange(
            self.command, parts.path, parse_qsl(parts.query, keep_blank_values=True), headers, body
        )

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, with_retry_after: bool, retry_after: int) -> None:
        body = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": "injected fault"}
        headers = [("Content-Type", "application/scim+json")]
        if with_retry_after:
            headers.append(("Retry-After", str(retry_after)))
        self._send(status, json.dumps(body).encode(), headers)

    def _reset(self) -> None:
        """RST instead of FIN: SO_LINGER on, with a zero timeout, then close."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


def _shifted(exchange: Exchange, proxy: FaultProxy) -> list[tuple[str, str]]:
    """The query with startIndex moved back (repeat accounts) or forward (skip accounts)."""
    start = exchange.start_index
    assert start is not None
    shift = proxy.randint(1, 10)
    moved = start - shift if start - shift >= 1 and proxy.randint(0, 1) else start + shift
    return [(k, str(moved) if k == "startIndex" else v) for k, v in exchange.query]


def _damage(
    response: httpx.Response, exchange: Exchange, fault: Fault | None, proxy: FaultProxy
) -> tuple[bytes, bool]:
    """The body to send, and whether ``fault`` was injected into it."""
    body = response.content
    if fault is Fault.TRUNCATED and len(body) > 1:
        return body[: len(body) // 2], True
    if fault is Fault.INVALID_JSON and body:
        return HTML_ERROR, True
    if fault in LIST_FAULTS and response.is_success:
        try:
            document = response.json()
        except ValueError:
            return body, False
        if not isinstance(document, dict) or "totalResults" not in document:
            return body, False
        if fault is Fault.WRONG_TOTAL:
            document["totalResults"] = _wrong_total(int(document["totalResults"]), proxy)
        else:  # PAGE_SHIFT: claim the asked-for page, so the client cannot tell from startIndex
            document["startIndex"] = exchange.start_index
        return json.dumps(document).encode(), True
    return body, False


def _wrong_total(total: int, proxy: FaultProxy) -> int:
    """1 to 3 more or fewer than the truth (never below 0)."""
    delta = proxy.randint(1, 3)
    return total - delta if total >= delta and proxy.randint(0, 1) else total + delta


# -- command line ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream", required=True, help="the SCIM server, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-all", type=float, default=0.0, help="shared evenly by every kind")
    for fault in Fault:
        parser.add_argument(f"--rate-{fault.value}", type=float, default=None, dest=_dest(fault))
    parser.add_argument("--methods", default="", help="comma-separated; faults only on these")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds, for 429")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds a timeout is held")
    parser.add_argument("--slow", type=float, default=0.5, help="seconds a slow answer waits")
    parser.add_argument("--writes-per-minute", type=float, default=None, help="a WriteLimit")
    parser.add_argument("--burst", type=int, default=1, help="the WriteLimit's burst")
    parser.add_argument("--limit-style", choices=("retry-after", "reset"), default="retry-after")
    return parser.parse_args(argv)


def rates_from(args: argparse.Namespace) -> dict[Fault, float]:
    rates = spread(args.rate_all) if args.rate_all else {}
    for fault in Fault:
        value = getattr(args, _dest(fault))
        if value is not None:
            rates[fault] = value
    return check_rates(rates)


def _dest(fault: Fault) -> str:
    return "rate_" + fault.value.replace("-", "_")


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then print the counters as one JSON document."""
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] or None
    proxy = FaultProxy(
        args.upstream,
        rates_from(args),
        args.seed,
        port=args.port,
        methods=methods,
        retry_after=args.retry_after,
        hold=args.hold,
        slow=args.slow,
        limit=(
            WriteLimit(args.writes_per_minute, args.burst, style=args.limit_style)
            if args.writes_per_minute
            else None
        ),
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with proxy:
        print(f"faultproxy on {proxy.url} -> {proxy.upstream}", file=sys.stderr, flush=True)
        done.wait()
    print(json.dumps(proxy.counts()), flush=True)


if __name__ == "__main__":
    main()
