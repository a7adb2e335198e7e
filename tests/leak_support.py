"""Tools for the token-leak tests: a hostile app that answers with faults and echoes the
Authorization header back, and collectors for every place a token could end up (log
records at DEBUG, exceptions, Prefect's records, Roster's database, files)."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.faults import WSGIApp

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def needles(token: str) -> list[str]:
    """What a leak of ``token`` looks like: itself, ``Bearer`` and base64 forms, and each
    half of it (a message cut short mid-token still leaks)."""
    forms = {token, f"Bearer {token}", token[: len(token) // 2], token[len(token) // 2 :]}
    for text in (token, f"Bearer {token}"):
        raw = text.encode()
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            forms |= {encoded.decode(), encoded.decode().rstrip("=")}
    return sorted(forms)


def hits(texts: Iterable[str], tokens: Iterable[str]) -> list[str]:
    """Each text (abridged) that holds a needle of any token, with that needle."""
    found = []
    patterns = [n for token in tokens for n in needles(token)]
    for text in texts:
        for needle in patterns:
            if needle in text:
                at = text.index(needle)
                found.append(f"{needle!r} in ...{text[max(0, at - 120) : at + 60]!r}")
                break
    return found


# -- a hostile app -----------------------------------------------------------------------


@dataclass
class Fault:
    """Answer ``times`` requests of ``method`` to ``tenant``'s ``path_suffix`` (for POST
    /Users, only those creating ``user``) instead of the server. ``{auth}`` in ``reason``
    or ``body`` becomes the request's Authorization header. With ``delay`` the request is
    held that long and then passed to the server (a timeout, if longer than the app's)."""

    tenant: str
    method: str
    path_suffix: str = "/Users"
    user: str | None = None
    times: int = 1
    status: int = 503
    reason: str | None = None
    body: str | None = None
    content_type: str = "application/scim+json"
    retry_after: str | None = None
    delay: float = 0.0
    #: also send a header line that is not HTTP and quotes the Authorization header:
    #: httpx (h11) raises RemoteProtocolError("illegal header line: ...") quoting it
    garbled: bool = False
    fired: int = 0

    def matches(self, tenant: str, method: str, path: str, user: str | None) -> bool:
        return (
            self.tenant == tenant
            and self.method == method
            and path.endswith(self.path_suffix)
            and (self.user is None or self.user == user)
            and (self.times < 0 or self.fired < self.times)
        )


class EchoingApp:
    """WSGI middleware in front of scim2-server: every response carries the request's
    Authorization header back (``X-Echo-Authorization``, as some debugging proxies do),
    and ``faults`` are served in their place."""

    def __init__(self, app: WSGIApp, faults: list[Fault]) -> None:
        self.app, self.faults = app, faults
        self.echoed = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        tenant = path.split("/")[1]
        auth = environ.get("HTTP_AUTHORIZATION", "")
        user = self._user(environ) if method == "POST" else None
        with self.lock:
            fault = next((f for f in self.faults if f.matches(tenant, method, path, user)), None)
            if fault is not None:
                fault.fired += 1
            self.echoed += 1

        def echo(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            return start_response(status, [*headers, ("X-Echo-Authorization", auth)], *rest)

        if fault is None or fault.delay:
            if fault is not None:
                time.sleep(fault.delay)
            return self.app(environ, echo)
        reason = (fault.reason or "Injected").replace("{auth}", auth)
        headers = [("Content-Type", fault.content_type)]
        if fault.retry_after is not None:
            headers.append(("Retry-After", fault.retry_after))
        if fault.garbled:
            headers.append((f"X-Echo {auth}", "garbled"))
        echo(f"{fault.status} {reason}", headers)
        if fault.body is not None:
            return [fault.body.replace("{auth}", auth).encode()]
        error = {"schemas": [ERROR], "status": str(fault.status), "detail": "injected"}
        return [json.dumps(error).encode()]

    @staticmethod
    def _user(environ: dict) -> str | None:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            return str(json.loads(body).get("userName"))
        except (ValueError, AttributeError):
            return None


# -- collectors --------------------------------------------------------------------------

#: loggers raised to DEBUG for the test; the non-propagating ones get the handler too
DEBUG_LOGGERS = ("", "prefect", "prefect.client", "roster", "httpx", "httpcore")
NON_PROPAGATING = ("prefect._internal", "prefect.extra")


class LogCapture(logging.Handler):
    """Every record, formatted with its traceback, from every logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.names: Counter[str] = Counter()
        #: every task run that logged (Prefect's records carry its id)
        self.task_run_ids: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.names[record.name.split(".")[0]] += 1
        if task_run_id := getattr(record, "task_run_id", None):
            self.task_run_ids.add(str(task_run_id))


@contextmanager
def debug_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    saved = {name: logging.getLogger(name).level for name in DEBUG_LOGGERS}
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    targets = [logging.getLogger(), *(logging.getLogger(n) for n in NON_PROPAGATING)]
    for logger in targets:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger in targets:
            logger.removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


class ExceptionSpy:
    """Records every instance of the given exception classes as it is constructed, in
    any thread; ``texts()`` renders each with its whole chain (what a traceback shows),
    and the repr of any httpx request it carries."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, classes: Iterable[type]) -> None:
        self.seen: list[BaseException] = []
        for cls in classes:
            original = cls.__init__

            def init(self_: BaseException, *args: Any, _orig: Any = original, **kw: Any) -> None:
                _orig(self_, *args, **kw)
                self.seen.append(self_)

            monkeypatch.setattr(cls, "__init__", init)

    def chain(self) -> list[BaseException]:
        out: list[BaseException] = []
        ids: set[int] = set()
        for exc in self.seen:
            current: BaseException | None = exc
            while current is not None and id(current) not in ids:
                ids.add(id(current))
                out.append(current)
                current = current.__cause__ or current.__context__
        return out

    def texts(self) -> list[str]:
        texts = []
        for exc in self.chain():
            texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            request = getattr(exc, "_request", None)  # httpx errors; .request may raise
            if request is not None:
                texts += [repr(request), repr(request.headers), str(request.headers)]
        return texts


def database_rows(engine: sa.Engine) -> list[str]:
    """Every row of every table, all columns, as text."""
    rows = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                rows.append(f"{table}: {tuple(row)!r}")
    return rows


def file_texts(*roots: Path) -> list[str]:
    """Every file under the roots, as text (binary files decoded leniently)."""
    texts = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            texts.append(f"{path}: " + path.read_bytes().decode("utf-8", "replace"))
    return texts


def prefect_records(
    flow_run_ids: list[str], task_run_ids: set[str], timeout: float = 30.0
) -> dict[str, list[str]]:
    """What the Prefect API holds about these flow runs: the runs and their task runs
    (states, messages, parameters), their logs and their artifacts, each as JSON.

    The server records task runs and logs in batches, a little later: this waits until
    every task run in ``task_run_ids`` is there and the log count stops growing.
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    ids = [UUID(i) for i in flow_run_ids]
    runs_filter = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs: list[Any] = []
        tasks: list[Any] = []
        deadline, same = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and same < 2:  # two equal log counts in a row
            time.sleep(0.5)
            previous, logs = len(logs), _all_logs(client, log_filter)
            tasks = client.read_task_runs(flow_run_filter=runs_filter, limit=200)
            complete = task_run_ids <= {str(t.id) for t in tasks}
            same = same + 1 if complete and logs and len(logs) == previous else 0
        runs = client.read_flow_runs(flow_run_filter=runs_filter)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)),
            limit=200,
        )
    missing = task_run_ids - {str(t.id) for t in tasks}
    assert not missing, f"{len(missing)} task runs never reached the Prefect server"
    return {
        "flow runs": [r.model_dump_json() for r in runs],
        "task runs": [t.model_dump_json() for t in tasks],
        "artifacts": [a.model_dump_json() for a in artifacts],
        "API logs": [log.model_dump_json() for log in logs],
    }


def _all_logs(client: Any, log_filter: Any) -> list[Any]:
    logs: list[Any] = []
    while True:
        page = client.read_logs(log_filter=log_filter, limit=200, offset=len(logs))
        logs += page
        if len(page) < 200:
            return logs
