"""SCIM index pagination (RFC 7644 §3.4.2.4), declared once as a tiny object.

The connector asks ``first_request()``, reports each page with ``update()``, and asks
``next_request()`` until it returns None. A listing that does not add up raises
InvalidResponseError: an account missing from the listing would read as "gone from the
app" and be planned for re-creation, or worse, hide a disputed account, so a broken
listing must fail the extract rather than look like fewer accounts.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.errors import InvalidResponseError

#: resources without a usable id each fail alone, up to this many; past it, a listing
#: where they outnumber the readable ones is broken as a whole
ANONYMOUS_GRACE = 10


class ScimPaginator:
    """``startIndex``/``count`` paging until ``totalResults``.

    Servers may return fewer resources than ``count`` (scim2-server caps it at 1000,
    RFC 7644 §3.4.2.4 allows any cap), so the next index advances by what was received,
    never by what was asked. Repeated ids across pages are reported as not fresh.
    """

    def __init__(self, page_size: int) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self._count = page_size
        self._next_index = 1
        self._total: int | None = None
        self._seen: set[str] = set()
        self._anonymous = 0  # resources whose id could not be read: counted, not deduped

    def first_request(self) -> dict[str, int]:
        return {"startIndex": 1, "count": self._count}

    def update(
        self, *, total_results: int, start_index: int | None, ids: Sequence[str | None]
    ) -> list[bool]:
        """Account for one page (``ids`` in order, None where unreadable) and say which
        of its resources are new. Raises InvalidResponseError on an inconsistent page."""
        here = self._next_index
        if self._total is None:
            self._total = total_results
        elif total_results != self._total:
            # Offset paging over a changing set skips or repeats accounts: start over.
            raise InvalidResponseError(
                f"listing changed while paging: totalResults went from {self._total} "
                f"to {total_results} at startIndex {here}"
            )
        if start_index is not None and start_index != here:
            raise InvalidResponseError(
                f"asked for startIndex {here}, the app answered startIndex {start_index}"
            )
        if not ids and here <= total_results:
            raise InvalidResponseError(
                f"empty page at startIndex {here} of totalResults {total_results}"
            )
        self._next_index += len(ids)
        fresh = [self._is_new(remote_id) for remote_id in ids]
        # Either rule stops an app that answers every startIndex alike from being paged
        # for ever (a totalResults of 10**12 costs it nothing).
        if ids and not any(fresh):
            raise InvalidResponseError(
                f"the page at startIndex {here} repeats only accounts already listed"
            )
        if self._anonymous > ANONYMOUS_GRACE and self._anonymous > len(self._seen):
            raise InvalidResponseError(
                f"{self._anonymous} resources without a usable id by startIndex {here}, "
                f"more than the {len(self._seen)} with one"
            )
        return fresh

    def next_request(self) -> dict[str, int] | None:
        """The next page's parameters, or None when the listing is complete."""
        if self._total is None:
            return self.first_request()
        if self._next_index <= self._total:
            return {"startIndex": self._next_index, "count": self._count}
        distinct = len(self._seen) + self._anonymous
        if distinct < self._total:
            raise InvalidResponseError(
                f"listing incomplete: {distinct} distinct accounts of totalResults "
                f"{self._total} (pages repeated accounts)"
            )
        return None

    def _is_new(self, remote_id: str | None) -> bool:
        if remote_id is None:
            self._anonymous += 1
            return True
        if remote_id in self._seen:
            return False
        self._seen.add(remote_id)
        return True
