"""The token cache over the wire: a change to a customer's credentials takes effect on the next call.

Changes made out of band (`fleet-server` commands, another worker, psql) reach the server as the
database's notice; a change made through this server's admin API takes effect before the API
answers. A cache that may miss a notice (its listener lost its connection, or the database has
no trigger) serves nothing. Each refusal is checked as the portal sees it, and that nothing was
written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as apb
from google.protobuf import duration_pb2
from sqlalchemy import Engine, text

from fleet_server.domain.tokens import TokenKind, mint
from tests.support.clients import Stubs, bearer, error_reason
from tests.support.inprocess import InProcessServer
from tests.support.measurements import push, push_until_error, reading, request
from tests.support.waiting import wait_for

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM fleet.measurements")).scalar_one())


def armed(server: InProcessServer) -> None:
    wait_for(lambda: server.app.token_cache.armed, "the token cache to hear credential changes", 10)


def pushed_one(stubs: Stubs, token: str, batch_id: int) -> None:
    acks = push(stubs, token, [request(batch_id, [reading(1, T0 + timedelta(minutes=15 * batch_id), 1.0)])])
    assert [ack.accepted for ack in acks] == [1]


def refused(stubs: Stubs, token: str, batch_id: int) -> grpc.RpcError:
    rows = [reading(1, T0 + timedelta(minutes=15 * batch_id), 1.0)]
    acks, error = push_until_error(stubs, token, [request(batch_id, rows)])
    assert acks == []
    assert error is not None
    return error


REFUSALS = {
    "TOKEN_UNKNOWN": "unknown or expired token",
    "CUSTOMER_INACTIVE": "customer ACME is deactivated",
}


def assert_refused_as(error: grpc.RpcError, reason: str) -> None:
    """The refusal a portal sees: UNAUTHENTICATED, the reason, and the message saying it."""
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == reason
    assert error.details() == REFUSALS[reason]


def pushed_on_a_new_client(server: InProcessServer, token: str, batch_ids: tuple[int, ...]) -> None:
    client = Stubs.connect(server.target)
    try:
        for batch_id in batch_ids:
            pushed_one(client, token, batch_id)
    finally:
        client.close()


def changed_out_of_band(engine: Engine, server: InProcessServer, statement: str, code: str) -> None:
    """`statement` as another process would run it; returns once this server heard of it."""
    generation = server.app.token_cache.generation
    with engine.begin() as conn:
        conn.execute(text(statement), {"code": code})
    wait_for(lambda: server.app.token_cache.generation != generation, "the change's notice", 10)


def test_a_token_is_looked_up_once_and_then_served_from_the_cache(server, stubs, new_customer, engine):
    customer = new_customer("ACME")
    armed(server)
    cache = server.app.token_cache
    for batch_id in (1, 2, 3):
        pushed_one(stubs, customer.token, batch_id)
    assert cache.misses == 1
    assert cache.hits == 2
    assert stored(engine) == 3


def test_an_unknown_token_is_never_kept(server, stubs, new_customer, engine):
    new_customer("ACME")
    armed(server)
    unknown = mint(TokenKind.CUSTOMER)  # well formed, so it reaches the lookup
    for batch_id in (1, 2):
        assert_refused_as(refused(stubs, unknown, batch_id), "TOKEN_UNKNOWN")
    assert server.app.token_cache.size == 0
    assert server.app.token_cache.misses == 2
    assert stored(engine) == 0


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE fleet.customers SET is_active = false WHERE code = :code", "CUSTOMER_INACTIVE"),
        ("UPDATE fleet.customers SET token_hash = repeat('0', 64) WHERE code = :code", "TOKEN_UNKNOWN"),
        ("DELETE FROM fleet.customers WHERE code = :code", "TOKEN_UNKNOWN"),
    ],
    ids=["deactivated", "rotated", "deleted"],
)
def test_a_change_made_by_another_process_refuses_the_cached_token_on_the_next_call(
    server, stubs, new_customer, engine, statement, reason
):
    customer = new_customer("ACME")
    armed(server)
    pushed_one(stubs, customer.token, 1)
    assert server.app.token_cache.size == 1

    changed_out_of_band(engine, server, statement, "ACME")

    assert_refused_as(refused(stubs, customer.token, 2), reason)
    assert stored(engine) == 1  # the first batch; a plain DELETE leaves readings (no foreign key)


@pytest.mark.parametrize("change", ["rotate", "deactivate", "delete"])
def test_a_change_through_the_admin_api_refuses_the_cached_token_before_the_api_answers(
    server, stubs, new_customer, admin_token, engine, change
):
    customer = new_customer("ACME")
    armed(server)
    pushed_one(stubs, customer.token, 1)
    admin = bearer(admin_token)
    if change == "rotate":
        stubs.admin.RotateCustomerToken(
            apb.RotateCustomerTokenRequest(code="ACME", grace_period=duration_pb2.Duration(seconds=0)),
            metadata=admin,
        )
    elif change == "deactivate":
        stubs.admin.DeactivateCustomer(apb.DeactivateCustomerRequest(code="ACME"), metadata=admin)
    else:
        stubs.admin.DeleteCustomer(apb.DeleteCustomerRequest(code="ACME"), metadata=admin)

    error = refused(stubs, customer.token, 2)  # no wait for the database's notice

    assert_refused_as(error, "CUSTOMER_INACTIVE" if change == "deactivate" else "TOKEN_UNKNOWN")
    assert stored(engine) == (0 if change == "delete" else 1)


def test_a_token_in_its_grace_window_is_looked_up_every_time(server, stubs, new_customer, admin_token):
    customer = new_customer("ACME")
    armed(server)
    stubs.admin.RotateCustomerToken(
        apb.RotateCustomerTokenRequest(code="ACME", grace_period=duration_pb2.Duration(seconds=3600)),
        metadata=bearer(admin_token),
    )
    for batch_id in (1, 2):
        pushed_one(stubs, customer.token, batch_id)
    assert server.app.token_cache.hits == 0
    assert server.app.token_cache.size == 0


def test_a_lost_listener_turns_the_cache_off_until_it_hears_again(
    server, stubs, new_customer: Callable[..., Any], engine
):
    first, second = new_customer("ACME"), new_customer("BETA")
    armed(server)
    pushed_one(stubs, first.token, 1)
    pushed_one(stubs, second.token, 1)
    listener = server.app.token_listener
    assert listener is not None
    backend = listener.backend_pid
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    wait_for(lambda: not server.app.token_cache.armed, "the cache to stop trusting itself", 10)

    # Nothing is served from memory now: a change nobody announced is seen at once.
    with engine.begin() as conn:
        conn.execute(text("UPDATE fleet.customers SET is_active = false WHERE code = 'ACME'"))
    assert_refused_as(refused(stubs, first.token, 2), "CUSTOMER_INACTIVE")

    armed(server)  # it reconnects by itself
    assert listener.backend_pid not in (None, backend)
    pushed_one(stubs, second.token, 2)
    pushed_one(stubs, second.token, 3)
    assert server.app.token_cache.hits >= 1
    assert stored(engine) == 4


def test_without_the_trigger_the_cache_never_turns_on(make_server, new_customer, engine):
    customer = new_customer("ACME")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE fleet.customers DISABLE TRIGGER tg_customers_token_change"))
    try:
        server = make_server()
        listener = server.app.token_listener
        assert listener is not None
        wait_for(lambda: listener.backend_pid is not None, "the listener to connect", 10)
        pushed_on_a_new_client(server, customer.token, (1, 2))
        assert not server.app.token_cache.armed
        assert server.app.token_cache.hits == 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE fleet.customers ENABLE TRIGGER tg_customers_token_change"))


def test_no_cache_when_it_is_set_to_zero_entries(make_server, new_customer, engine):
    customer = new_customer("ACME")
    server = make_server(token_cache_entries=0)
    pushed_on_a_new_client(server, customer.token, (1, 2))
    assert server.app.token_listener is None
    assert server.app.token_cache.hits == 0
    assert stored(engine) == 2
