"""bench/faultproxy.py against a real scim2-server on real sockets: each fault kind is really
produced, and Roster's SCIM connector reacts to each the way its docstrings promise.

One standalone scim2-server serves the module; the ``listing`` tenant holds 25 users
created once, tests that write use their own userNames in the ``writes`` tenant.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.faultproxy import REFUSALS, Fault, FaultProxy
from connectors.errors import InvalidResponseError, TransientError
from connectors.http import build_client
from connectors.scim import ScimConnector
from directory.config import DEFAULT_MAPPING, ScimAppConfig
from tasks.apply import ERROR_POLICY, ApplyContext, Disposition, Outcome, WorkItem, apply_account
from tasks.plan import PlannedAction, PlanRules
from tests.scim_apps import TOKEN, free_port, standalone_scim

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
LISTED = 25
PAGE = {"startIndex": 8, "count": 7}
NEVER_FORWARDED = {*REFUSALS, Fault.RESET}


class Sleeps(list[float]):
    """The connector's ``sleep``: recorded, never slept."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with standalone_scim(["listing", "writes"]) as root:
        with httpx.Client(base_url=f"{root}/listing/v2", headers=HEADERS) as client:
            for i in range(LISTED):
                body = {"schemas": [USER], "userName": f"listed{i:02d}"}
                client.post("/Users", json=body).raise_for_status()
        yield root


def direct(upstream: str, tenant: str = "listing") -> httpx.Client:
    return httpx.Client(base_url=f"{upstream}/{tenant}/v2", headers=HEADERS, timeout=10)


def connector(
    proxy: FaultProxy, tenant: str, *, timeout: float = 5.0, max_retries: int = 4, **kw: Any
) -> tuple[ScimConnector, Sleeps]:
    sleeps = Sleeps()
    client = build_client(
        f"{proxy.url}/{tenant}/v2", TOKEN, timeout=timeout, verify_tls=True, concurrency=1
    )
    scim = ScimConnector(
        tenant,
        client,
        paths=list(DEFAULT_MAPPING),
        max_retries=max_retries,
        sleep=sleeps,
        **kw,
    )
    return scim, sleeps


def user_ids(upstream: str) -> list[str]:
    with direct(upstream) as client:
        body = client.get("/Users", params={"count": 1000}).json()
    return [r["id"] for r in body["Resources"]]


# -- every kind is really produced -------------------------------------------------------


@pytest.mark.parametrize("fault", list(Fault))
def test_each_fault_kind_is_produced(upstream: str, fault: Fault) -> None:
    with direct(upstream) as client:
        truth = client.get("/Users", params=PAGE)
    proxy = FaultProxy(upstream, {fault: 1.0}, seed=3, retry_after=3, hold=1.0, slow=0.4)
    with proxy, httpx.Client(base_url=f"{proxy.url}/listing/v2", headers=HEADERS) as client:
        started = time.monotonic()
        try:
            # only the timeout kind gets a short client timeout: a busy machine must not
            # turn a slow honest answer into a fault the test did not inject
            timeout = 0.5 if fault is Fault.TIMEOUT else 10.0
            response: httpx.Response | Exception = client.get(
                "/Users", params=PAGE, timeout=timeout
            )
        except httpx.HTTPError as exc:
            response = exc
        elapsed = time.monotonic() - started
    check_fault(fault, response, truth, elapsed)
    assert proxy.injected == {fault: 1}
    assert proxy.upstream_requests["GET"] == (0 if fault in NEVER_FORWARDED else 1)


def check_fault(
    fault: Fault, response: httpx.Response | Exception, truth: httpx.Response, elapsed: float
) -> None:
    """What the client sees for each kind, compared with the true page."""
    if fault is Fault.RESET:
        assert isinstance(response, httpx.ReadError) and "reset by peer" in str(response)
        return
    if fault is Fault.TIMEOUT:
        assert isinstance(response, httpx.ReadTimeout)
        return
    assert isinstance(response, httpx.Response), response
    statuses = {Fault.STATUS_500: 500, Fault.STATUS_503: 503}
    statuses |= {Fault.RATE_LIMITED: 429, Fault.RATE_LIMITED_BARE: 429}
    assert response.status_code == statuses.get(fault, 200)
    assert response.headers.get("Retry-After") == ("3" if fault is Fault.RATE_LIMITED else None)
    if fault in statuses:
        return
    if fault is Fault.TRUNCATED:
        assert truth.content.startswith(response.content)
        assert 0 < len(response.content) < len(truth.content)
    if fault in (Fault.TRUNCATED, Fault.INVALID_JSON):
        with pytest.raises(ValueError):
            response.json()
        return
    got, want = response.json(), truth.json()
    ids = [r["id"] for r in got["Resources"]]
    if fault is Fault.SLOW:
        assert elapsed >= 0.4 and got == want
    elif fault is Fault.WRONG_TOTAL:
        assert 1 <= abs(got["totalResults"] - want["totalResults"]) <= 3
        assert ids == [r["id"] for r in want["Resources"]]
    else:  # PAGE_SHIFT: the asked-for startIndex, someone else's accounts
        assert got["startIndex"] == PAGE["startIndex"] and got["totalResults"] == LISTED
        assert ids != [r["id"] for r in want["Resources"]]


