"""The one place an HTTP connector's requests meet httpx: dry-run refusal, the app's rate
budget, retries and attempt counts, shared by every HTTP kind (SCIM, REST).

A connector keeps one ``Wire`` and sends every request through ``Wire.send``, passing
its own ``check``: the function that turns a non-2xx response into a typed error
(SCIM reads RFC 7644 §3.12 error bodies, REST apps their own), usually by calling
``connectors.http.raise_for_status``. ``Wire.send``:

* refuses anything but GET in dry-run mode (``DryRunError``, never sent);
* passes every attempt (retries included) through the app's ``Traffic``
  (``connectors.ratelimit``): the adaptive in-flight limit, the read or write budget
  (configured, or learned from 429s), and the app-wide pause that ``Retry-After`` or a
  rate-limit reset header starts;
* retries 429, 502-504 and network failures with tenacity: after the app-wide pause
  when the answer started one (``Retry-After``, capped), else full-jitter exponential
  backoff;
* logs method, path and status only, on the connector's logger;
* counts logical requests and HTTP sends per thread (``OperationStats``).

Attempt counts: the apply layer runs accounts in a thread pool over one connector. Each
public connector method calls ``begin()``, which starts a fresh ``OperationStats`` for
the calling thread, and every send adds to it, so right after a call returns or raises,
``last_operation`` read in the same thread describes that call and no other thread's.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from connectors.errors import ConnectorError, DryRunError, TLSError, TransientError
from connectors.http import (
    NETWORK_ERRORS,
    certificate_problem,
    is_retryable,
    parse_retry_after,
)
from connectors.ratelimit import RateLimiter, Traffic, TrafficStats
from connectors.redact import scrub

#: a path ``Wire._url`` keeps as an absolute URL: one plain segment
_COLLECTION = re.compile(r"/[A-Za-z0-9._~-]+")
#: maps a response to connectors.errors (raises) or accepts it (returns)
Check = Callable[[str, str, httpx.Response], None]


@dataclass
class OperationStats:
    """What one public call cost: logical requests, and HTTP sends including retries."""

    requests: int = 0
    attempts: int = 0

    @property
    def retries(self) -> int:
        return self.attempts - self.requests


class PerThreadAttempts:
    """Attempt counts per calling thread: a public connector call starts afresh
    (``begin``), every send (retries included) adds to it (``_stats``), and right after the
    call ``last_operation`` in the same thread describes that call and no other thread's.
    The class keeps ``self._local = threading.local()``."""

    _local: threading.local

    @property
    def last_operation(self) -> OperationStats:
        stats: OperationStats | None = getattr(self._local, "stats", None)
        return stats if stats is not None else OperationStats()

    def begin(self) -> None:
        self._local.stats = OperationStats()

    def _stats(self) -> OperationStats:
        stats: OperationStats | None = getattr(self._local, "stats", None)
        if stats is None:
            stats = self._local.stats = OperationStats()
        return stats


class Wire(PerThreadAttempts):
    """One app's requests over one shared, thread-safe ``httpx.Client``."""

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        *,
        logger: logging.Logger,
        dry_run: bool = False,
        rate_limiter: RateLimiter | Traffic | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.dry_run = dry_run
        self.client = client
        self._logger = logger
        if isinstance(rate_limiter, Traffic):
            self.traffic = rate_limiter
        else:  # one budget (or none) shared by reads and writes, no adaptive limit
            self.traffic = Traffic(
                name,
                reads=rate_limiter,
                writes=rate_limiter,
                max_pause=backoff_cap,
                sleep=sleep,
                logger=logger,
            )
        self._backoff_cap = backoff_cap
        self._jitter = wait_random_exponential(multiplier=backoff_base, max=backoff_cap)
        self._retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(max_retries + 1),
            wait=self._backoff,
            sleep=sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._local = threading.local()
        self._urls: dict[str, httpx.URL] = {}

    # -- the wire -------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        check: Check,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        label: str | None = None,
    ) -> httpx.Response:
        """Send one request (retrying as the module docstring says); ``check`` maps the
        final response to an error or accepts it. ``path`` may be an absolute URL (a Link
        header's next page); ``label`` then names it in messages and logs instead.

        Retries cover writes too: a POST whose lost first attempt did land comes back
        409 (or, for an upsert, succeeds again) on the retry, which callers handle like
        any conflict (find and adopt).
        """
        where = label or path
        if self.dry_run and method != "GET":
            raise DryRunError(f"{method} {where}: refused, app {self.name} is in dry-run mode")
        stats = self._stats()
        stats.requests += 1
        self.traffic.begin()
        for attempt in self._retrying:
            with attempt:
                stats.attempts += 1
                response = self._attempt(method, where, self._url(path), params, json)
                self._logger.debug("%s %s -> %s", method, where, response.status_code)
                check(method, where, response)
                return response
        raise AssertionError("tenacity returned without a result")  # pragma: no cover

    def _url(self, path: str) -> httpx.URL | str:
        """A collection's path (``/Users``: every create and every listed page) as an
        absolute URL, merged with the client's base URL once instead of per request
        (httpx parses both, about 25 µs). Other paths (an account's, a next-page
        link) go to httpx as they are. The merge is httpx's own: the base URL's path,
        then the path without its leading slash."""
        url = self._urls.get(path)
        if url is None:
            if not _COLLECTION.fullmatch(path):
                return path
            base = self.client.base_url
            url = base.copy_with(raw_path=base.raw_path + path[1:].encode("ascii"))
            self._urls[path] = url
        return url

    def _attempt(
        self,
        method: str,
        where: str,
        path: httpx.URL | str,
        params: Mapping[str, Any] | None,
        json: Any,
    ) -> httpx.Response:
        """One send through the app's traffic control; remembers (per thread) whether its
        answer paused the app: the retry then sleeps that pause (the other threads wait in it)."""
        ticket = self.traffic.enter(method)
        self._local.paused = None
        try:
            response = self.client.request(method, path, params=params, json=json)
        except BaseException as exc:  # whatever it is, the in-flight slot is given back
            timed_out = isinstance(exc, httpx.TimeoutException)
            self.traffic.leave(ticket, status=None, timed_out=timed_out)
            if isinstance(exc, NETWORK_ERRORS):
                raise network_error(method, where, exc) from exc
            if isinstance(exc, httpx.HTTPError):
                raise ConnectorError(describe(method, where, exc)) from exc
            raise
        paused = self.traffic.leave(
            ticket,
            status=response.status_code,
            headers=response.headers,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
        self._local.paused = paused
        return response

    @property
    def traffic_stats(self) -> TrafficStats:
        return self.traffic.stats()

    def close(self) -> None:
        """Close the client; say at INFO what the app's traffic control did."""
        stats = self.traffic.stats()
        if stats.sent:
            self._logger.info("app %s: %s", self.name, stats.describe())
        self.client.close()

    def _backoff(self, state: RetryCallState) -> float:
        """The pause when the answer paused the whole app (``Retry-After``, a reset
        header; capped), else full-jitter exponential."""
        paused: float | None = getattr(self._local, "paused", None)
        if paused is not None:
            return paused
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self._backoff_cap)  # Retry-After on a 502 or 504
        return float(self._jitter(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._logger.info(
            "app %s: %s; retry %d in %.2fs", self.name, exc, state.attempt_number, wait
        )


def network_error(method: str, path: str, exc: httpx.HTTPError) -> ConnectorError:
    """A failed certificate check stops the app (retrying cannot fix it); any other
    network failure is transient."""
    problem = certificate_problem(scrub(exc))
    if problem is not None:
        return TLSError(
            f"{method} {path}: TLS certificate verification failed ({problem});"
            " for an app with a private CA, set its ca_bundle"
        )
    return TransientError(describe(method, path, exc))


def describe(method: str, path: str, exc: httpx.HTTPError) -> str:
    """httpx quotes wire data in some messages (h11: an illegal header line), and the
    error raised from ``exc`` keeps it as its cause: both are redacted."""
    return f"{method} {path}: {type(exc).__name__}: {scrub(exc)}"
