"""The call as a servicer sees it: the identity the interceptor proved, handed over explicitly."""

from __future__ import annotations

from typing import Any

import grpc.aio

from fleet_server.db.scheduler import Turn
from fleet_server.domain.authentication import AdminIdentity, CustomerIdentity, Identity
from fleet_server.errors import PermissionDenied


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

    @property
    def turn(self) -> Turn:
        """This caller's place in the database queues: its customer's own, or the operators' lane."""
        if isinstance(self.identity, CustomerIdentity):
            return Turn.ingest(self.identity.customer_id)
        return Turn.operator(self.identity.name)

    def add_rows(self, count: int) -> None:
        """Count rows (items) this call received or wrote, for the access log."""
        self.rows += count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