def test_faults_only_on_scim_resources_and_chosen_methods(upstream: str) -> None:
    with (
        FaultProxy(upstream, {Fault.STATUS_500: 1.0}, methods=["POST"]) as proxy,
        httpx.Client(base_url=f"{proxy.url}/writes/v2", headers=HEADERS) as client,
    ):
        assert client.get("/Users").status_code == 200
        assert client.get("/ServiceProviderConfig").status_code == 200
        posted = client.post("/Users", json={"schemas": [USER], "userName": "never.made"})
    assert posted.status_code == 500
    assert proxy.injected == {Fault.STATUS_500: 1}
    assert proxy.upstream_requests == {"GET": 2}  # the refused POST never reached the app
    with direct(upstream, "writes") as client:
        found = client.get("/Users", params={"filter": 'userName eq "never.made"'}).json()
    assert found["totalResults"] == 0


def test_a_seed_fixes_the_fault_sequence(upstream: str) -> None:
    rates = {Fault.STATUS_500: 0.2, Fault.STATUS_503: 0.2, Fault.RATE_LIMITED: 0.2}

    def statuses(seed: int) -> list[int]:
        with (
            FaultProxy(upstream, rates, seed=seed) as proxy,
            httpx.Client(base_url=f"{proxy.url}/listing/v2", headers=HEADERS) as client,
        ):
            return [client.get("/Users", params={"count": 1}).status_code for _ in range(30)]

    first = statuses(11)
    assert first == statuses(11)
    assert first != statuses(12)
    assert {500, 503, 429, 200} == set(first)


