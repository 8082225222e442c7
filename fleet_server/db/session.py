"""One unit of work per call: the domain gets a `Session` inside a transaction, off the event loop.

Domain code is plain synchronous SQLAlchemy (easy to read, easy to test). The aio servicers hand
it to `Database.run` with the caller's `Turn`; the `Scheduler` runs it on one of as many threads
as the pool has connections, when that caller's fair turn comes (see `db/scheduler.py` for why
no call can then wait for a connection, and why saturation is a status and not a stall).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from sqlalchemy import Engine, create_engine, exc, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db.scheduler import Scheduler, Turn, TurnPolicy
from fleet_server.errors import FleetError, Reason, Unavailable

P = ParamSpec("P")
T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)

# The driver connection `Database.autocommit` lends: layers above the store name it by this alias,
# never by psycopg's own type (only the store touches the driver).
Driver = psycopg.Connection[Any]

# A database that stops answering must not hang a connect forever (libpq has no default limit).
CONNECT_TIMEOUT_S = 10


# Retry hint for a call that met a database fault: long enough for a restart or failover to
# progress, short enough that a portal catches up soon after.
FAULT_RETRY_MS = 2_000
# A checkout cannot wait by construction (threads = connections); if it ever does, say so fast.
POOL_TIMEOUT_S = 5
# The longest one statement may run (FLEET_STATEMENT_TIMEOUT_S): a database that stops making
# progress, or a query gone wrong, ends as UNAVAILABLE with a retry hint, not as a call that
# hangs for as long as the database does.
STATEMENT_TIMEOUT_S = 30.0


def application_name(pid: int | None = None) -> str:
    """How a server process's connections show in `pg_stat_activity`: one name per process.

    Used as libpq's `fallback_application_name`, so an `application_name` in the URL or
    `PGAPPNAME` still wins. The pid tells one process's backends (a worker's, a killed
    server's) from every other's; PostgreSQL keeps the first 63 bytes.
    """
    return f"fleet-server-{os.getpid() if pid is None else pid}"


def _statement_timeout_option(seconds: float) -> str:
    """The libpq `options` that set a session's statement timeout (0 = none)."""
    return f"-c statement_timeout={max(0, math.ceil(seconds * 1000))}"


def make_engine(url: str, pool_size: int = 10, statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> Engine:
    """An engine for `url` (`postgresql+psycopg://…`) with exactly `pool_size` connections.

    No liveness ping per checkout: a measurement batch checks a connection out per batch, and
    the ping was a fifth of a 500-row batch's time. A connection that died with its server
    fails its next statement instead; SQLAlchemy then drops every pooled connection from
    before the fault, and the caller gets UNAVAILABLE with a retry hint (`database_fault`).
    Every session starts with `statement_timeout` set; a statement cancelled by it is
    UNAVAILABLE too, and its transaction is rolled back before the connection is pooled again.
    """
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_use_lifo=True,  # the most recently used connection: warm caches, prepared statements
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "fallback_application_name": application_name(),
            "options": _statement_timeout_option(statement_timeout_s),
        },
    )


def database_fault(error: BaseException) -> FleetError | None:
    """The UNAVAILABLE a caller sees for a database that is gone, saturated or too slow; None for bugs."""
    if isinstance(error, exc.TimeoutError):  # pool checkout: should not happen, see above
        return Unavailable(
            "no database connection was free; retry later",
            reason=Reason.DATABASE_BUSY,
            retry_after_ms=FAULT_RETRY_MS,
        )
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    if isinstance(cause, psycopg.errors.QueryCanceled):
        return Unavailable(
            "the database did not answer in time; retry later",
            reason=Reason.DATABASE_TIMEOUT,
            retry_after_ms=FAULT_RETRY_MS,
        )
    lost = isinstance(error, exc.DBAPIError) and error.connection_invalidated
    # A pool that found its connections dead on checkout (`InvalidatePoolError` and the other
    # `DisconnectionError`s), and a connection psycopg already knows is closed (InterfaceError),
    # are the same fault as a refused connect: the server went away.
    gone = isinstance(error, exc.DisconnectionError | exc.InterfaceError | psycopg.InterfaceError)
    if (
        lost
        or gone
        or isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError)
        or isinstance(error, exc.OperationalError)
    ):
        return Unavailable(
            "the database is unavailable; retry later",
            reason=Reason.DATABASE_UNAVAILABLE,
            retry_after_ms=FAULT_RETRY_MS,
        )
    return None


