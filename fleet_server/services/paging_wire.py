"""AIP-158 on the wire: opaque page tokens bound to the listing that issued them, pages cut to a byte budget.

Every list RPC (ListCustomers, ListSites, ListDevices, ListMunicipalities, ListTariffs, and the
first pages GetCustomerDetail carries) encodes its pages here, so there is one token format and
one set of refusals. A token is unpadded URL-safe base64 of
`{"v":2,"list":"ListDevices","of":"ACME","after":1234}`: the RPC and the customer it lists
(`of`, empty for ListCustomers) bind it to its request, `after` is the keyset position. It is
encoded, not signed: it holds nothing an admin could not list anyway, and a key shared by every
server process would be one more secret to deploy (a per-process key breaks paging across
`--workers` and load-balanced servers). A token altered by hand is either refused or names
another position in the same list, which the same admin could ask for directly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from google.protobuf.message import Message

from fleet_server.domain.customers import CODE_PATTERN
from fleet_server.domain.paging import Page
from fleet_server.errors import FieldViolation, InvalidArgument, Reason

R = TypeVar("R")
M = TypeVar("M", bound=Message)

# Bumped whenever the token's content changes, so an older server's token fails clearly (v1 held
# only the last customer code; it is refused, and the caller starts the list again).
_TOKEN_VERSION = 2
_MAX_TOKEN_LENGTH = 256
_MAX_ID = 2**63 - 1
# Items of one page stop at about this many encoded bytes, whatever the page size asked for
# (AIP-158 lets a page hold fewer items than page_size before the end). Four lists of the detail
# at the budget still fit the default 4 MiB message limit; a page always holds at least one item.
PAGE_BYTES = 512 * 1024


class Listing(StrEnum):
    """A list RPC; its name goes into the token, so a token continues only the list that issued it."""

    CUSTOMERS = "ListCustomers"
    SITES = "ListSites"
    DEVICES = "ListDevices"
    MUNICIPALITIES = "ListMunicipalities"
    TARIFFS = "ListTariffs"
    FLEET_HEALTH = "GetFleetHealth"
    SILENT_DEVICES = "ListSilentDevices"
    FLEET_STORAGE = "GetFleetStorage"


_LISTINGS = frozenset(str(listing) for listing in Listing)


def _of(listing: str, scope: str) -> str:
    """`ListDevices for ACME`, or `ListCustomers` for a list that belongs to no customer."""
    return f"{listing} for {scope}" if scope else listing


def _refusal(listing: Listing, scope: str, detail: str = "") -> InvalidArgument:
    issuer = f"a previous {listing} response" + (f" for {scope}" if scope else "")
    description = f"is not a page token from {issuer}{detail}"
    return InvalidArgument([FieldViolation("page_token", description)], reason=Reason.PAGE_TOKEN_INVALID)


def encode_token(listing: Listing, scope: str, after: str | int) -> str:
    """The opaque token that continues `listing` of `scope` after the key `after`."""
    payload = {"v": _TOKEN_VERSION, "list": str(listing), "of": scope, "after": after}
    text = json.dumps(payload, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _decode(token: str, listing: Listing, scope: str) -> object:
    """The `after` of a token issued by `listing` of `scope`, not yet checked for its type."""
    never_issued = _refusal(listing, scope)
    if len(token) > _MAX_TOKEN_LENGTH:
        raise never_issued
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise never_issued from None
    if not isinstance(payload, dict) or set(payload) != {"v", "list", "of", "after"}:
        raise never_issued
    issued_by, issued_for = payload["list"], payload["of"]
    # Only a well-formed list and customer are named back in the refusal, never arbitrary text.
    if (
        payload["v"] != _TOKEN_VERSION
        or issued_by not in _LISTINGS
        or not isinstance(issued_for, str)
        or (issued_for and not CODE_PATTERN.fullmatch(issued_for))
    ):
        raise never_issued
    if (issued_by, issued_for) != (str(listing), scope):
        raise _refusal(
            listing,
            scope,
            f" (it continues {_of(issued_by, issued_for)}); "
            "send it with the request that returned it, or start again without one",
        )
    return payload["after"]


def decode_code_token(token: str, listing: Listing) -> str | None:
    """The customer code a token of `listing` (a list of customers) continues after; None at the start."""
    if not token:
        return None
    after = _decode(token, listing, "")
    if not isinstance(after, str) or not CODE_PATTERN.fullmatch(after):
        raise _refusal(listing, "")
    return after


def decode_id_token(token: str, listing: Listing, code: str) -> int | None:
    """The id a token of `listing` for customer `code` continues after; None at the start."""
    if not token:
        return None
    after = _decode(token, listing, code)
    # bool is an int to Python, never to the encoder.
    if type(after) is not int or not 0 < after <= _MAX_ID:
        raise _refusal(listing, code)
    return after


def _framed_size(message: Message) -> int:
    """Bytes `message` takes as one element of a repeated field: tag, length prefix, body."""
    size = message.ByteSize()
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def encode_page(
    page: Page[R],
    encode: Callable[[R], M],
    key: Callable[[R], str | int],
    listing: Listing,
    scope: str = "",
    budget: int = PAGE_BYTES,
) -> tuple[list[M], str]:
    """The page's messages and its `next_page_token` (empty when the list ends here).

    Items stop once the next one would take the page past `budget` bytes (at least one item is
    always sent); the token then continues after the last item sent, so a page cut short loses
    nothing.
    """
    messages: list[M] = []
    used = 0
    for record in page.items:
        message = encode(record)
        size = _framed_size(message)
        if messages and used + size > budget:
            return messages, encode_token(listing, scope, key(page.items[len(messages) - 1]))
        messages.append(message)
        used += size
    if page.more and page.items:
        return messages, encode_token(listing, scope, key(page.items[-1]))
    return messages, ""
