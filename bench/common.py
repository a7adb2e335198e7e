"""What the benchmarks share: a scim2-server process whose access log counts requests, a raw
SCIM client to compare Roster with, CPU time of processes, and a line about the machine.
Light to import (httpx only when used): bench.plan measures its own memory."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

MANAGER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
#: wsgiref logs each request as ``host - - [date] "METHOD /path HTTP/1.1" status size``.
_REQUEST_LINE = re.compile(r'"([A-Z]+) /')


class ScimServer:
    """A ``scim2-server`` process (as ``tests.scim_apps.standalone_scim`` starts it), with
    its access log kept: the server's own count of the requests it received."""

    def __init__(self, root: str, log: Path, pid: int) -> None:
        self.root = root
        self.log = log
        self.pid = pid

    def base_url(self, tenant: str) -> str:
        return f"{self.root}/{tenant}/v2"

    def mark(self) -> int:
        """A position in the access log, for ``requests_since``."""
        return self.log.stat().st_size

    def requests_since(self, mark: int) -> Counter[str]:
        """Requests by method logged after ``mark``."""
        with self.log.open("rb") as handle:
            handle.seek(mark)
            text = handle.read().decode("utf-8", "replace")
        return Counter(match[1] for match in _REQUEST_LINE.finditer(text))

    def writes_since(self, mark: int) -> int:
        return sum(n for method, n in self.requests_since(mark).items() if method != "GET")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system)."""
        return process_cpu_seconds(self.pid)


@contextlib.contextmanager
def scim_server(tenants: list[str], token: str, log: Path) -> Iterator[ScimServer]:
    """Run ``scim2-server`` on a free port, its access log (stderr) going to ``log``."""
    from tests.scim_apps import free_port, wait_until_serving

    port = free_port()
    exe = Path(sys.executable).with_name("scim2-server")
    args = [str(exe), "--hostname", "127.0.0.1", "--port", str(port), "--bearer-token", token]
    for tenant in tenants:
        args += ["--tenant", tenant]
    root = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=sink, env=dict(os.environ))
    try:
        url = f"{root}/{tenants[0]}/v2/ServiceProviderConfig"
        wait_until_serving(proc, url, "scim2-server", timeout=60)
        yield ScimServer(root, log, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- a hand-written SCIM client: the baseline Roster is measured against ----------------------


def raw_client(base_url: str, token: str, concurrency: int) -> httpx.Client:
    """What a hand-written client would use: the same pool size as Roster's."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/scim+json"},
        limits=limits,
        timeout=30,
    )


def list_users(client: httpx.Client, page_size: int) -> list[dict[str, Any]]:
    """Every user, page by page (RFC 7644 §3.4.2.4), advancing by what each page held."""
    found: list[dict[str, Any]] = []
    start = 1
    while True:
        response = client.get("/Users", params={"startIndex": start, "count": page_size})
        response.raise_for_status()
        body = response.json()
        resources = body.get("Resources", [])
        found.extend(resources)
        start += len(resources)
        if not resources or start > body["totalResults"]:
            return found


def desired_levels(store: Any, config_path: Path, app_name: str) -> list[list[dict[str, Any]]]:
    """Each user's desired attributes as Roster computes them (so the raw loop POSTs
    the same bodies), in levels: managers before their reports."""
    from directory.config import load_config
    from tasks.desired import build_desired

    app = load_config(config_path).app(app_name)
    assigned = store.read_assigned(app_name)
    desired = build_desired(store.read_users(), assigned, app.effective_mapping)
    targets = list(app.effective_mapping)
    rows = {r["user_id"]: {t: r[t] for t in targets} for r in desired.to_dict(orient="records")}
    depth: dict[str, int] = {}

    def depth_of(user_id: str) -> int:
        if user_id not in depth:
            up = rows[user_id][MANAGER]
            depth[user_id] = depth_of(up) + 1 if up in rows else 0
        return depth[user_id]

    for user_id in rows:
        depth_of(user_id)
    levels: list[list[dict[str, Any]]] = [[] for _ in range(max(depth.values()) + 1)]
    for user_id, attributes in rows.items():
        levels[depth[user_id]].append({"user_id": user_id, **attributes})
    return levels


def raw_create(client: httpx.Client, levels: list[list[dict[str, Any]]], concurrency: int) -> int:
    """POST every user, level by level, with manager references resolved to remote ids."""
    from connectors.scim.paths import to_resource

    remote: dict[str, str] = {}

    def create(attributes: dict[str, Any]) -> tuple[str, str]:
        body = {k: v for k, v in attributes.items() if k != "user_id" and v not in (None, "")}
        if MANAGER in body:
            body[MANAGER] = remote[body[MANAGER]]
        response = client.post("/Users", json=to_resource(body))
        response.raise_for_status()
        return attributes["user_id"], response.json()["id"]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for level in levels:
            remote.update(pool.map(create, level))
    return len(remote)


def versions(users: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {u["id"]: (u["meta"]["version"], u["meta"]["lastModified"]) for u in users}


# -- processes and the machine ------------------------------------------------------------------


class CpuMeter:
    """CPU seconds spent, from creation to ``read()``, by this process (Roster or the raw
    client), the app's scim2-server and the Prefect test server (the other children)."""

    def __init__(self, server: ScimServer, servers: list[ScimServer]) -> None:
        self.server = server
        self.exclude = frozenset(s.pid for s in servers)
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        prefect = children_cpu_seconds(self.exclude)
        return time.process_time(), self.server.cpu_seconds(), prefect

    def read(self) -> CpuUse:
        bench, scim, prefect = (b - a for a, b in zip(self.start, self._now(), strict=True))
        return CpuUse(bench, scim, prefect)


@dataclass(frozen=True)
class CpuUse:
    client: float
    server: float
    prefect: float

    @property
    def total(self) -> float:
        return self.client + self.server + self.prefect

    def __str__(self) -> str:
        return (
            f"CPU s: this process {self.client:.1f}, scim2-server {self.server:.1f},"
            f" Prefect {self.prefect:.1f}"
        )


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(exclude: frozenset[int] = frozenset()) -> float:
    """CPU time used so far by this process's live child processes (the Prefect test
    server, for bench.sync), except ``exclude``."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        if int(fields[1]) == os.getpid() and pid not in exclude:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine() -> str:
    """CPUs and load, printed above every result: the figures are only comparable with
    the baseline measured next to them."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"