class Database:
    """The engine, the session factory and the scheduler whose threads run database work."""

    def __init__(self, engine: Engine, *, policy: TurnPolicy | None = None) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        threads = engine.pool.size()  # type: ignore[attr-defined]
        self.turns = Scheduler(policy or TurnPolicy.for_threads(threads), fault=database_fault)

    @classmethod
    def from_url(
        cls,
        url: str,
        pool_size: int = 10,
        *,
        queue_timeout_s: float | None = None,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> Database:
        policy = TurnPolicy.for_threads(pool_size)
        if queue_timeout_s is not None:
            policy = dataclasses.replace(policy, queue_timeout_s=queue_timeout_s)
        return cls(make_engine(url, pool_size, statement_timeout_s), policy=policy)

    def transaction(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(session, …)` in one transaction: committed if it returns, rolled back if it raises."""
        with self.sessions.begin() as session:
            return fn(session, *args, **kwargs)

    def autocommit(self, fn: Callable[Concatenate[Driver, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(connection, …)` on a pooled psycopg connection in autocommit mode.

        For the paths every call or batch takes (token lookups, measurement writes): their work
        is one statement, atomic by itself, so a Session's BEGIN and COMMIT would be two round
        trips more and the ORM about a millisecond of Python per call (`make load`). A
        connection that died under `fn` is dropped from the pool (psycopg saw it die, not
        SQLAlchemy).
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            driver = connection.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            try:
                return fn(driver, *args, **kwargs)
            except psycopg.OperationalError:
                connection.invalidate()
                raise

    async def run(
        self, turn: Turn, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`transaction(fn, …)` on a database thread in `turn`, awaited from the event loop."""
        return await self.turns.run(turn, self.transaction, fn, *args, **kwargs)

    async def run_blocking(self, turn: Turn, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Blocking `fn` that checks out (at most one at a time) and returns its own connection."""
        return await self.turns.run(turn, fn, *args, **kwargs)

    def probe(self, timeout_s: float = 2.0) -> HealthProbe:
        """A probe of this database that does not compete with RPCs for pooled connections."""
        return HealthProbe(self.engine.url, timeout_s)

    def close(self) -> None:
        self.turns.close()
        self.engine.dispose()


class HealthProbe:
    """Answers "does the database answer, within `timeout_s`?" for the health service.

    A probe through the main pool would wait for a free connection while long back-fills hold
    them all, and report a busy database as down; a fresh connection per probe would fork a
    PostgreSQL backend every few seconds per worker. One kept connection, checked before each
    use (`pool_pre_ping`), does neither, and reconnects by itself when the database is back.

    A frozen database (a SIGSTOPped postmaster) refuses nothing: the connection stays open and
    the query simply never returns, so a probe without a bound said SERVING for as long as the
    freeze lasted. The probe is bounded three ways: its statements time out on the server
    (`statement_timeout`), its connects time out in libpq, and `check` stops waiting after
    `timeout_s` whatever the database does. A probe still stuck in the database when the next
    check comes is not doubled: the database has not answered, and that is the answer.
    """

    def __init__(self, url: URL, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._engine = create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            pool_timeout=timeout_s,
            connect_args={
                "connect_timeout": max(2, math.ceil(timeout_s)),  # libpq's own minimum is 2 s
                "fallback_application_name": application_name(),
                "options": _statement_timeout_option(timeout_s),
            },
        )
        self._pending: asyncio.Future[bool] | None = None

    def ping(self) -> bool:
        """True when the database answers a trivial query (blocking)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            _LOGGER.debug("database probe failed: %s", exc)
            return False
        return True

    async def check(self) -> bool:
        """`ping` on a thread, False when it has not answered within `timeout_s`."""
        if self._pending is not None and not self._pending.done():
            return False  # the last probe is still waiting for the database
        self._pending = asyncio.ensure_future(asyncio.to_thread(self.ping))
        # Not `asyncio.wait_for`: on Python 3.11 it returns the result instead of raising when it
        # is cancelled just as its future finishes, and a health watch cancelled at server stop
        # went on probing; stopping the server then waited for it forever (a rare test hang).
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(self._pending)
        except TimeoutError:
            _LOGGER.debug("database probe got no answer within %.1fs", self.timeout_s)
            return False

    def close(self) -> None:
        self._engine.dispose()
