"""AIP-158 paging, the one rule every list follows: how many items a page holds, and whether more follow.

Every list is a keyset over a unique, ordered key (customers by code, a customer's reference
rows by id): a page is read with `LIMIT size + 1`, and the extra row only tells that the list
goes on. Never OFFSET: a keyset page costs the same at row 100,000 as at row 0, and rows added
or removed between two calls neither shift the next page nor repeat an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from fleet_server.errors import InvalidArgument

T = TypeVar("T")


@dataclass(frozen=True)
class PageSizes:
    """The sizes one list allows: `default` for a `page_size` of 0, never more than `maximum`."""

    default: int
    maximum: int

    def size(self, page_size: int) -> int:
        """AIP-158: 0 means the default, too large is clamped, negative is the caller's mistake."""
        if page_size < 0:
            raise InvalidArgument.single("page_size", "must not be negative")
        if page_size == 0:
            return self.default
        return min(page_size, self.maximum)


CUSTOMER_PAGES = PageSizes(default=50, maximum=1000)
# A customer's sites, devices, municipalities and tariffs. The default is also the size of the
# first pages that GetCustomerDetail carries, so the detail's next-page tokens continue exactly
# where a ListDevices call with page_size 0 would.
REFERENCE_PAGES = PageSizes(default=100, maximum=1000)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list in key order; `more` is true when items follow the last one.

    `total_size` is how many items the whole list had when the page was read (AIP-158's
    optional total), or None where counting is not offered.
    """

    items: list[T]
    more: bool
    total_size: int | None = None


def cut(rows: Sequence[T], size: int, total_size: int | None = None) -> Page[T]:
    """The page of `size` items from `rows`, read with `LIMIT size + 1` (the extra row means "more")."""
    return Page(items=list(rows[:size]), more=len(rows) > size, total_size=total_size)
