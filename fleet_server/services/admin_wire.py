"""FleetAdminService wire ⇄ domain: `Customer` messages, opaque page tokens, the grace duration."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import timedelta

from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import resources_pb2

from fleet_server.domain.customers import CODE_PATTERN, CustomerRecord
from fleet_server.errors import InvalidArgument
from fleet_server.rpc.wellknown import to_timedelta, to_timestamp

# Bumped if the token's content ever changes, so an old client's token fails clearly.
_PAGE_TOKEN_VERSION = 1
_MAX_PAGE_TOKEN_LENGTH = 256


def customer_message(record: CustomerRecord) -> resources_pb2.Customer:
    """The wire `Customer`; `previous_token_expires_at` is set only while the grace window is open."""
    message = resources_pb2.Customer(
        id=record.id,
        code=record.code,
        name=record.name,
        is_active=record.is_active,
        created_at=to_timestamp(record.created_at),
        token_issued_at=to_timestamp(record.token_issued_at),
    )
    if record.previous_token_expires_at is not None:
        message.previous_token_expires_at.CopyFrom(to_timestamp(record.previous_token_expires_at))
    return message


def encode_page_token(last_code: str | None) -> str:
    """The opaque `next_page_token` after `last_code`; empty when the list is complete.

    The content (a version and the last code seen) is not secret — every admin may list every
    customer — so it is encoded, not signed; `decode_page_token` validates it strictly.
    """
    if last_code is None:
        return ""
    payload = json.dumps({"v": _PAGE_TOKEN_VERSION, "after": last_code}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode_page_token(token: str) -> str | None:
    """The code a page token continues after; None for the first page."""
    if not token:
        return None
    bad = InvalidArgument.single("page_token", "is not a page token from a previous ListCustomers response")
    if len(token) > _MAX_PAGE_TOKEN_LENGTH:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(payload, dict) or payload.get("v") != _PAGE_TOKEN_VERSION:
        raise bad
    after = payload.get("after")
    if not isinstance(after, str) or not CODE_PATTERN.fullmatch(after):
        raise bad
    return after


def requested_grace(request: pb.RotateCustomerTokenRequest) -> timedelta | None:
    """The grace window asked for; None when unset (the server default applies)."""
    if not request.HasField("grace_period"):
        return None
    duration = request.grace_period
    if (duration.seconds > 0 > duration.nanos) or (duration.seconds < 0 < duration.nanos):
        raise InvalidArgument.single("grace_period", "seconds and nanos must have the same sign")
    return to_timedelta(duration)


def deleted_rows_message(counts: dict[str, int]) -> pb.DeleteCustomerResponse:
    return pb.DeleteCustomerResponse(deleted_rows=counts)
