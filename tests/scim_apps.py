"""Real SCIM apps for tests: PyPI's scim2-server, in-process (WSGI) or as a subprocess.

Nobody here wrote that server, so a test that passes against it passes against someone
else's reading of RFC 7643/7644.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from scim2_models import ScimProvider
from scim2_server.applications.wsgi import TenantDispatcher
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

TOKEN = "test-token-5f2b9c"


class InProcessScim:
    """A multi-tenant scim2-server served through ``httpx.WSGITransport``.

    ``storage(tenant)`` exposes the server's own store, so tests count accounts on the
    server rather than trusting Roster's report.
    """

    def __init__(self, token: str = TOKEN, *, patch: bool = True) -> None:
        config = load_default_service_provider_config()
        config.patch.supported = patch
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
        provider = ScimProvider.from_discovery(
            load_default_schemas().values(), load_default_resource_types().values(), config=config
        )
        self.service = ScimService(provider, secret="roster-tests")
        self.provider = provider
        self.token = token
        self.storages: dict[str, InMemoryStorage] = {}
        self.dispatcher = TenantDispatcher(self._make)
        #: (method, tenant) -> count of requests the server received; GETs included
        self.requests: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def app(self, environ: dict, start_response: Any) -> Any:
        """The WSGI entry point: counts each request, then serves it with scim2-server."""
        tenant = environ.get("PATH_INFO", "/").split("/")[1]
        with self._lock:
            self.requests[(environ["REQUEST_METHOD"], tenant)] += 1
        return self.dispatcher(environ, start_response)

    def writes(self, tenant: str | None = None) -> int:
        """Mutating requests the server received (for a tenant, or in all)."""
        return sum(
            n
            for (method, t), n in self.requests.items()
            if method != "GET" and (tenant is None or t == tenant)
        )

    def _make(self, tenant: str) -> BearerTokenApplication:
        self.storages[tenant] = InMemoryStorage()
        return BearerTokenApplication(
            self.storages[tenant], self.provider, service=self.service, bearer_tokens=[self.token]
        )

    def base_url(self, tenant: str) -> str:
        return f"http://scim.test/{tenant}/v2"

    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.app)  # type: ignore[arg-type]

    def client(self, tenant: str, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            transport=self.transport(),
            base_url=self.base_url(tenant),
            headers={"Authorization": f"Bearer {token or self.token}"},
        )

    def users(self, tenant: str) -> list[dict]:
        """Every user the server holds for a tenant, read over SCIM (all pages)."""
        found: list[dict] = []
        with self.client(tenant) as client:
            start = 1
            while True:
                body = client.get("/Users", params={"startIndex": start, "count": 1000}).json()
                resources = body.get("Resources", [])
                found.extend(resources)
                start += len(resources)
                if not resources or start > body["totalResults"]:
                    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def standalone_scim(tenants: list[str], token: str = TOKEN) -> Iterator[str]:
    """Run the ``scim2-server`` command on a free port; yields ``http://127.0.0.1:PORT``."""
    port = free_port()
    exe = Path(sys.executable).with_name("scim2-server")
    args = [str(exe), "--hostname", "127.0.0.1", "--port", str(port), "--bearer-token", token]
    for tenant in tenants:
        args += ["--tenant", tenant]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
    )
    root = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, f"{root}/{tenants[0]}/v2/ServiceProviderConfig", "scim2-server")
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_until_serving(proc: subprocess.Popen, url: str, name: str, timeout: float = 30) -> None:
    """Wait until ``url`` answers (any status); RuntimeError if ``proc`` exits first or
    ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.1)
