"""prefect.yaml and deployments/serve.py: the same deployments, each resolving to a real flow
with the parameters it is given, the same schedule and the same offboarding trigger.

No server: Prefect's own deploy-file model, entrypoint loader, step runner and
parameter hydration are used, so what passes here is what ``prefect deploy`` accepts.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.deployments.steps.utility import run_shell_script
from prefect.events import DeploymentEventTrigger
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.server.events.actions import RunDeployment
from prefect.server.events.schemas.events import Event, ResourceSpecification
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate
from prefect.utilities.templating import apply_values

from cli.events import deactivation_event
from cli.prefect_env import prefect_defaults
from deployments import serve
from deployments.triggers import offboard_trigger

REPO = Path(__file__).resolve().parents[1]
#: deployment -> (entrypoint, parameters it must take)
EXPECTED = {
    "sync-all": ("flows/sync.py:sync", set()),
    "sync-incremental": ("flows/sync.py:sync", set()),
    "sync-app": ("flows/sync.py:sync_one_app", {"app"}),
    "offboard": ("flows/offboard.py:offboard", {"user"}),
    "provision-user": ("flows/provision.py:provision_user", {"user"}),
}


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def deployments(prefect_yaml: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in prefect_yaml["deployments"]}


def _load(entrypoint: str, monkeypatch: pytest.MonkeyPatch) -> Flow[..., Any]:
    monkeypatch.chdir(REPO)  # entrypoints are relative to the repository root
    flow: Flow[..., Any] = load_flow_from_entrypoint(entrypoint)
    assert isinstance(flow, Flow)
    return flow


def test_prefect_deploy_accepts_the_file(prefect_yaml: dict[str, Any]) -> None:
    """The model ``prefect deploy`` validates with before anything else: a rejected field
    makes it skip every deployment."""
    model = PrefectYamlModel.model_validate(prefect_yaml)
    assert [d.name for d in model.deployments] == list(EXPECTED)


def test_each_entrypoint_is_a_flow_taking_its_parameters(
    deployments: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, (entrypoint, needed) in EXPECTED.items():
        spec = deployments[name]
        assert spec["entrypoint"] == entrypoint
        assert spec["work_pool"]["name"] == "roster"
        flow = _load(entrypoint, monkeypatch)
        accepted = set(flow.parameters.properties)
        given = set(spec.get("parameters") or {})
        for trigger in spec.get("triggers", []):
            given |= set(trigger["parameters"])
        assert needed <= accepted, name
        assert given <= accepted, name
        assert set(flow.parameters.required or []) <= given | needed, name


def test_full_sync_hourly_and_incremental_every_5_minutes_nothing_else_scheduled(
    deployments: dict[str, dict[str, Any]],
) -> None:
    schedules = {name: spec.get("schedules") or [] for name, spec in deployments.items()}
    assert schedules.pop("sync-all") == [{"interval": 3600}]
    assert schedules.pop("sync-incremental") == [{"interval": 300}]
    assert all(not s for s in schedules.values()), schedules
    assert deployments["sync-incremental"]["parameters"] == {"mode": "incremental"}
    assert not deployments["sync-all"]["parameters"]  # the flow's default: full


def test_the_yaml_trigger_is_the_serve_trigger(deployments: dict[str, dict[str, Any]]) -> None:
    (trigger,) = deployments["offboard"]["triggers"]
    assert DeploymentEventTrigger.model_validate(trigger) == offboard_trigger()
    assert not any(spec.get("triggers") for n, spec in deployments.items() if n != "offboard")


def test_the_trigger_takes_the_user_from_the_event() -> None:
    """Rendered the way the server's run-deployment action renders parameters."""
    sent = deactivation_event({"user_id": "u-123", "user_name": "Ann.Lee"}, source="test")
    event = Event.model_validate(sent)  # the server's own model of what it receives
    trigger = offboard_trigger()
    assert trigger.expect == {event.event}
    match = ResourceSpecification.model_validate(trigger.model_dump(mode="json")["match"])
    assert match.matches(event.resource)
    parameters = dict(trigger.parameters or {})
    RunDeployment._upgrade_v1_templates(parameters)
    context = HydrationContext(
        raise_on_error=True, render_jinja=True, jinja_context={"event": event}
    )
    assert hydrate(parameters, context) == {"user": "Ann.Lee"}


def test_flow_runs_start_in_the_clone_prefect_deploy_ran_in(
    prefect_yaml: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build step records the working directory; the pull step starts runs there.
    (The step function is called directly: Prefect's step runner would want a server.)"""
    (build_step,) = prefect_yaml["build"]
    ((fqn, inputs),) = build_step.items()
    assert fqn == "prefect.deployments.steps.run_shell_script"
    inputs = dict(inputs)
    step_id = inputs.pop("id")
    monkeypatch.chdir(tmp_path)
    output = asyncio.run(run_shell_script(**inputs))
    pull = apply_values(prefect_yaml["pull"], {step_id: output})
    assert pull == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}
    ]


def test_serve_builds_the_same_deployments(
    deployments: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    served = {d.name: d for d in serve.build_deployments(interval=600, incremental=120)}
    assert list(served) == list(deployments)
    for name, deployment in served.items():
        assert deployment.entrypoint == deployments[name]["entrypoint"]
        assert (deployment.parameters or {}) == (deployments[name].get("parameters") or {})
    for name, seconds in (("sync-all", 600), ("sync-incremental", 120)):
        (schedule,) = served[name].schedules or []
        assert isinstance(schedule.schedule, IntervalSchedule)
        assert schedule.schedule.interval.total_seconds() == seconds
    assert all(not served[n].schedules for n in ("sync-app", "offboard", "provision-user"))
    assert served["offboard"].triggers == [offboard_trigger()]
    unscheduled = ("sync-all", "sync-incremental", "sync-app", "provision-user")
    assert all(not served[n].triggers for n in unscheduled)


def test_serve_reads_the_intervals_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROSTER_SYNC_INTERVAL", raising=False)
    monkeypatch.delenv("ROSTER_INCREMENTAL_INTERVAL", raising=False)
    assert (serve.sync_interval(), serve.incremental_interval()) == (3600, 300)
    monkeypatch.setenv("ROSTER_SYNC_INTERVAL", "86400")
    monkeypatch.setenv("ROSTER_INCREMENTAL_INTERVAL", "60")
    assert (serve.sync_interval(), serve.incremental_interval()) == (86400, 60)


def test_make_defaults_match_the_deployments() -> None:
    """``make deploy`` replaces a schedule only when its knob differs from prefect.yaml."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"ROSTER_SYNC_INTERVAL ?= {serve.DEFAULT_INTERVAL}\n" in makefile
    assert f"ROSTER_INCREMENTAL_INTERVAL ?= {serve.DEFAULT_INCREMENTAL_INTERVAL}\n" in makefile


def test_make_server_uses_roster_prefect_settings() -> None:
    """``make server`` spells out cli/prefect_env.py's server settings; keep them equal."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for key, value in prefect_defaults().items():
        if key.startswith("PREFECT_SERVER_") and "EPHEMERAL" not in key:
            assert re.search(rf"\b{key}={re.escape(value)}\b", makefile), key


def test_sync_app_requires_an_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``sync-app`` run without ``app`` is refused by Prefect, never a sync of every app."""
    flow = _load(EXPECTED["sync-app"][0], monkeypatch)
    assert flow.parameters.required == ["app"]
    assert not _load(EXPECTED["sync-all"][0], monkeypatch).parameters.required
