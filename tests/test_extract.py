"""Extract: malformed accounts are set aside by id, and an account sent without an id
sets aside every link whose account the listing lacks (it may be that one)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pandas.testing as pdt

from connectors.base import Account, AccountPage
from tasks.extract import AppExtract, read_accounts, set_aside_unreadable

LINKS = pd.DataFrame(
    {
        "user_id": ["u1", "u2", "u3"],
        "remote_id": ["r1", "r2", "r3"],
        "attr_hash": [None, None, None],
        "status": ["active", "active", "active"],
    }
)


class Listing:
    name = "app"
    last_attempts = 1

    def __init__(self, *pages: AccountPage) -> None:
        self.pages = pages

    def list_accounts(self) -> Iterator[AccountPage]:
        yield from self.pages


def _extract(*pages: AccountPage) -> AppExtract:
    return read_accounts(Listing(*pages), ["userName"])  # type: ignore[arg-type]  # a listing only


def test_errors_without_an_id_are_counted() -> None:
    extract = _extract(
        AccountPage([Account("r1", {"userName": "a"})], ["id r2: bad"], ["r2"]),
        AccountPage([], ["resource #1 of the page: no id", "resource #2: no id"], []),
    )
    assert (extract.unreadable, extract.anonymous) == (frozenset({"r2"}), 2)
    assert list(extract.accounts["remote_id"]) == ["r1"]


def test_a_malformed_account_sets_aside_its_link_only() -> None:
    extract = _extract(AccountPage([Account("r1", {"userName": "a"})], ["id r2: bad"], ["r2"]))
    kept, aside = set_aside_unreadable(LINKS, extract)
    assert aside == {"u2"}
    assert list(kept["user_id"]) == ["u1", "u3"]  # r3 is gone: the plan may re-create it


def test_an_account_without_an_id_sets_aside_every_link_missing_from_the_listing() -> None:
    extract = _extract(AccountPage([Account("r1", {"userName": "a"})], ["no id"], []))
    kept, aside = set_aside_unreadable(LINKS, extract)
    assert aside == {"u2", "u3"}
    pdt.assert_frame_equal(kept, LINKS.iloc[[0]])


def test_a_clean_listing_sets_nothing_aside() -> None:
    extract = _extract(AccountPage([Account(r, {"userName": r}) for r in ("r1", "r2", "r3")]))
    kept, aside = set_aside_unreadable(LINKS, extract)
    assert aside == set()
    pdt.assert_frame_equal(kept, LINKS)
