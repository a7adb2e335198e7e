"""TLS verification is on unless an app turns it off, against a real HTTPS server on
127.0.0.1 (scim2-server behind a self-signed certificate): by default the app fails with a
clear error and nothing is deprovisioned, ``ca_bundle`` trusts the certificate, and
``tls_verify: false`` works and says so in the log and in the CLI's output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.build import build_connector
from directory.config import ConfigError, ScimAppConfig
from flows.sync import sync
from tasks import session
from tests.scim_apps import InProcessScim
from tests.socket_server import self_signed_certificate, serve_wsgi, server_context
from tests.sync_env import Installation, people

REFUSED = (
    "GET /Users: TLS certificate verification failed (self-signed certificate);"
    " for an app with a private CA, set its ca_bundle"
)
WARNING = "TLS certificate verification is disabled for app chat"


@dataclass
class HttpsApp:
    env: Installation
    cert: Path
    handshake_errors: list[str]

    def sync(self, **chat: object) -> dict:
        """Sync with chat's TLS settings replaced by ``chat``."""
        self.env.app_settings["chat"] = {
            k: v for k, v in self.env.app_settings["chat"].items() if k == "base_url"
        } | chat
        self.env.write_config()
        return sync(config_path=self.env.config_path)["apps"]


@pytest.fixture
def https(
    make_installation: Callable[..., Installation], scim: InProcessScim, tmp_path: Path
) -> Iterator[HttpsApp]:
    """chat over HTTPS on a real socket; wiki in-process, to show the run goes on."""
    cert, key = self_signed_certificate(tmp_path)
    with serve_wsgi(scim.app, server_context(cert, key)) as (root, server):
        env = make_installation(["chat", "wiki"], chat={"base_url": f"{root}/chat/v2"})
        del session.TRANSPORTS["chat"]
        yield HttpsApp(env, cert, server.errors)


def test_a_self_signed_app_fails_clearly_by_default_and_nobody_is_deprovisioned(
    https: HttpsApp,
) -> None:
    team = people(6)
    https.env.import_people(team)
    trusted = https.sync(ca_bundle=str(https.cert))
    assert trusted["chat"]["summary"]["created"] == 6
    assert trusted["chat"]["notes"] == []
    links = https.env.store.read_links("chat")

    for leaver in team[1:3]:
        leaver["active"] = "false"
    https.env.import_people(team)
    writes = https.env.scim.writes("chat")
    refused = https.sync()  # tls_verify and ca_bundle at their defaults
    assert refused["chat"] == {
        "status": "failed",
        "error": REFUSED,
        "notes": ["1 failed run(s) in a row: the app's TLS certificate is not trusted"],
    }
    assert refused["wiki"]["summary"]["deactivated"] == 2  # the other app goes on
    assert https.env.scim.writes("chat") == writes
    assert all(user["active"] for user in https.env.scim.users("chat"))
    assert https.env.store.read_links("chat").equals(links)
    assert https.env.store.read_app_health("chat").reason == "tls"
    assert any("TLSV1_ALERT_UNKNOWN_CA" in error for error in https.handshake_errors)

    retrusted = https.sync(ca_bundle=str(https.cert))
    assert retrusted["chat"]["summary"]["deactivated"] == 2
    assert https.env.store.read_app_health("chat").failures == 0


def test_tls_verify_false_syncs_and_warns_once_in_the_log_report_and_cli(
    https: HttpsApp, caplog: pytest.LogCaptureFixture
) -> None:
    https.env.import_people(people(3))
    with caplog.at_level(logging.WARNING, logger="roster"):
        apps = https.sync(tls_verify=False)
    assert apps["chat"]["summary"]["created"] == 3
    warnings = [r for r in caplog.records if WARNING in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]  # once per run
    assert apps["chat"]["notes"][0].startswith("warning: TLS certificate verification is off")
    assert apps["wiki"]["notes"] == []

    # The real command, in its own process, against the session's Prefect server.
    from prefect.settings import PREFECT_API_URL

    roster = Path(sys.executable).with_name("roster")
    done = subprocess.run(
        [str(roster), "--config", https.env.config_path, "sync", "--app", "chat"],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "chat: warning: TLS certificate verification is off (tls_verify: false)" in (
        " ".join(done.stdout.split())  # rich wraps long lines
    )
    assert done.stderr.count(WARNING) == 1


def test_a_ca_bundle_without_certificates_is_a_config_error(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n", encoding="utf-8")
    app = ScimAppConfig.model_validate(
        {
            "name": "chat",
            "connector": "scim",
            "base_url": "https://127.0.0.1:9/chat/v2",
            "token_env": "CHAT_TOKEN",
            "ca_bundle": str(bundle),
        }
    )
    with pytest.raises(ConfigError, match=f"app 'chat': ca_bundle {bundle} is not a PEM file"):
        build_connector(app, SecretStr("token-never-sent"), dry_run=True)
