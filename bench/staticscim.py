"""A bench-only SCIM list server: GET /v2/Users pages of a synthetic, read-only tenant.

**Not a SCIM server.** It holds no data: user ``i`` of ``--users N`` is computed from
``i`` (``person``), exactly as ``bench.million`` seeds the directory and its links, so a
sync against it is a no-op when Roster is right. It answers:

- ``GET /v2/Users?startIndex=&count=`` (RFC 7644 §3.4.2.4): a ListResponse of at most
  ``count`` (capped at 1000, as scim2-server caps it) User resources with the core and
  enterprise attributes of Roster's default mapping and a ``meta``; each page is built
  when asked (``json.dumps`` of ``count`` dicts), with no cache;
- ``GET /v2/ServiceProviderConfig``: PATCH supported;
- ``GET /_bench/requests``: how many requests of each method it received;
- anything else (every write): 405, counted, so a sync that should write nothing and
  does is caught by the count, not by an error Roster might swallow.

It exists because ``scim2-server`` lists about 600 accounts per second on this machine
(``docs/benchmarks.md``, section 3), so one listing of a million would take about half an
hour, and seeding it a million POSTs. This server answers a page in a few milliseconds,
so a no-op sync of a million measures Roster, not the app.

    ROSTER_BENCH_TOKEN=... python -m bench.staticscim --users 1000000 --port 8765
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Marketing")
TITLES = ("Engineer", "Manager", "Analyst", "Designer")
MAX_COUNT = 1000
STAMP = "2026-01-01T00:00:00Z"
#: the bearer token it expects, from the environment (never on a command line)
TOKEN_ENV = "ROSTER_BENCH_TOKEN"


def user_id(i: int) -> str:
    return f"{i:032x}"


def remote_id(i: int) -> str:
    return f"a{i:031x}"


def user_name(i: int) -> str:
    return f"user{i:07d}"


def manager_of(i: int) -> int | None:
    """Ten reports per manager: a tree six levels deep at a million."""
    return None if i == 0 else (i - 1) // 10


def person(i: int) -> dict[str, Any]:
    """Directory user ``i``: the columns of ``directory.models.User``."""
    given, family = f"Given{i}", f"Family{i % 997}"
    manager = manager_of(i)
    return {
        "id": user_id(i),
        "user_name": user_name(i),
        "email": f"{user_name(i)}@example.com",
        "given_name": given,
        "family_name": family,
        "display_name": f"{given} {family}",
        "department": DEPARTMENTS[i % len(DEPARTMENTS)],
        "title": TITLES[i % len(TITLES)],
        "employee_number": f"E{i:07d}",
        "manager": None if manager is None else user_name(manager),
        "active": True,
    }


def resource(i: int, base: str) -> dict[str, Any]:
    """User ``i`` as the app holds it: in sync with ``person(i)`` under the default mapping."""
    p = person(i)
    manager = manager_of(i)
    enterprise: dict[str, Any] = {
        "department": p["department"],
        "employeeNumber": p["employee_number"],
    }
    if manager is not None:
        enterprise["manager"] = {"value": remote_id(manager)}
    return {
        "schemas": [CORE, ENTERPRISE],
        "id": remote_id(i),
        "externalId": p["id"],
        "userName": p["user_name"],
        "name": {"givenName": p["given_name"], "familyName": p["family_name"]},
        "displayName": p["display_name"],
        "emails": [{"value": p["email"], "type": "work", "primary": True}],
        "title": p["title"],
        "active": True,
        ENTERPRISE: enterprise,
        "meta": {
            "resourceType": "User",
            "created": STAMP,
            "lastModified": STAMP,
            "location": f"{base}/Users/{remote_id(i)}",
            "version": 'W/"1"',
        },
    }


def page(users: int, start: int, count: int, base: str) -> dict[str, Any]:
    first = max(start, 1)
    last = min(first + min(max(count, 0), MAX_COUNT), users + 1)
    resources = [resource(i - 1, base) for i in range(first, last)]
    return {
        "schemas": [LIST],
        "totalResults": users,
        "startIndex": first,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


SERVICE_PROVIDER_CONFIG = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": True},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": MAX_COUNT},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": False},
    "authenticationSchemes": [],
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Roster's pooled client expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counts are the log

    def _count(self) -> None:
        with self.server.lock:
            self.server.requests[self.command] += 1

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/scim+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_bench/requests":
            self._send(200, dict(self.server.requests))
            return
        self._count()
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._send(401, {"status": "401", "detail": "unauthorized"})
        elif url.path == "/v2/Users":
            query = parse_qs(url.query)
            start = int(query.get("startIndex", ["1"])[0])
            count = int(query.get("count", [str(MAX_COUNT)])[0])
            self._send(200, page(self.server.users, start, count, self.server.base))
        elif url.path == "/v2/ServiceProviderConfig":
            self._send(200, SERVICE_PROVIDER_CONFIG)
        else:
            self._send(404, {"status": "404", "detail": "not here"})

    def _refuse(self) -> None:
        self._count()
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._send(405, {"status": "405", "detail": "this bench server is read-only"})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, users: int, token: str) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.users = users
        self.token = token
        self.base = f"http://127.0.0.1:{port}/v2"
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _Server(args.port, args.users, os.environ[TOKEN_ENV]).serve_forever()


if __name__ == "__main__":
    main()
