"""A real Prefect server and headless Chromium, for the browser check (tests/test_browser.py).

The server is ``prefect server start`` in a subprocess on a free port, with a throwaway
PREFECT_HOME and Roster's server settings (cli/prefect_env.py); it also serves the UI.
Chromium is Debian's ``/usr/bin/chromium`` driven by its own flags (``--dump-dom`` after a
virtual-time budget, ``--screenshot``), so no browser driver is needed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx

from cli.prefect_env import prefect_defaults
from tests.scim_apps import free_port

CHROMIUM = Path("/usr/bin/chromium")
#: the flags the issue asks for; each run also gets a fresh --user-data-dir
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a Prefect process: none of this session's PREFECT_* settings
    (the in-process test server's), Roster's server settings, its own PREFECT_HOME, and
    the server a client talks to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(prefect_defaults(), PREFECT_HOME=str(home), **extra)
    home.mkdir(parents=True, exist_ok=True)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextlib.contextmanager
def prefect_server(home: Path, *, timeout: float = 120) -> Iterator[str]:
    """``prefect server start`` on a free port; yields the root URL (the API is at /api)."""
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("prefect")
    # the UI asks the API at PREFECT_UI_API_URL, which otherwise names the default port 4200
    env = prefect_env(home, PREFECT_UI_API_URL=f"{root}/api")
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(root, proc, timeout, home / "server.log")
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_healthy(root: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{root}/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"prefect server did not start in {timeout:.0f} s")


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str, *, budget_ms: int = 15000, timeout: float = 90) -> str:
    """The page's DOM after the single-page app has had ``budget_ms`` of virtual time to
    fetch from the API and render (virtual time stands still while requests are pending)."""
    args = [f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    return _chromium(args, timeout).stdout


def dump_dom_until(url: str, rendered: Callable[[str], bool], *, attempts: int = 3) -> str:
    """``dump_dom`` again, with a longer budget, until ``rendered(dom)``: a loaded CI machine
    can leave the app still fetching when the budget runs out. Returns the last DOM."""
    dom = ""
    for attempt in range(attempts):
        dom = dump_dom(url, budget_ms=15000 * (attempt + 1))
        if rendered(dom):
            break
    return dom


def screenshot(
    url: str,
    path: Path,
    *,
    size: tuple[int, int] = (1400, 900),
    budget_ms: int = 15000,
    timeout: float = 90,
) -> Path:
    """A PNG of the rendered page at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        f"--virtual-time-budget={budget_ms}",
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        f"--screenshot={path}",
        url,
    ]
    _chromium(args, timeout)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return path


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (header cells included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(dom: str) -> list[list[dict[str, str]]]:
    """Each rendered table as records keyed by its first row (the header)."""
    parser = _Tables()
    parser.feed(dom)
    return [
        [dict(zip(rows[0], row, strict=False)) for row in rows[1:]]
        for rows in parser.tables
        if rows
    ]


def artifact_ids(api_url: str, flow_run_id: str) -> dict[str, str]:
    """A flow run's artifacts, key -> id, from the Prefect API."""
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    response = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=10)
    response.raise_for_status()
    return {a["key"]: a["id"] for a in response.json() if a.get("key")}


def ui_artifact_url(root: str, artifact_id: str) -> str:
    """The artifact's page in the UI Prefect 3.9 serves by default (V2, under /v2; V1 has
    the same route without the prefix)."""
    return f"{root}/v2/artifacts/artifact/{artifact_id}"


def ui_flow_run_url(root: str, flow_run_id: str, *, v1: bool = False) -> str:
    """The flow run's page; ``v1`` is the classic UI, which has the resume form."""
    return f"{root}{'' if v1 else '/v2'}/runs/flow-run/{flow_run_id}"


def ui_flow_run_artifacts_url(root: str, flow_run_id: str) -> str:
    return f"{ui_flow_run_url(root, flow_run_id)}?tab=Artifacts"
