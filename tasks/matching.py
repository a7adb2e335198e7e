"""Matching for the plan: unlinked directory users paired with free app accounts, one
match attribute at a time, and ``AccountIndex``, the app's remote ids hashed once for
every lookup the plan makes by remote id. Pure pandas/numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.planrules import PlanRules


class AccountIndex:
    """The app's remote ids, hashed once for every lookup the plan makes by remote id
    (which links are live, which accounts are free, linked rows' accounts, references).

    At a million accounts each pandas lookup by remote id rebuilds a hash table over
    object strings (about a second each); positions in ``actual`` are reused instead.
    A listing with duplicate remote ids (connectors de-duplicate, so only a caller's
    frame can have them) keeps pandas' label semantics: ``positions`` is then None.
    """

    def __init__(self, remote_ids: pd.Series) -> None:
        self.remote_ids = remote_ids
        self.index = pd.Index(remote_ids.to_numpy(dtype=object), dtype=object)
        self.unique = bool(self.index.is_unique)

    def positions(self, remote_ids: pd.Series) -> np.ndarray | None:
        """Each id's row in ``actual``, -1 where absent; None if ids are not unique."""
        if not self.unique:
            return None
        return self.index.get_indexer(remote_ids.to_numpy(dtype=object))

    def contains(self, remote_ids: pd.Series, at: np.ndarray | None) -> np.ndarray:
        """``remote_ids.isin(actual ids)``; ``at``: their ``positions``."""
        if at is None:
            return remote_ids.isin(self.remote_ids).to_numpy(dtype=bool)
        return at >= 0

    def claimed(self, remote_ids: pd.Series, at: np.ndarray | None) -> np.ndarray:
        """Per account, ``actual ids .isin(remote_ids)``; ``at``: their ``positions``."""
        if at is None:
            return self.remote_ids.isin(remote_ids).to_numpy(dtype=bool)
        claimed = np.zeros(len(self.index), dtype=bool)
        claimed[at] = True
        return claimed

    def owners(
        self, live: pd.DataFrame, live_at: np.ndarray | None, pairs: pd.DataFrame
    ) -> pd.Series | np.ndarray:
        """Who owns each account: a user_id per row of ``actual`` (None: nobody), or,
        without positions, a Series remote_id -> user_id. Links first, then matches;
        the first owner of an account wins."""
        if live_at is None:
            owner = pd.concat(
                [
                    pd.Series(live["user_id"].to_numpy(), index=live["remote_id"].to_numpy()),
                    pd.Series(pairs["user_id"].to_numpy(), index=pairs["remote_id"].to_numpy()),
                ]
            )
            return owner[~owner.index.duplicated()]
        pair_at = self.index.get_indexer(pairs["remote_id"].to_numpy(dtype=object))
        at = np.concatenate([live_at, pair_at])
        users = np.concatenate(
            [live["user_id"].to_numpy(dtype=object), pairs["user_id"].to_numpy(dtype=object)]
        )
        rows, first = np.unique(at, return_index=True)
        owner = np.full(len(self.index), None, dtype=object)
        owner[rows] = users[first]
        return owner

    def translate(self, raw: pd.Series, owners: pd.Series | np.ndarray) -> pd.Series:
        """Each remote id in ``raw`` replaced by its owner's user_id, where it has one."""
        if isinstance(owners, pd.Series):
            mapped = raw.map(owners)
            return mapped.astype(object).where(mapped.notna(), raw.astype(object))
        at = self.index.get_indexer(raw.to_numpy(dtype=object))
        found = np.full(len(raw), None, dtype=object)
        found[at >= 0] = owners[at[at >= 0]]
        known = pd.notna(found)
        values = raw.to_numpy(dtype=object).copy()
        values[known] = found[known]
        return pd.Series(values, index=raw.index, dtype=object)


@dataclass(frozen=True)
class Matches:
    #: user_id, remote_id, match_attr
    pairs: pd.DataFrame
    disputed_users: dict[str, list[str]]
    disputed_accounts: dict[str, list[str]]


def match_accounts(users: pd.DataFrame, accounts: pd.DataFrame, rules: PlanRules) -> Matches:
    """Pair unlinked users with free accounts, one match attribute at a time, in order.

    A value shared by several users or several accounts matches nobody: both sides are
    disputed and leave the pool, because guessing would hand someone another person's account.
    """
    pairs: list[pd.DataFrame] = []
    disputed_users: dict[str, list[str]] = {}
    disputed_accounts: dict[str, list[str]] = {}
    user_pool, account_pool = users, accounts
    for attr in rules.match_on:
        folded = attr in rules.case_insensitive
        left = pd.DataFrame({"user_id": user_pool["user_id"], "key": _key(user_pool[attr], folded)})
        right = pd.DataFrame(
            {"remote_id": account_pool["remote_id"], "key": _key(account_pool[attr], folded)}
        )
        hits = left[left["key"] != ""].merge(right[right["key"] != ""], on="key")
        per_user = hits.groupby("user_id")["remote_id"].transform("size")
        per_account = hits.groupby("remote_id")["user_id"].transform("size")
        clean = hits[(per_user == 1) & (per_account == 1)]
        messy = hits[(per_user > 1) | (per_account > 1)]
        for user_id, group in messy.groupby("user_id"):
            disputed_users.setdefault(str(user_id), []).extend(group["remote_id"])
        for remote_id, group in messy.groupby("remote_id"):
            disputed_accounts.setdefault(str(remote_id), []).extend(group["user_id"])
        pairs.append(clean[["user_id", "remote_id"]].assign(match_attr=attr))
        taken_users = set(hits["user_id"])
        taken_accounts = set(hits["remote_id"])
        user_pool = user_pool[~user_pool["user_id"].isin(taken_users)]
        account_pool = account_pool[~account_pool["remote_id"].isin(taken_accounts)]
    all_pairs = (
        pd.concat(pairs, ignore_index=True)
        if pairs
        else pd.DataFrame(columns=["user_id", "remote_id", "match_attr"])
    )
    return Matches(all_pairs, disputed_users, disputed_accounts)


def _key(values: pd.Series, folded: bool) -> pd.Series:
    text = values.astype("string").fillna("").str.strip()
    return (text.str.lower() if folded else text).astype(object)
