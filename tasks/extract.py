"""Extract: the directory's users and an app's accounts, as dataframes.

A listing that cannot complete raises: a half-read app must never look like an app whose
accounts were deleted, or the plan would re-create (or the directory side deprovision)
people. Accounts the app returned but that failed validation are kept aside by id, so
their users are neither re-created nor deprovisioned this run. One that came without a
usable id could be any linked account missing from the listing, so those are kept aside
too, for as long as the app sends it so.

An incremental run reads no listing: ``read_subset`` fetches only the accounts of the
users it considers, by id where they are linked and by match attribute where not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from connectors.base import Connector
from connectors.errors import BadRequestError, ConflictError, InvalidResponseError, NotFoundError
from directory.store import Store


@dataclass(frozen=True)
class AppExtract:
    #: remote_id plus one column per target attribute
    accounts: pd.DataFrame
    #: messages for accounts that failed validation (one bad account fails alone)
    errors: list[str] = field(default_factory=list)
    #: remote ids of those accounts, where the app gave one
    unreadable: frozenset[str] = frozenset()
    #: how many of them came without a usable id
    anonymous: int = 0


@task(name="extract-directory", cache_policy=NO_CACHE)
def extract_directory(store: Store) -> pd.DataFrame:
    return store.read_users()


@task(name="extract-app", task_run_name="extract-{connector.name}", cache_policy=NO_CACHE)
def extract_app(connector: Connector, targets: Sequence[str]) -> AppExtract:
    return read_accounts(connector, targets)


def read_accounts(connector: Connector, targets: Sequence[str]) -> AppExtract:
    rows: list[dict[str, object]] = []
    errors: list[str] = []
    unreadable: set[str] = set()
    anonymous = 0
    for page in connector.list_accounts():
        rows.extend({"remote_id": a.id, **a.attributes} for a in page.accounts)
        errors.extend(page.errors)
        unreadable.update(page.unreadable_ids)
        anonymous += len(page.errors) - len(page.unreadable_ids)
    frame = pd.DataFrame(rows, columns=["remote_id", *targets], dtype=object)
    accounts = frame.where(frame.notna(), None)
    return AppExtract(accounts, errors, frozenset(unreadable), anonymous)


def set_aside_unreadable(links: pd.DataFrame, extract: AppExtract) -> tuple[pd.DataFrame, set[str]]:
    """Links to accounts the app returned malformed: leave them out of this plan entirely.
    With accounts that came without an id, that is every link whose account is missing
    from the listing: it may be one of them, and must not be re-created beside it."""
    bad = links["remote_id"].isin(list(extract.unreadable))
    if extract.anonymous:
        bad |= ~links["remote_id"].isin(list(extract.accounts["remote_id"]))
    if not bad.any():
        return links, set()
    return links[~bad], set(links.loc[bad, "user_id"])


# -- incremental: only the accounts of the users a run considers ----------------------------


@dataclass(frozen=True)
class Lookup:
    """An unlinked user's value of one match attribute, to find an existing account by."""

    user_id: str
    attribute: str
    value: str


def read_subset(
    connector: Connector,
    targets: Sequence[str],
    remote_ids: Sequence[str],
    lookups: Sequence[Lookup],
    taken: frozenset[str],
) -> tuple[AppExtract, set[str]]:
    """The linked accounts by id (``GET /Users/{id}``; one the app no longer has is simply
    absent, so the plan sees it gone) and the accounts the unlinked users match, found
    through the connector's search by match attribute. An account already linked to
    someone (``taken``) is nobody's match. Returns the extract and the users whose search
    found several accounts (disputed: left for the full run to report).

    An attribute the app cannot search by (a BadRequestError from ``find_account``) is
    skipped; any other error stops the app as a failed listing would.
    """
    rows: list[dict[str, object]] = []
    errors: list[str] = []
    unreadable: set[str] = set()
    for remote_id in remote_ids:
        try:
            account = connector.get_account(remote_id)
        except NotFoundError:
            continue
        except InvalidResponseError as exc:
            errors.append(f"id {remote_id}: {exc}")
            unreadable.add(remote_id)
            continue
        rows.append({"remote_id": account.id, **account.attributes})
    seen = set(remote_ids) | set(taken)
    disputed: set[str] = set()
    for lookup in lookups:
        if lookup.user_id in disputed:
            continue
        try:
            found = connector.find_account(lookup.attribute, lookup.value)
        except ConflictError:
            disputed.add(lookup.user_id)
            continue
        except BadRequestError:
            continue
        if found is not None and found.id not in seen:
            seen.add(found.id)
            rows.append({"remote_id": found.id, **found.attributes})
    frame = pd.DataFrame(rows, columns=["remote_id", *targets], dtype=object)
    return AppExtract(frame.where(frame.notna(), None), errors, frozenset(unreadable)), disputed
