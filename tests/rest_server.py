"""A small REST user API for the shapes real apps here cannot produce: every pagination
style, every auth style (an OAuth 2.0 token endpoint included), a status field, a
dedicated suspend endpoint, injected faults. Served on a real socket
(``tests.socket_server.serve_wsgi``).

It is strict: a request it does not know is answered 500 and recorded in
``unexpected``, so a test that sends something wrong fails loudly.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, unquote

Environ = dict[str, Any]
Start = Callable[..., Any]

CLIENT_ID = "roster-client"
SECRET = "toy-secret-8c1d2e"
USERNAME = "roster"
API_HEADER = "X-Api-Key"


class ToyRestApp:
    """Users at ``/users``; ``style`` picks the listing's pagination, ``auth`` the
    credentials it accepts (``bearer``, ``basic``, ``api_key``, ``oauth2``)."""

    def __init__(
        self,
        *,
        style: str = "offset_limit",
        auth: str = "bearer",
        cap: int | None = None,
        token_ttl: int = 3600,
    ) -> None:
        self.style, self.auth, self.cap, self.token_ttl = style, auth, cap, token_ttl
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        #: every access token ever issued, revoked ones included
        self.issued: list[str] = []
        self.token_requests = 0
        #: (method, path, query) of every request under /users
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.unexpected: list[str] = []
        #: statuses (with Retry-After) to answer the next /users requests with
        self.faults: list[tuple[int, str | None]] = []
        #: "ignore_offset", "repeat_cursor", "foreign_link", "bad_item" (listings), "echo"
        self.quirk: str | None = None
        self._lock = threading.Lock()
        self._next_id = 1

    # -- set-up and inspection ------------------------------------------------------------

    def seed(self, login: str, **extra: Any) -> str:
        with self._lock:
            user_id = f"u{self._next_id:03d}"
            self._next_id += 1
            self.users[user_id] = {
                "id": user_id,
                "login": login,
                "profile": {"email": f"{login}@example.com", "name": login.title()},
                "status": "ACTIVE",
                "roles": ["staff"],
                **extra,
            }
            return user_id

    def writes(self) -> int:
        return sum(1 for method, _, _ in self.requests if method != "GET")

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ: Environ, start: Start) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        if path == "/oauth/token" and method == "POST":
            return self._token(environ, raw, start)
        with self._lock:
            self.requests.append((method, path, query))
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            headers = [("Retry-After", fault[1])] if fault[1] else []
            return _reply(start, fault[0], {"error": "injected"}, headers)
        if self.quirk == "echo":  # a hostile app quoting every request header back
            sent = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
            echo = [("X-Echo", json.dumps(sent))]
            return _reply(start, 400, {"error": "bad", "message": json.dumps(sent)}, echo)
        if not self._authorized(environ):
            return _reply(start, 401, {"error": "unauthorized", "message": "bad credentials"})
        try:
            return self._route(method, path, query, raw, environ, start)
        except Exception as exc:  # an unknown request: loud, not lenient
            self.unexpected.append(f"{method} {path}: {exc!r}")
            return _reply(start, 500, {"error": "unexpected request"})

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        raw: bytes,
        environ: Environ,
        start: Start,
    ) -> Iterable[bytes]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["users"] and method == "GET":
            return self._list(query, environ, start)
        if parts == ["users"] and method == "POST":
            return self._create(json.loads(raw), start)
        if len(parts) >= 2 and parts[0] == "users" and parts[1] in self.users:
            user = self.users[parts[1]]
            if len(parts) == 2 and method == "GET":
                return _reply(start, 200, user)
            if len(parts) == 2 and method == "PATCH":
                _merge(user, json.loads(raw))
                return _reply(start, 200, user)
            if len(parts) == 2 and method == "DELETE":
                del self.users[parts[1]]
                return _reply(start, 204, None)
            if parts[2:] in (["suspend"], ["unsuspend"]) and method == "POST":
                user["status"] = "SUSPENDED" if parts[2] == "suspend" else "ACTIVE"
                return _reply(start, 204, None)
        if len(parts) >= 2 and parts[0] == "users" and parts[1] not in self.users:
            return _reply(start, 404, {"error": "not_found"})
        raise ValueError("no such route")

    # -- listing --------------------------------------------------------------------------

    def _list(self, query: dict[str, str], environ: Environ, start: Start) -> Iterable[bytes]:
        users = sorted(self.users.values(), key=lambda u: u["id"])
        if "login" in query:  # a substring search, like many apps' "search" parameter
            users = [u for u in users if query["login"].lower() in u["login"].lower()]
        if self.quirk == "bad_item":
            users = [*users, {"id": "broken", "login": {"not": "a string"}}]
        style = self.style
        if style == "none":
            return _reply(start, 200, users)
        if style == "offset_limit":
            offset = 0 if self.quirk == "ignore_offset" else int(query.get("offset", 0))
            limit = self._size(query["limit"])
            return _reply(start, 200, {"data": users[offset : offset + limit], "total": len(users)})
        if style == "page_number":
            size, page = self._size(query["per_page"]), int(query["page"])
            chunk = users[(page - 1) * size : page * size]
            pages = -(-len(users) // size)
            return _reply(start, 200, {"data": chunk, "meta": {"pages": pages}})
        if style == "cursor":
            start_at = int(query.get("cursor", 0))
            limit = self._size(query["limit"])
            after = start_at + limit
            cursor = None if after >= len(users) else str(after)
            if self.quirk == "repeat_cursor":
                cursor = str(limit)
            body = {"data": users[start_at:after], "meta": {"next": cursor}}
            return _reply(start, 200, body)
        if style == "link_header":
            size, page = self._size(query.get("per_page", "2")), int(query.get("page", 1))
            chunk = users[(page - 1) * size : page * size]
            headers = []
            if page * size < len(users):
                host = "http://elsewhere.invalid" if self.quirk == "foreign_link" else ""
                root = host or f"http://{environ['HTTP_HOST']}"
                link = f'<{root}/users?page={page + 1}&per_page={size}>; rel="next"'
                headers.append(("Link", f'<{root}/users?page=1>; rel="first", {link}'))
            return _reply(start, 200, chunk, headers)
        raise ValueError(f"unknown style {style}")

    def _size(self, asked: str) -> int:
        return min(int(asked), self.cap) if self.cap else int(asked)

    def _create(self, body: dict[str, Any], start: Start) -> Iterable[bytes]:
        login = body.get("login")
        if not isinstance(login, str) or not login:
            return _reply(start, 422, {"error": "invalid", "message": "login is required"})
        if any(u["login"] == login for u in self.users.values()):
            return _reply(start, 409, {"error": "conflict", "message": "login taken"})
        user_id = self.seed(login)
        user = self.users[user_id]
        _merge(user, {k: v for k, v in body.items() if k != "login"})
        return _reply(start, 201, user)

    # -- auth -----------------------------------------------------------------------------

    def _authorized(self, environ: Environ) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if self.auth == "bearer":
            return header == f"Bearer {SECRET}"
        if self.auth == "basic":
            expected = base64.b64encode(f"{USERNAME}:{SECRET}".encode()).decode()
            return header == f"Basic {expected}"
        if self.auth == "api_key":
            return environ.get("HTTP_X_API_KEY") == f"Key {SECRET}"
        with self._lock:
            return header.startswith("Bearer ") and header[7:] in self.tokens

    def _token(self, environ: Environ, raw: bytes, start: Start) -> Iterable[bytes]:
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        basic = environ.get("HTTP_AUTHORIZATION") == f"Basic {expected}"
        body = form.get("client_id") == CLIENT_ID and form.get("client_secret") == SECRET
        with self._lock:
            self.token_requests += 1
            if form.get("grant_type") != "client_credentials" or not (basic or body):
                return _reply(start, 401, {"error": "invalid_client"})
            token = secrets.token_urlsafe(16)
            self.tokens.add(token)
            self.issued.append(token)
        reply = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        return _reply(start, 200, reply)

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _reply(
    start: Start, status: int, body: Any, headers: list[tuple[str, str]] | None = None
) -> Iterable[bytes]:
    from http import HTTPStatus

    payload = b"" if body is None else json.dumps(body).encode()
    head = [("Content-Type", "application/json"), *(headers or [])]
    start(f"{status} {HTTPStatus(status).phrase}", head)
    return [payload]


#: each pagination style as the toy app serves it: (list settings, where the items are)
LISTINGS: dict[str, dict[str, Any]] = {
    "none": {"pagination": {"style": "none"}},
    "offset_limit": {"items": "data", "pagination": {"style": "offset_limit", "total": "total"}},
    "page_number": {
        "items": "data",
        "pagination": {"style": "page_number", "total_pages": "meta.pages"},
    },
    "cursor": {
        "items": "data",
        "pagination": {"style": "cursor", "cursor": "meta.next", "cursor_param": "cursor"},
    },
    "link_header": {"pagination": {"style": "link_header", "size_param": "per_page"}},
}
AUTHS: dict[str, dict[str, Any]] = {
    "bearer": {"type": "bearer"},
    "basic": {"type": "basic", "username": USERNAME},
    "api_key": {"type": "api_key", "header": API_HEADER, "prefix": "Key "},
}


def toy_entry(url: str, *, style: str = "offset_limit", auth: Any = "bearer", **extra: Any) -> dict:
    """The roster.yaml entry of a ToyRestApp at ``url``; ``extra`` keys replace the defaults."""
    entry: dict[str, Any] = {
        "name": "toy",
        "connector": "rest",
        "base_url": url,
        "token_env": "ROSTER_TOY_SECRET",
        "auth": (auth if isinstance(auth, dict) else AUTHS.get(auth))
        or {
            "type": "oauth2_client_credentials",
            "token_url": f"{url}/oauth/token",
            "client_id": CLIENT_ID,
        },
        "page_size": 3,
        "fields": {"userName": "login", "email": "profile.email", "displayName": "profile.name"},
        "list": {"path": "/users", **LISTINGS[style]},
        "find": {"style": "query", "param": "login", "attribute": "userName"},
        "requests": {
            "create": {"method": "POST", "path": "/users", "body": "mapped", "ok": [201]},
            "update": {"method": "PATCH", "path": "/users/{id}", "body": "mapped", "ok": [200]},
            "delete": {"method": "DELETE", "path": "/users/{id}", "ok": [204]},
        },
        "active": {
            "style": "status",
            "path": "status",
            "active": "ACTIVE",
            "inactive": "SUSPENDED",
        },
    }
    return {**entry, **extra}