def test_the_command_line_proxy_serves_and_reports_its_counters(upstream: str) -> None:
    port = free_port()
    args = [sys.executable, "-m", "bench.faultproxy", "--upstream", upstream]
    args += ["--port", str(port), "--seed", "1", "--rate-503", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                stats = httpx.get(f"{url}/_faultproxy/stats", timeout=1).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "proxy did not start"
                time.sleep(0.1)
        assert stats["injected"] == {}
        assert httpx.get(f"{url}/listing/v2/Users", headers=HEADERS).status_code == 503
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert json.loads(out)["injected"] == {"503": 1}
    assert TOKEN not in out + err


# -- Roster's SCIM connector under each fault --------------------------------------------


def test_connector_retries_503_and_429_honouring_retry_after(upstream: str) -> None:
    rates = {Fault.STATUS_503: 0.25, Fault.RATE_LIMITED: 0.25, Fault.RATE_LIMITED_BARE: 0.2}
    # the jittered backoffs are drawn from ``random``: seeded, so that none of them falls
    # between 6.5 and 7 s by chance and is taken for the rest of a pause (1 run in ~30)
    random.seed(5)
    with FaultProxy(upstream, rates, seed=5, retry_after=7) as proxy:
        scim, sleeps = connector(proxy, "writes", max_retries=30, backoff_base=0.5)
        made = [scim.create_account({"userName": f"retry{i}"}) for i in range(12)]
        scim.close()
    injected = proxy.injected
    assert injected[Fault.STATUS_503] and injected[Fault.RATE_LIMITED]
    assert injected[Fault.RATE_LIMITED_BARE]
    # sleeps are recorded, not slept, so a 7 s Retry-After pause is still on when the next
    # account's request comes: it waits out the rest (just under 7 s) app-wide
    retries = [s for s in sleeps if not 6.5 < s < 7.0]
    assert len(retries) == sum(injected.values())  # one wait per refusal, then a retry
    assert sleeps.count(7.0) == injected[Fault.RATE_LIMITED]  # Retry-After, to the second
    assert all(0 <= s <= 30.0 for s in sleeps)  # jittered backoff, under the default cap
    assert proxy.upstream_requests["POST"] == 12  # refusals never reached the app
    with direct(upstream, "writes") as client:
        for account in made:
            assert client.get(f"/Users/{account.id}").status_code == 200


def test_a_500_is_raised_as_transient_at_once_for_the_batch_retry(upstream: str) -> None:
    """connectors/http.py retries 429 and 502-504 in place; any other 5xx is handed to
    the apply layer, whose policy retries the batch (and the next run the account)."""
    with FaultProxy(upstream, {Fault.STATUS_500: 1.0}) as proxy:
        scim, sleeps = connector(proxy, "listing")
        with pytest.raises(TransientError) as raised:
            scim.get_account(user_ids(upstream)[0])
        scim.close()
    assert raised.value.status == 500 and scim.last_attempts == 1 and sleeps == []
    assert ERROR_POLICY[TransientError] is Disposition.RETRY


@pytest.mark.parametrize("fault", [Fault.TIMEOUT, Fault.RESET])
def test_connector_retries_lost_connections(upstream: str, fault: Fault) -> None:
    timeout = 0.5 if fault is Fault.TIMEOUT else 10.0
    with FaultProxy(upstream, {fault: 0.5}, seed=2, hold=1.0) as proxy:
        scim, sleeps = connector(proxy, "listing", timeout=timeout, max_retries=20)
        for remote_id in user_ids(upstream)[:6]:
            assert scim.get_account(remote_id).id == remote_id
        scim.close()
    assert proxy.injected[fault] >= 2
    assert len(sleeps) == proxy.injected[fault]  # one retry per lost connection


@pytest.mark.parametrize("fault", [Fault.TRUNCATED, Fault.INVALID_JSON])
def test_a_body_that_is_not_json_is_a_clean_invalid_response(upstream: str, fault: Fault) -> None:
    remote_id = user_ids(upstream)[0]
    with FaultProxy(upstream, {fault: 1.0}) as proxy:
        scim, sleeps = connector(proxy, "listing")
        with pytest.raises(InvalidResponseError, match="body is not JSON") as raised:
            scim.get_account(remote_id)
        with pytest.raises(InvalidResponseError):
            list(scim.list_accounts())
        scim.close()
    assert scim.last_attempts == 1 and sleeps == []  # the app would say the same again
    assert TOKEN not in str(raised.value)
    assert ERROR_POLICY[InvalidResponseError] is Disposition.RECORD


@pytest.mark.parametrize("fault", [Fault.WRONG_TOTAL, Fault.PAGE_SHIFT])
def test_an_inconsistent_listing_fails_rather_than_coming_back_short(
    upstream: str, fault: Fault
) -> None:
    """Paged 7 at a time over 25 accounts, one page in three damaged: whatever the seed,
    the listing is either every account exactly once or an InvalidResponseError."""
    everyone = set(user_ids(upstream))
    failed = 0
    for seed in range(12):
        with FaultProxy(upstream, {fault: 0.3}, seed=seed) as proxy:
            scim, _ = connector(proxy, "listing", page_size=7)
            try:
                listed = [a.id for page in scim.list_accounts() for a in page.accounts]
            except InvalidResponseError:
                failed += 1
                assert proxy.injected[fault] > 0  # never a failure without a fault
                continue
            finally:
                scim.close()
        assert sorted(listed) == sorted(everyone)
    assert failed >= 3


def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated(upstream: str) -> None:
    """A timeout after the app created the account: the retried POST gets 409 and the apply
    layer adopts the account the first POST made."""
    app = ScimAppConfig.model_validate(
        {"name": "writes", "connector": "scim", "base_url": upstream, "token_env": "X"}
    )
    proxy = FaultProxy(upstream, {Fault.TIMEOUT: 1.0}, methods=["POST"], hold=1.5)
    proxy.on_upstream = lambda method, path: setattr(proxy, "rates", {})  # only the first
    with proxy:
        scim, _ = connector(proxy, "writes", timeout=1.0)
        ctx = ApplyContext(app=app, connector=scim, rules=PlanRules.for_app(app))
        item = WorkItem(
            user_id="u-lost",
            user_name="lost.answer",
            remote_id=None,
            action=PlannedAction.CREATE,
            situation="missing",
            changes=None,
            attr_hash=None,
            desired={"userName": "lost.answer", "title": "Engineer", "active": True},
        )
        result = apply_account(item, ctx)
        scim.close()
    assert proxy.injected == {Fault.TIMEOUT: 1}
    assert proxy.upstream_requests["POST"] == 2  # the first landed, its answer was lost
    assert result.outcome is Outcome.ADOPTED
    with direct(upstream, "writes") as client:
        found = client.get("/Users", params={"filter": 'userName eq "lost.answer"'}).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == result.remote_id
