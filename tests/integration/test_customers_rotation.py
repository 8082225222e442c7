"""The rotation matrix through the wire, with an injected clock for the grace window's edges.

Whether a token is accepted is asked the way a portal would: open `PushMeasurements` with the
token and close it without a batch. Any status past authentication (OK, or UNIMPLEMENTED while
ingest is being built) means accepted; UNAUTHENTICATED means refused.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as pb
from google.protobuf import duration_pb2
from sqlalchemy import Engine, Row, select

from fleet_server.db.models import Customer
from fleet_server.rpc.wellknown import DURATION_RANGE
from tests.support.clients import Stubs, bad_request_fields, bearer


def accepted(stubs: Stubs, token: str) -> bool:
    """True when the server lets `token` push; False when it refuses it as a credential."""
    code, details = grpc.StatusCode.OK, ""
    try:
        list(stubs.ingest.PushMeasurements(iter(()), metadata=bearer(token), timeout=10))
    except grpc.RpcError as err:
        code, details = err.code(), err.details()
    assert code != grpc.StatusCode.PERMISSION_DENIED, details
    return bool(code != grpc.StatusCode.UNAUTHENTICATED)


def _rotate(
    stubs: Stubs, admin_token: str, code: str = "ACME", grace: timedelta | None = None
) -> pb.RotateCustomerTokenResponse:
    request = pb.RotateCustomerTokenRequest(code=code)
    if grace is not None:
        request.grace_period.CopyFrom(duration_pb2.Duration(seconds=int(grace.total_seconds())))
    reply: pb.RotateCustomerTokenResponse = stubs.admin.RotateCustomerToken(
        request, metadata=bearer(admin_token), timeout=10
    )
    return reply


def _row(engine: Engine, code: str = "ACME") -> Row[Customer]:
    with engine.connect() as conn:
        return conn.execute(select(Customer).where(Customer.code == code)).one()


def _expiry(reply: pb.RotateCustomerTokenResponse) -> datetime:
    return reply.customer.previous_token_expires_at.ToDatetime(tzinfo=UTC)


def test_create_sets_no_previous_token(clocked, admin_token, new_customer, engine):
    original = new_customer("ACME")
    row = _row(engine)
    assert row.previous_token_hash is None
    assert row.previous_token_expires_at is None
    reply = clocked.admin.GetCustomer(pb.GetCustomerRequest(code="ACME"), metadata=bearer(admin_token))
    assert not reply.customer.HasField("previous_token_expires_at")
    assert accepted(clocked, original.token)


def test_rotate_moves_current_to_previous_for_the_default_24h(
    clocked, admin_token, new_customer, engine, fake_clock
):
    original = new_customer("ACME")
    hash_before = _row(engine).token_hash
    reply = _rotate(clocked, admin_token)
    assert reply.token.startswith("fleet_")
    assert reply.token != original.token
    assert _expiry(reply) == fake_clock.now() + timedelta(hours=24)
    assert reply.customer.token_issued_at.ToDatetime(tzinfo=UTC) == fake_clock.now()
    row = _row(engine)
    assert row.previous_token_hash == hash_before
    assert row.previous_token_expires_at == fake_clock.now() + timedelta(hours=24)
    assert accepted(clocked, original.token)
    assert accepted(clocked, reply.token)


def test_the_access_log_tells_calls_on_the_old_token_apart(
    clocked: Stubs, admin_token: str, new_customer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    original = new_customer("ACME")
    new = _rotate(clocked, admin_token).token
    caplog.set_level(logging.INFO, logger="fleet_server.access")
    assert accepted(clocked, original.token)
    assert accepted(clocked, new)
    lines = [r.getMessage() for r in caplog.records if r.name == "fleet_server.access"]
    pushes = [line for line in lines if "PushMeasurements customer=ACME" in line]
    assert len(pushes) == 2
    assert pushes[0].endswith(" token=previous")
    assert "token=previous" not in pushes[1]


def test_previous_token_is_accepted_1s_before_expiry_and_refused_1s_after(
    clocked, admin_token, new_customer, fake_clock
):
    original = new_customer("ACME")
    new = _rotate(clocked, admin_token).token
    fake_clock.advance(timedelta(hours=24) - timedelta(seconds=1))
    assert accepted(clocked, original.token)
    fake_clock.advance(timedelta(seconds=2))
    assert not accepted(clocked, original.token)
    assert accepted(clocked, new)
    reply = clocked.admin.GetCustomer(pb.GetCustomerRequest(code="ACME"), metadata=bearer(admin_token))
    assert not reply.customer.HasField("previous_token_expires_at")


def test_the_previous_token_expires_exactly_at_the_deadline(clocked, admin_token, new_customer, fake_clock):
    """`previous_token_expires_at > now`: at the deadline itself the old token is already refused."""
    original = new_customer("ACME")
    _rotate(clocked, admin_token, grace=timedelta(seconds=90))
    fake_clock.advance(timedelta(seconds=90))
    assert not accepted(clocked, original.token)


def test_zero_grace_refuses_the_original_at_once_and_clears_the_previous_slot(
    clocked, admin_token, new_customer, engine
):
    original = new_customer("ACME")
    reply = _rotate(clocked, admin_token, grace=timedelta(0))
    assert not reply.customer.HasField("previous_token_expires_at")
    row = _row(engine)
    assert row.previous_token_hash is None
    assert row.previous_token_expires_at is None
    assert not accepted(clocked, original.token)
    assert accepted(clocked, reply.token)


def test_a_second_rotation_overwrites_the_previous_slot(
    clocked, admin_token, new_customer, engine, fake_clock
):
    token1 = new_customer("ACME").token
    token2 = _rotate(clocked, admin_token).token
    hash2 = _row(engine).token_hash
    fake_clock.advance(timedelta(hours=1))
    reply = _rotate(clocked, admin_token)
    token3 = reply.token
    assert _expiry(reply) == fake_clock.now() + timedelta(hours=24)
    assert _row(engine).previous_token_hash == hash2
    assert not accepted(clocked, token1)
    assert accepted(clocked, token2)
    assert accepted(clocked, token3)


def test_a_zero_grace_rotation_after_a_graceful_one_leaves_only_the_newest(
    clocked, admin_token, new_customer
):
    token1 = new_customer("ACME").token
    token2 = _rotate(clocked, admin_token).token
    token3 = _rotate(clocked, admin_token, grace=timedelta(0)).token
    assert [accepted(clocked, t) for t in (token1, token2, token3)] == [False, False, True]


def test_inactive_customer_refuses_current_and_previous_and_reactivation_restores_them(
    clocked, admin_token, new_customer
):
    original = new_customer("ACME")
    current = _rotate(clocked, admin_token).token
    meta = bearer(admin_token)
    clocked.admin.DeactivateCustomer(pb.DeactivateCustomerRequest(code="ACME"), metadata=meta)
    for token in (original.token, current):
        with pytest.raises(grpc.RpcError) as err:
            list(clocked.ingest.PushMeasurements(iter(()), metadata=bearer(token), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "customer ACME is deactivated"
    clocked.admin.ActivateCustomer(pb.ActivateCustomerRequest(code="ACME"), metadata=meta)
    assert accepted(clocked, current)
    assert accepted(clocked, original.token)  # still inside its grace window


def test_reactivation_does_not_revive_a_grace_window_that_ran_out(
    clocked, admin_token, new_customer, fake_clock
):
    original = new_customer("ACME")
    current = _rotate(clocked, admin_token, grace=timedelta(minutes=30)).token
    meta = bearer(admin_token)
    clocked.admin.DeactivateCustomer(pb.DeactivateCustomerRequest(code="ACME"), metadata=meta)
    fake_clock.advance(timedelta(hours=1))
    clocked.admin.ActivateCustomer(pb.ActivateCustomerRequest(code="ACME"), metadata=meta)
    assert accepted(clocked, current)
    assert not accepted(clocked, original.token)


def test_rotating_an_inactive_customer_keeps_it_inactive(clocked, admin_token, new_customer):
    new_customer("ACME")
    meta = bearer(admin_token)
    clocked.admin.DeactivateCustomer(pb.DeactivateCustomerRequest(code="ACME"), metadata=meta)
    reply = _rotate(clocked, admin_token)
    assert reply.customer.is_active is False
    assert not accepted(clocked, reply.token)


def test_the_server_default_grace_is_a_setting(make_server, fake_clock, admin_token, new_customer):
    new_customer("ACME")
    server = make_server(clock=fake_clock, token_grace_s=3600.0)
    client = Stubs.connect(server.target)
    try:
        reply = _rotate(client, admin_token)
        assert _expiry(reply) == fake_clock.now() + timedelta(hours=1)
        reply = _rotate(client, admin_token, grace=timedelta(seconds=90))
        assert _expiry(reply) == fake_clock.now() + timedelta(seconds=90)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        (duration_pb2.Duration(seconds=-1), "grace_period: must not be negative (0s = immediate cutover)"),
        (
            duration_pb2.Duration(seconds=0, nanos=-1),
            "grace_period: must not be negative (0s = immediate cutover)",
        ),
        (duration_pb2.Duration(seconds=31 * 86400), "grace_period: must be at most 30 days"),
        (
            duration_pb2.Duration(seconds=1, nanos=-5),
            f"grace_period: {DURATION_RANGE}",
        ),
    ],
)
def test_bad_grace_is_invalid_argument_and_changes_nothing(
    clocked, admin_token, new_customer, engine, duration, message
):
    original = new_customer("ACME")
    before = tuple(_row(engine))
    request = pb.RotateCustomerTokenRequest(code="ACME", grace_period=duration)
    with pytest.raises(grpc.RpcError) as err:
        clocked.admin.RotateCustomerToken(request, metadata=bearer(admin_token), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == message
    assert bad_request_fields(err.value) == ["grace_period"]
    assert tuple(_row(engine)) == before
    assert accepted(clocked, original.token)


def test_concurrent_rotations_never_leave_more_than_two_tokens_valid(
    server, stubs, admin_token, new_customer
):
    """Row lock: each rotation sees the previous one's token, so the original always dies."""
    original = new_customer("ACME").token
    tokens: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def rotate() -> None:
        start.wait()
        try:
            tokens.append(_rotate(stubs, admin_token).token)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(tokens) == 6
    valid = [t for t in [original, *tokens] if accepted(stubs, t)]
    assert len(valid) == 2
    assert original not in valid
