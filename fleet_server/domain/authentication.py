"""Who is calling: a bearer token resolved to a customer or an operator identity, or refused saying why.

The interceptor depends only on the `TokenStore` protocol; `SqlTokenStore` is the one the app
builds. The lookup is one autocommitted statement without the ORM (`Database.autocommit`); a
customer token found valid is kept in the process's `TokenCache`, which is trusted only while
this process hears every credential change as it commits (`domain/token_cache.py`), so rotation,
deactivation and deletion still take effect on the next call. Admin tokens are always looked up:
operators' calls are few, and their revocation has no notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from fleet_server.clock import Clock
from fleet_server.db.scheduler import CONTROL
from fleet_server.db.session import Database, Driver
from fleet_server.domain.token_cache import TokenCache
from fleet_server.domain.tokens import TokenKind, hash_token, kind_of
from fleet_server.errors import Reason, Unauthenticated
from fleet_server.store import admin_tokens, customers


@dataclass(frozen=True)
class CustomerIdentity:
    """A portal. `customer_id` is the only customer id any write may use.

    `previous_token` is true when the call used the token in its rotation grace window (until
    `previous_token_expires_at`); the access log and the metrics say so, letting an operator see
    which portals still have to switch. `token_hash` is the SHA-256 of the token used: every
    write of a stream re-checks it, so a stream ends once its token stops being valid
    (rotation, expiry, erasure).
    """

    customer_id: int
    code: str
    previous_token: bool = False
    previous_token_expires_at: datetime | None = None
    token_hash: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class AdminIdentity:
    """An operator, by the name of the admin token used."""

    token_id: int
    name: str


Identity = CustomerIdentity | AdminIdentity

# How stale the stored "old token last used" moment may get (see `_note_previous_token_use`).
PREVIOUS_TOKEN_USE_STEP = timedelta(minutes=5)


class TokenStore(Protocol):
    """Resolves a bearer token to an identity, or raises `Unauthenticated` saying why."""

    async def authenticate(self, token: str) -> Identity: ...


def find_identity(conn: Driver, token: str, clock: Clock) -> Identity:
    """The identity behind `token`; raises `Unauthenticated` with a message safe to show."""
    kind = kind_of(token)
    if kind is None:
        raise Unauthenticated("malformed token", reason=Reason.TOKEN_MALFORMED)
    digest = hash_token(token)
    if kind is TokenKind.ADMIN:
        admin = admin_tokens.find_unrevoked_by_hash(conn, digest)
        if admin is None:
            raise Unauthenticated("unknown or revoked admin token", reason=Reason.TOKEN_UNKNOWN)
        return AdminIdentity(token_id=admin.id, name=admin.name)
    now = clock.now()
    owner = customers.find_by_token_hash(conn, digest, now)
    if owner is None:
        raise Unauthenticated("unknown or expired token", reason=Reason.TOKEN_UNKNOWN)
    if not owner.is_active:
        raise Unauthenticated(f"customer {owner.code} is deactivated", reason=Reason.CUSTOMER_INACTIVE)
    if owner.current:
        return CustomerIdentity(customer_id=owner.id, code=owner.code, token_hash=digest)
    _note_previous_token_use(conn, owner, now)
    return CustomerIdentity(
        customer_id=owner.id,
        code=owner.code,
        previous_token=True,
        previous_token_expires_at=owner.previous_token_expires_at,
        token_hash=digest,
    )


def _note_previous_token_use(conn: Driver, owner: customers.TokenOwner, now: datetime) -> None:
    """Remember that the old token is still in use, at most once per `PREVIOUS_TOKEN_USE_STEP`.

    Fleet health asks "was the old token used in the last hour?" (the portal has not switched,
    and its grace window runs out). A write per call would put an UPDATE on every call of a
    portal in its grace window; this writes only when the stored moment would move by more than
    the step, so the answer is at most that late, and a window costs a few writes per hour.
    """
    last = owner.previous_token_last_used_at
    if last is None or now - last > PREVIOUS_TOKEN_USE_STEP:
        customers.note_previous_token_use(conn, owner.id, now, now - PREVIOUS_TOKEN_USE_STEP)


class SqlTokenStore:
    """`TokenStore` over the central database, with `cache` in front of customer tokens."""

    def __init__(self, db: Database, clock: Clock, cache: TokenCache[CustomerIdentity] | None = None) -> None:
        self._db = db
        self._clock = clock
        self._cache: TokenCache[CustomerIdentity] = TokenCache(0) if cache is None else cache

    async def authenticate(self, token: str) -> Identity:
        cache = self._cache
        if not cache.armed or kind_of(token) is not TokenKind.CUSTOMER:
            return await self._lookup(token)
        digest = hash_token(token)
        cached = cache.get(digest)
        if cached is not None:
            return cached
        generation = cache.generation
        identity = await self._lookup(token)
        if isinstance(identity, CustomerIdentity) and not identity.previous_token:
            cache.put(digest, identity, generation)
        return identity

    async def _lookup(self, token: str) -> Identity:
        return await self._db.run_blocking(CONTROL, self._db.autocommit, find_identity, token, self._clock)
