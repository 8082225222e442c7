"""Token → identity, against the database; the interceptor depends only on the `TokenStore` protocol.

No cache: one indexed lookup per call (per stream, for the streaming RPCs) is cheap, and it makes
rotation, deactivation, revocation and deletion take effect on the very next call.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fleet_server.auth.identity import AdminIdentity, CustomerIdentity, Identity
from fleet_server.auth.tokens import TokenKind, hash_token, kind_of
from fleet_server.clock import Clock
from fleet_server.db.models import AdminToken, Customer
from fleet_server.db.session import Database
from fleet_server.errors import Reason, Unauthenticated


class TokenStore(Protocol):
    """Resolves a bearer token to an identity, or raises `Unauthenticated` saying why."""

    async def authenticate(self, token: str) -> Identity: ...


def find_identity(session: Session, token: str, clock: Clock) -> Identity:
    """The identity behind `token`; raises `Unauthenticated` with a message safe to show."""
    kind = kind_of(token)
    if kind is None:
        raise Unauthenticated("malformed token", reason=Reason.TOKEN_MALFORMED)
    digest = hash_token(token)
    if kind is TokenKind.ADMIN:
        admin = session.execute(
            select(AdminToken.id, AdminToken.name).where(
                AdminToken.token_hash == digest, AdminToken.revoked_at.is_(None)
            )
        ).one_or_none()
        if admin is None:
            raise Unauthenticated("unknown or revoked admin token", reason=Reason.TOKEN_UNKNOWN)
        return AdminIdentity(token_id=admin.id, name=admin.name)

    row = session.execute(
        select(
            Customer.id, Customer.code, Customer.is_active, (Customer.token_hash == digest).label("current")
        ).where(
            or_(
                Customer.token_hash == digest,
                and_(
                    Customer.previous_token_hash == digest,
                    Customer.previous_token_expires_at > clock.now(),
                ),
            )
        )
    ).first()
    if row is None:
        raise Unauthenticated("unknown or expired token", reason=Reason.TOKEN_UNKNOWN)
    if not row.is_active:
        raise Unauthenticated(f"customer {row.code} is deactivated", reason=Reason.CUSTOMER_INACTIVE)
    return CustomerIdentity(customer_id=row.id, code=row.code, previous_token=not row.current)


class SqlTokenStore:
    """`TokenStore` over the central database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def authenticate(self, token: str) -> Identity:
        return await self._db.run(find_identity, token, self._clock)
