"""What the traffic-control tests share: one SCIM app's configuration and a fake clock."""

from __future__ import annotations

from pathlib import Path

from directory.config import ScimAppConfig, load_config

APP = """
apps:
  - name: chat
    connector: scim
    base_url: http://127.0.0.1:8080/chat/v2
    token_env: CHAT_TOKEN
"""


class FakeClock:
    """A clock that only sleeping moves; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def load(tmp_path: Path, extra: str) -> ScimAppConfig:
    """The app of ``APP`` with ``extra`` lines of its settings."""
    path = tmp_path / "roster.yaml"
    path.write_text(APP + extra, encoding="utf-8")
    app = load_config(path).apps[0]
    assert isinstance(app, ScimAppConfig)
    return app
