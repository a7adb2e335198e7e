"""The sync flow end to end with an LDAP app beside a SCIM one, checked on the slapd as
its rootdn: every mapped attribute, the access group, zero writes on a second run
(counted by the server's own monitor), leavers locked and let back in, drift repaired."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ldap3
import pytest

from flows.sync import sync
from tests.harnesses.ldap import LdapHarness
from tests.ldap_server import SERVICE_DN, Slapd
from tests.sync_env import Installation, people, person

WRITES = ("created", "updated", "deactivated", "deleted", "linked")


@pytest.fixture
def env(
    make_installation: Callable[..., Installation],
    ldap: LdapHarness,
    slapd: Slapd,
    monkeypatch: pytest.MonkeyPatch,
) -> Installation:
    for name, value in ldap.environment().items():
        monkeypatch.setenv(name, value)
    with slapd.admin() as admin:
        admin.add(f"cn=staff,{ldap.tree.groups}", ["groupOfNames"], {"member": [SERVICE_DN]})
    settings = {**ldap.app_config(), "groups_dn": ldap.tree.groups, "groups": ["staff"]}
    settings.pop("name")
    return make_installation(["chat", "dir"], dir=settings)


def run(env: Installation) -> dict[str, Any]:
    return sync(config_path=env.config_path)["apps"]


def staff(slapd: Slapd, ldap: LdapHarness) -> set[str]:
    with slapd.admin() as admin:
        admin.search(f"cn=staff,{ldap.tree.groups}", "(objectClass=*)", attributes=["member"])
        members = admin.response[0]["attributes"]["member"]
    return {str(m).split(",", 1)[0].removeprefix("uid=") for m in members if str(m) != SERVICE_DN}


def test_sync_provisions_ldap_next_to_scim_and_a_second_run_writes_nothing(
    env: Installation, ldap: LdapHarness, slapd: Slapd
) -> None:
    env.import_people([*people(8, apps="chat;dir"), person(8, apps="chat")])
    first = run(env)
    assert first["dir"]["status"] == "ok", first["dir"]
    assert first["dir"]["summary"]["created"] == 8
    assert first["chat"]["summary"]["created"] == 9
    with slapd.admin() as admin:
        admin.search(
            f"uid=user0003,{ldap.tree.people}",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=[
                "cn",
                "givenName",
                "sn",
                "mail",
                "title",
                "employeeNumber",
                "departmentNumber",
            ],
        )
        attributes = admin.response[0]["attributes"]
    assert {k: list(v) for k, v in attributes.items()} == {
        "cn": ["Given3 Family3"],
        "givenName": ["Given3"],
        "sn": ["Family3"],
        "mail": ["user0003@example.com"],
        "title": ["Engineer"],
        "employeeNumber": ["E00003"],
        "departmentNumber": ["Engineering"],
    }
    assert set(ldap.entries()) == {f"user{i:04d}" for i in range(8)}
    assert staff(slapd, ldap) == {f"user{i:04d}" for i in range(8)}

    writes = slapd.writes()
    second = run(env)
    assert slapd.writes() == writes
    assert {k: second["dir"]["summary"][k] for k in WRITES} == dict.fromkeys(WRITES, 0)
    assert second["dir"]["summary"]["unchanged"] == 8


def test_leavers_are_locked_and_let_back_in_and_drift_is_repaired(
    env: Installation, ldap: LdapHarness, slapd: Slapd
) -> None:
    team = people(5, apps="chat;dir")
    env.import_people(team)
    run(env)

    team[2]["active"] = "false"
    team[4]["title"] = "Manager"
    env.import_people(team)
    with slapd.admin() as admin:  # someone edits an entry by hand
        admin.modify(
            f"uid=user0003,{ldap.tree.people}", {"cn": [(ldap3.MODIFY_REPLACE, ["Hacked"])]}
        )
    result = run(env)["dir"]
    assert result["summary"]["deactivated"] == 1
    assert result["summary"]["updated"] == 2
    drift = {(r["user"], r["attribute"], r["old"], r["new"]) for r in result["drift"]}
    assert ("user0003", "cn", "Hacked", "Given3 Family3") in drift
    assert ("user0004", "title", "Engineer", "Manager") in drift
    entries = ldap.entries()
    assert entries["user0002"]["active"] is False
    assert entries["user0003"]["cn"] == "Given3 Family3"
    assert entries["user0004"]["title"] == ["Manager"]
    assert staff(slapd, ldap) == {"user0000", "user0001", "user0003", "user0004"}

    team[2]["active"] = "true"
    env.import_people(team)
    back = run(env)["dir"]
    assert back["summary"]["updated"] == 1
    assert ldap.entries()["user0002"]["active"] is True
    assert "user0002" in staff(slapd, ldap)
