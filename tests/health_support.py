"""Helpers for the failure-memory and approval tests: a fault that rejects chosen accounts,
a thread that answers a paused flow run, and a clock the tests move by hand."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from tests.faults import WSGIApp

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The sync flow's clock (``flows.sync.clock``), moved by the test, never by sleeping."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime = T0) -> None:
        self.now = start
        monkeypatch.setattr("flows.sync.clock", lambda: self.now)

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class RejectCreates:
    """Answer ``400 invalidValue`` to POST /Users for the userNames in ``names`` (a set the
    test may empty to let them through), and count the POSTs per userName that arrived."""

    def __init__(self, app: WSGIApp, names: set[str]) -> None:
        self.app = app
        self.names = names
        self.posts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST" or not environ["PATH_INFO"].endswith("/Users"):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        name = json.loads(body).get("userName", "")
        with self.lock:
            self.posts[name] += 1
            reject = name in self.names
        if not reject:
            return self.app(environ, start_response)
        start_response("400 Bad Request", [("Content-Type", "application/scim+json")])
        error = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "400",
            "scimType": "invalidValue",
            "detail": "injected: title is not allowed",
        }
        return [json.dumps(error).encode()]


class Resumer(threading.Thread):
    """Waits for the latest sync's flow run to pause, then resumes it with the next of
    ``answers`` (the form's input), as an approver clicking in the UI would; once per
    pause. ``errors`` keeps what went wrong."""

    def __init__(self, store: Any, *answers: dict[str, Any], timeout: float = 90) -> None:
        super().__init__(daemon=True)
        self.store, self.answers, self.timeout = store, list(answers), timeout
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            self._resume_each()
        except BaseException as exc:
            self.errors.append(exc)

    def _resume_each(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_runs import resume_flow_run

        deadline = time.monotonic() + self.timeout
        answered: set[UUID] = set()
        with get_client(sync_client=True) as client:
            while self.answers:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sync never paused for {self.answers}")
                latest = self.store.latest_run("sync")
                if latest and latest["flow_run_id"]:
                    run_id = UUID(latest["flow_run_id"])
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_paused() and state.id not in answered:
                        answered.add(state.id)
                        resume_flow_run(run_id, run_input=self.answers.pop(0))
                time.sleep(0.2)
