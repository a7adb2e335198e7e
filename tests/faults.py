"""Fault-injecting WSGI middlewares in front of the real scim2-server (tests only)."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class FailCreates:
    """Answer 503 to the first ``times`` POSTs of each listed userName, then pass through.

    Also counts POSTs per userName that reached the real server, to prove nobody was
    created twice."""

    def __init__(self, app: WSGIApp, user_names: set[str], times: int) -> None:
        self.app = app
        self.remaining = Counter({name: times for name in user_names})
        self.reached: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST" or not environ["PATH_INFO"].endswith("/Users"):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        name = json.loads(body).get("userName", "")
        with self.lock:
            fail = self.remaining[name] > 0
            if fail:
                self.remaining[name] -= 1
            else:
                self.reached[name] += 1
        if fail:
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"status": "503", "detail": "injected"}']
        return self.app(environ, start_response)


class LoseCreateAnswers:
    """Let the first POST of each listed userName reach the server, then answer ``status``
    and ``body`` (503 by default) as if the app's answer had been lost or mangled on the
    way: the account exists, the client cannot know."""

    def __init__(
        self,
        app: WSGIApp,
        user_names: set[str],
        status: str = "503 Service Unavailable",
        body: bytes = b'{"status": "503", "detail": "answer lost"}',
    ) -> None:
        self.app = app
        self.pending = set(user_names)
        self.status = status
        self.body = body
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST" or not environ["PATH_INFO"].endswith("/Users"):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        name = json.loads(body).get("userName", "")
        with self.lock:
            lose = name in self.pending
            self.pending.discard(name)
        if not lose:
            return self.app(environ, start_response)
        b"".join(self.app(environ, lambda status, headers, exc_info=None: None))
        start_response(self.status, [("Content-Type", "application/json")])
        return [self.body]


class CorruptListedUser:
    """Rewrite one user (by userName) in every list answer (GET .../Users, filters
    included) with ``corrupt(resource) -> resource``; everything else passes through.

    What scim2-server itself would never send: the listing then carries one account that
    Roster cannot read, or one it cannot even tell apart (no id)."""

    def __init__(
        self, app: WSGIApp, user_name: str, corrupt: Callable[[dict[str, Any]], Any]
    ) -> None:
        self.app = app
        self.user_name = user_name
        self.corrupt = corrupt
        self.corrupted = 0

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET" or not environ["PATH_INFO"].endswith("/Users"):
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = json.loads(b"".join(self.app(environ, keep)))
        body["Resources"] = [self._rewrite(r) for r in body.get("Resources", [])]
        data = json.dumps(body).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]

    def _rewrite(self, resource: dict[str, Any]) -> Any:
        if resource.get("userName", "").lower() != self.user_name:
            return resource
        self.corrupted += 1
        return self.corrupt(resource)
