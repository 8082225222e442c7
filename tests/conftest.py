"""Fixtures of every tier that needs the database: a real PostgreSQL, in-process servers, tokens.

Isolation: the session's database is migrated once; every test that uses `db` starts from empty
tables (TRUNCATE), because the servers under test hold their own connections and cannot share a
test's outer transaction.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from fleet_server.app import App
from fleet_server.clock import Clock, FakeClock, SystemClock
from fleet_server.config import Settings
from fleet_server.db import migrate
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token
from fleet_server.domain.customers import create_customer
from tests.support.clients import Stubs
from tests.support.costs import Partitions
from tests.support.database import base_url, create_scratch_database, drop_database, truncate_all
from tests.support.inprocess import InProcessServer


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, say) ends the run as Ctrl-C does: fixtures tear down, so server
    # processes stop, and the embedded PostgreSQL is stopped and its folder removed at exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """This session's own database, migrated from nothing, dropped at the end.

    Its own, so no earlier run's leftovers need clearing and two runs can share one server.
    """
    url = create_scratch_database(base_url(), prefix="fleet_test")
    migrate.upgrade(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def db(database_url: str, engine: Engine) -> Iterator[Database]:
    """A `Database` on empty tables."""
    truncate_all(engine)
    database = Database.from_url(database_url, pool_size=4)
    yield database
    database.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Server settings for tests: the test database, an ephemeral port."""
    return Settings(database_url=database_url, listen="127.0.0.1:0", shutdown_grace_s=1.0)


@pytest.fixture
def make_server(db: Database, settings: Settings) -> Iterator[Callable[..., InProcessServer]]:
    """Factory: `make_server(clock=..., **setting_overrides)` starts an in-process server."""
    started: list[InProcessServer] = []

    def factory(clock: Clock | None = None, **overrides: Any) -> InProcessServer:
        chosen = replace(settings, **overrides)
        database = Database.from_url(
            chosen.database_url or "",
            chosen.db_pool_size,
            queue_timeout_s=chosen.db_queue_timeout_s,
            statement_timeout_s=chosen.statement_timeout_s,
        )
        app = App(settings=chosen, db=database, clock=clock or SystemClock())
        server = InProcessServer(app).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
        server.app.close()


@pytest.fixture
def server(make_server: Callable[..., InProcessServer]) -> InProcessServer:
    return make_server()


@pytest.fixture
def stubs(server: InProcessServer) -> Iterator[Stubs]:
    client = Stubs.connect(server.target)
    yield client
    client.close()


@pytest.fixture
def admin_token(db: Database) -> str:
    """A valid admin token (plain text) named `test-admin`."""
    return db.transaction(create_admin_token, "test-admin", SystemClock().now()).token


@dataclass(frozen=True)
class TestCustomer:
    id: int
    code: str
    token: str


@pytest.fixture
def new_customer(db: Database) -> Callable[..., TestCustomer]:
    """Factory: `new_customer("ACME")` creates a customer directly in the database."""

    def factory(code: str = "ACME", name: str | None = None) -> TestCustomer:
        issued = db.transaction(create_customer, code, name or code.title(), SystemClock().now())
        return TestCustomer(id=issued.customer.id, code=code, token=issued.token)

    return factory


@pytest.fixture
def cost_partitions(engine: Engine) -> Iterator[Partitions]:
    """Monthly measurement partitions a test asks for (`cover`); those it made go at teardown."""
    partitions = Partitions(engine)
    yield partitions
    partitions.drop()
