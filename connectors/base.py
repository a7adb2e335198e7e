"""The connector Protocol every app kind satisfies, and the account shape they share.

Accounts travel between layers as flat attribute maps keyed by the app's attribute
paths (for SCIM: ``userName``, ``name.givenName``, ``emails[type eq "work"].value``,
``urn:...:enterprise:2.0:User:department``). A connector converts to and from its wire
format; everything above it compares flat maps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

Value: TypeAlias = str | bool | None
Attributes: TypeAlias = Mapping[str, Value]


@dataclass(frozen=True)
class Account:
    """One account as the app reports it: its remote id and the attributes Roster reads."""

    id: str
    attributes: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountPage:
    """One page of a listing; ``errors`` holds accounts that failed validation on their own."""

    accounts: list[Account]
    errors: list[str] = field(default_factory=list)
    #: remote ids of the accounts in ``errors``, where the app gave one
    unreadable_ids: list[str] = field(default_factory=list)


@runtime_checkable
class Connector(Protocol):
    """What the sync engine needs from an app. Checked by mypy, not by inheritance."""

    name: str

    @property
    def last_attempts(self) -> int:
        """HTTP sends (retries included) of this thread's most recent call."""
        ...

    def list_accounts(self) -> Iterator[AccountPage]:
        """Every account in the app, page by page. Raises if the listing cannot complete."""
        ...

    def find_account(self, attribute: str, value: str) -> Account | None:
        """The one account whose ``attribute`` equals ``value``, or None."""
        ...

    def get_account(self, remote_id: str) -> Account:
        """One account by id. Raises NotFoundError."""
        ...

    def create_account(self, attributes: Attributes) -> Account:
        """Create an account. Raises ConflictError when a unique attribute is taken."""
        ...

    def update_account(self, remote_id: str, changes: Attributes, current: Attributes) -> None:
        """Write ``changes`` (path -> new value); ``current`` is the full desired state,
        for apps that can only replace the whole resource (PUT)."""
        ...

    def deactivate_account(self, remote_id: str) -> None:
        """Disable sign-in, keep the account (SCIM: ``active=false``)."""
        ...

    def delete_account(self, remote_id: str) -> None:
        """Remove the account. Raises NotFoundError if it is already gone."""
        ...

    def close(self) -> None:
        """Release the HTTP client."""
        ...


@dataclass(frozen=True)
class AppGroup:
    """One group as the app reports it: its id, name and members' account ids."""

    id: str
    display_name: str
    members: frozenset[str] = frozenset()


@runtime_checkable
class GroupConnector(Protocol):
    """What keeping an app's groups needs, for apps that have groups (SCIM ``/Groups``).

    Membership changes go in chunks: ``change_members`` sends as many requests as
    ``per_request`` requires, each adding or removing at most that many members."""

    def list_groups(self) -> Iterator[list[AppGroup]]:
        """Every group in the app, page by page, with members."""
        ...

    def create_group(self, display_name: str) -> AppGroup: ...

    def rename_group(self, remote_id: str, display_name: str) -> None: ...

    def change_members(
        self, remote_id: str, add: Sequence[str], remove: Sequence[str], per_request: int
    ) -> int:
        """Add and remove members; returns the requests sent."""
        ...

    def delete_group(self, remote_id: str) -> None:
        """Raises NotFoundError if it is already gone."""
        ...
