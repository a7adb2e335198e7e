"""No token ever leaves the connector: syncs, an offboarding and the CLI run against a
hostile app (503s, a 429, a timeout, a 401 for a wrong token, malformed bodies, and the
Authorization header echoed back in bodies, status lines and headers), with every logger
at DEBUG; then every place a token could land is searched for it.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from cli.main import app as roster_app
from connectors.errors import AuthError, ConnectorError
from connectors.http import build_client, raise_for_status
from connectors.redact import Secrets, scrub
from connectors.scim import ScimConnector
from directory.config import DEFAULT_MAPPING, ConfigError
from flows.sync import sync
from tasks import session
from tasks.apply import AppStopped, BatchIncomplete
from tasks.report import jsonable
from tests.leak_support import (
    EchoingApp,
    ExceptionSpy,
    Fault,
    database_rows,
    debug_logs,
    file_texts,
    hits,
    needles,
    prefect_records,
)
from tests.scim_apps import InProcessScim
from tests.socket_server import serve_wsgi
from tests.sync_env import Installation, person

#: distinctive, so that any hit is a leak and nothing else
TOKEN = "rstr-CANARY-9dX2qLm7Vb4Tz8Kp"
WRONG = "rstr-WRONGTK-4hG7sQ1nWc6Yf3Jr"
APPS = ["chat", "wiki", "crm", "hr"]
#: the token starts at character 184 of the detail, which Roster cuts at 200: cut first
#: and redact second, and its first 16 characters would survive
ECHO_DETAIL = "x" * 152 + " refused: Authorization: {auth}"


@pytest.fixture
def scim() -> InProcessScim:
    """The apps accept TOKEN only (overrides conftest's ``scim``)."""
    return InProcessScim(token=TOKEN)


def hostile_faults() -> list[Fault]:
    scim_error = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"]})
    echo_400 = scim_error[:-1] + f', "status": "400", "detail": "{ECHO_DETAIL}"}}'
    echo_500 = scim_error[:-1] + ', "status": "500", "detail": "backend saw {auth}"}'
    return [
        Fault("chat", "GET", times=2, status=503),  # the first listing, twice
        Fault("chat", "POST", user="user0001", status=429, retry_after="0"),
        Fault("chat", "POST", user="user0002", delay=1.5),  # past the 0.5 s timeout
        Fault("chat", "POST", user="user0003", times=-1, status=400, body=echo_400),
        Fault(
            "chat",
            "POST",
            user="user0004",
            times=-1,
            status=200,
            content_type="text/html",
            body="<html>welcome {auth}</html>",
        ),
        Fault("chat", "POST", user="user0005", times=-1, status=422, reason="Bad {auth}", body=""),
        Fault("chat", "PATCH", path_suffix="", status=500, body=echo_500),
        Fault("crm", "POST", user="user0001", times=2, status=503),
        Fault("hr", "GET", times=-1, status=200, garbled=True),
    ]


@pytest.fixture
def hostile(
    make_installation: Callable[..., Installation],
    monkeypatch: pytest.MonkeyPatch,
    scim: InProcessScim,
) -> Iterator[tuple[Installation, EchoingApp]]:
    """chat (token from the environment), wiki (a wrong token), crm (token from a
    Prefect Secret block) and hr (answers garbage), on a real socket behind the hostile
    middleware."""
    monkeypatch.setenv("LEAK_CHAT_TOKEN", TOKEN)
    monkeypatch.setenv("LEAK_WIKI_TOKEN", WRONG)
    Secret(value=TOKEN).save("leak-crm-token", overwrite=True)
    middleware = EchoingApp(scim.app, hostile_faults())
    with serve_wsgi(middleware) as (root, _):
        settings = {
            "chat": {"token_env": "LEAK_CHAT_TOKEN", "timeout": 0.5, "concurrency": 2},
            "wiki": {"token_env": "LEAK_WIKI_TOKEN"},
            "crm": {"token_env": None, "token_secret": "leak-crm-token", "max_retries": 1},
            "hr": {"token_env": "LEAK_CHAT_TOKEN", "max_retries": 1},
        }
        for name in APPS:
            settings[name]["base_url"] = f"{root}/{name}/v2"
        env = make_installation(APPS, **settings)
        session.TRANSPORTS.clear()  # real sockets: httpcore and its DEBUG logs take part
        env.import_people([person(i, apps=";".join(APPS)) for i in range(7)])
        yield env, middleware


def roster(env: Installation, *args: str) -> str:
    result = CliRunner().invoke(roster_app, ["--config", env.config_path, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.stdout + result.stderr


def test_no_token_in_logs_artifacts_results_reports_rows_or_exceptions(
    hostile: tuple[Installation, EchoingApp],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, middleware = hostile
    spy = ExceptionSpy(monkeypatch, [ConnectorError, ConfigError, AppStopped, BatchIncomplete])
    with debug_logs() as logs:
        first = sync(config_path=env.config_path)
        cli_sync = roster(env, "sync")  # the failed accounts again, and wiki's 401 again
        cli_offboard = roster(env, "offboard", "user0006")
        outputs = {
            args: roster(env, *args.split())
            for args in ("report", "report --failed", "report --json", "report --failed --json")
        }
        outputs["quarantine list"] = roster(env, "quarantine", "list")

    # The hostile app did everything it was set up to do ...
    assert all(f.fired for f in middleware.faults), [f for f in middleware.faults if not f.fired]
    chat, wiki, crm, hr = (first["apps"][a] for a in APPS)
    assert wiki["status"] == "failed" and "401" in wiki["error"]
    assert hr["error"] == "GET /Users: RemoteProtocolError: illegal header line: " + (
        "bytearray(b'X-Echo Bearer ***: garbled')"
    )
    # user0002's timed-out create lands later: the retry creates it, or adopts it
    assert chat["summary"]["created"] + chat["summary"]["linked"] == 4
    assert chat["summary"]["failed"] == 3
    assert crm["summary"]["created"] == 7  # its token came from the Secret block
    failed = {r["user"]: r["error"] for r in chat["drift"] if r["status"] == "failed"}
    assert set(failed) == {"user0003", "user0004", "user0005"}
    # ... and what it echoed was redacted where Roster quotes it, and in httpcore's logs.
    assert "Authorization: Bearer ***" in failed["user0003"]
    assert "422 Bad Bearer ***" in failed["user0005"]
    assert any("X-Echo-Authorization', b'Bearer ***'" in line for line in logs.lines)

    runs = [r["flow_run_id"] for r in _runs(env) if r["flow_run_id"]]
    prefect = prefect_records(runs, logs.task_run_ids)
    actions = env.store.read_actions()
    places: dict[str, list[str]] = {
        "log records": logs.lines,
        **prefect,
        "flow result": [json.dumps(first, default=jsonable)],
        "CLI output": [cli_sync, cli_offboard, *outputs.values()],
        "action log rows": [json.dumps(r, default=str) for r in actions.to_dict("records")],
        "database rows": database_rows(env.store.engine),
        "exceptions": spy.texts(),
        "captured stdout/stderr": list(capsys.readouterr()),
        "Roster and Prefect files": file_texts(env.root, *_prefect_dirs()),
    }
    leaks = {place: hits(texts, [TOKEN, WRONG]) for place, texts in places.items()}
    figures = {place: len(texts) for place, texts in places.items()}
    print(f"\nsearched for {len(needles(TOKEN)) * 2} needles: {figures}")
    print(f"log records by logger: {dict(logs.names)}; exceptions raised: {len(spy.seen)}")
    assert figures["artifacts"] >= 6 and figures["API logs"] > 0 and len(spy.seen) > 5
    assert len(actions) >= 20 and {"httpcore", "httpx", "prefect", "roster"} <= set(logs.names)
    assert leaks == {place: [] for place in places}


def _runs(env: Installation) -> list[dict]:
    with env.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM runs"))]


def _prefect_dirs() -> list[Path]:
    """The test server's database directory, and PREFECT_HOME (local result storage)."""
    from prefect.settings import PREFECT_HOME, PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    return [Path(url.split(":///", 1)[1]).parent, Path(PREFECT_HOME.value())]


# -- httpx objects inside Roster's errors ------------------------------------------------


def test_errors_from_an_echoing_app_carry_no_authorization_header() -> None:
    """A 401 whose status line and body quote the token: Roster's AuthError and its
    traceback, the request it came from, and an httpx.HTTPStatusError for the same
    response wrapped in a Roster error."""
    scim = InProcessScim(token=TOKEN)
    echo = Fault("acme", "GET", times=-1, status=401, reason="Denied {auth}", body="{auth}")
    with serve_wsgi(EchoingApp(scim.app, [echo])) as (root, _):
        client = build_client(
            f"{root}/acme/v2", TOKEN, timeout=5, verify_tls=True, concurrency=1, app_name="acme"
        )
        connector = ScimConnector("acme", client, paths=list(DEFAULT_MAPPING))
        with pytest.raises(AuthError) as caught:
            list(connector.list_accounts())
        response = client.get("/Users")
        client.close()
    assert response.request.headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent
    assert TOKEN in response.reason_phrase and TOKEN in response.text  # and echoed back
    assert str(caught.value) == "GET /Users: 401 Denied Bearer ***"
    with pytest.raises(AuthError) as mapped:
        raise_for_status("GET", "/Users", response)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        assert TOKEN in str(exc)  # httpx quotes the status line ...
        wrapped = ConnectorError("GET /Users: refused")
        wrapped.__cause__ = scrub(exc)  # ... so a Roster error scrubs what it wraps
    request = response.request
    texts = [repr(request), repr(request.headers), str(request.headers)]
    for error in (caught.value, mapped.value, wrapped):
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [repr(client), repr(client.auth), str(client.auth), repr(connector)]
    texts.append(repr(vars(connector)))
    assert "'authorization': '[secure]'" in repr(request.headers)
    assert "401 Denied Bearer ***' for url" in "".join(traceback.format_exception(wrapped))
    assert hits(texts, [TOKEN]) == []


def test_redaction_covers_base64_forms_and_skips_secrets_too_short_to_redact() -> None:
    secrets = Secrets()
    secrets.add("short")  # redacting every "short" would mangle all text: not registered
    secrets.add(TOKEN)
    encoded = base64.b64encode(TOKEN.encode()).decode()
    text = f"short {TOKEN} {encoded} {encoded.rstrip('=')} Bearer {TOKEN}x"
    assert secrets.redact(text) == "short *** *** *** Bearer ***x"
