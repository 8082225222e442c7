"""One unit of work per call: the domain gets a `Session` inside a transaction, off the event loop.

Domain code is plain synchronous SQLAlchemy (easy to read, easy to test). The aio servicers hand
it to `Database.run`, which executes it on a thread pool the size of the connection pool, so a
slow back-fill of one customer occupies one connection and one thread, never the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

P = ParamSpec("P")
T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)

# A database that stops answering must not hang a connect forever (libpq has no default limit).
CONNECT_TIMEOUT_S = 10


def application_name(pid: int | None = None) -> str:
    """How a server process's connections show in `pg_stat_activity`: one name per process.

    Used as libpq's `fallback_application_name`, so an `application_name` in the URL or
    `PGAPPNAME` still wins. The pid tells one process's backends (a worker's, a killed
    server's) from every other's; PostgreSQL keeps the first 63 bytes.
    """
    return f"fleet-server-{os.getpid() if pid is None else pid}"


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """An engine for `url` (`postgresql+psycopg://…`), with a pool sized for `pool_size` workers."""
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_timeout=30,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "fallback_application_name": application_name()},
    )


class Database:
    """The engine, the session factory and the threads that run database work."""

    def __init__(self, engine: Engine, *, workers: int | None = None) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        size = workers or engine.pool.size()  # type: ignore[attr-defined]
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fleet-db")

    @classmethod
    def from_url(cls, url: str, pool_size: int = 10) -> Database:
        return cls(make_engine(url, pool_size), workers=pool_size)

    def transaction(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(session, …)` in one transaction: committed if it returns, rolled back if it raises."""
        with self.sessions.begin() as session:
            return fn(session, *args, **kwargs)

    async def run(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`transaction(fn, …)` on a database thread, awaited from the event loop."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.transaction, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    async def offload(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking `fn` that manages its own connection on a database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def probe(self) -> HealthProbe:
        """A probe of this database that does not compete with RPCs for pooled connections."""
        return HealthProbe(self.engine.url)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


class HealthProbe:
    """Answers "does the database answer?" for the health service, on a connection of its own.

    A probe through the main pool would wait for a free connection while long back-fills hold
    them all, and report a busy database as down; a fresh connection per probe would fork a
    PostgreSQL backend every few seconds per worker. One kept connection, checked before each
    use (`pool_pre_ping`), does neither, and reconnects by itself when the database is back.
    """

    def __init__(self, url: URL, connect_timeout_s: int = 5) -> None:
        self._engine = create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            pool_timeout=connect_timeout_s,
            connect_args={
                "connect_timeout": connect_timeout_s,
                "fallback_application_name": application_name(),
            },
        )

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            _LOGGER.debug("database probe failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        self._engine.dispose()
