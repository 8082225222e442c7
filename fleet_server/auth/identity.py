"""Who is calling: the identity the interceptor proved, handed to the handler explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc.aio

from fleet_server.errors import PermissionDenied


@dataclass(frozen=True)
class CustomerIdentity:
    """A portal. `customer_id` is the only customer id any write may use.

    `previous_token` is true when the call used the token in its rotation grace window; the
    access log says so, letting an operator see which portals still have to switch.
    """

    customer_id: int
    code: str
    previous_token: bool = False


@dataclass(frozen=True)
class AdminIdentity:
    """An operator, by the name of the admin token used."""

    token_id: int
    name: str


Identity = CustomerIdentity | AdminIdentity


class CallContext:
    """The aio servicer context plus what the interceptor knows about the call.

    Servicers receive this instead of the bare context: `context.customer()` is the
    authenticated customer (never a customer id from the message), and `add_rows` feeds the
    one access-log line per RPC. Everything else is delegated to the real context.
    """

    def __init__(self, inner: grpc.aio.ServicerContext, identity: Identity, method: str) -> None:
        self._inner = inner
        self.identity = identity
        self.method = method
        self.rows = 0

    def customer(self) -> CustomerIdentity:
        if not isinstance(self.identity, CustomerIdentity):  # the policy table makes this unreachable
            raise PermissionDenied("this method needs a customer token")
        return self.identity

    def admin(self) -> AdminIdentity:
        if not isinstance(self.identity, AdminIdentity):
            raise PermissionDenied("this method needs an admin token")
        return self.identity

    def add_rows(self, count: int) -> None:
        """Count rows (items) this call received or wrote, for the access log."""
        self.rows += count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
