"""A stream authenticated with a token that stops being valid ends at its next message.

Zero-grace rotation (the runbook's answer to a leaked token: "refused at once"), a grace window
that runs out, deactivation and erasure: the next batch of an open PushMeasurements stream, and
a snapshot not yet applied, are UNAUTHENTICATED and write nothing. Used to be acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from fleet.v1 import ingest_service_pb2 as ipb
from google.protobuf import duration_pb2

from tests.support.clients import Stubs, bearer, error_reason, rejected
from tests.support.fingerprint import fingerprint
from tests.support.measurements import HeldStream, count_rows, reading, request
from tests.support.reference_data import site

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REVOKED = "the token this call was authenticated with is no longer valid"


def _rotate(stubs: Stubs, admin_token: str, seconds: int) -> str:
    reply = stubs.admin.RotateCustomerToken(
        admin_pb.RotateCustomerTokenRequest(code="ACME", grace_period=duration_pb2.Duration(seconds=seconds)),
        metadata=bearer(admin_token),
        timeout=10,
    )
    return str(reply.token)


def _refused(error: grpc.RpcError | None, reason: str, message: str) -> None:
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == reason
    assert (error.details() or "").startswith(message)


@pytest.mark.parametrize("then", [[request(2, [reading(1, T0 + timedelta(hours=1), 2.0)])], [request(2, [])]])
def test_zero_grace_rotation_ends_an_open_stream_at_its_next_batch(
    clocked, admin_token, new_customer, engine, then
):
    customer = new_customer("ACME")
    held = HeldStream(clocked, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1

    _rotate(clocked, admin_token, 0)
    acks, error = held.finish(then)

    assert acks == []
    _refused(error, "TOKEN_REVOKED", REVOKED)
    assert count_rows(engine) == 1


def test_a_stream_on_the_old_token_ends_when_its_grace_window_does(
    clocked, admin_token, new_customer, engine, fake_clock
):
    customer = new_customer("ACME")
    held = HeldStream(clocked, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1
    _rotate(clocked, admin_token, 60)
    fake_clock.advance(timedelta(seconds=61))  # the old token's window has ended

    acks, error = held.finish([request(2, [reading(1, T0 + timedelta(hours=1), 2.0)])])

    assert acks == []
    _refused(error, "TOKEN_REVOKED", REVOKED)
    assert count_rows(engine) == 1


def test_a_batch_inside_the_grace_window_is_still_written(
    clocked, admin_token, new_customer, engine, fake_clock
):
    customer = new_customer("ACME")
    held = HeldStream(clocked, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1
    _rotate(clocked, admin_token, 60)
    fake_clock.advance(timedelta(seconds=59))

    acks, error = held.finish([request(2, [reading(1, T0 + timedelta(hours=1), 2.0)])])

    assert error is None
    assert [a.accepted for a in acks] == [1]
    assert count_rows(engine) == 2


def test_erasure_ends_an_open_stream_at_its_next_batch(clocked, admin_token, new_customer, engine):
    customer = new_customer("ACME")
    held = HeldStream(clocked, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1

    clocked.admin.DeleteCustomer(admin_pb.DeleteCustomerRequest(code="ACME"), metadata=bearer(admin_token))
    acks, error = held.finish([request(2, [reading(1, T0 + timedelta(hours=1), 2.0)])])

    assert acks == []
    _refused(error, "TOKEN_REVOKED", REVOKED)
    assert count_rows(engine) == 0


def test_deactivation_ends_an_open_stream_saying_so(clocked, admin_token, new_customer, engine):
    customer = new_customer("ACME")
    held = HeldStream(clocked, customer.token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1

    clocked.admin.DeactivateCustomer(
        admin_pb.DeactivateCustomerRequest(code="ACME"), metadata=bearer(admin_token)
    )
    acks, error = held.finish([request(2, [])])

    assert acks == []
    _refused(error, "CUSTOMER_INACTIVE", "the customer was deactivated")
    assert count_rows(engine) == 1


def test_a_snapshot_whose_token_is_revoked_before_it_is_applied_writes_nothing(
    clocked, admin_token, new_customer, engine
):
    customer = new_customer("ACME")
    sent = threading.Event()
    rotated = threading.Event()

    def messages() -> Iterator[ipb.PushSitesRequest]:
        yield ipb.PushSitesRequest(sites=[site(1)])
        sent.set()
        rotated.wait(10)

    before = fingerprint(engine)
    call = clocked.ingest.PushSites.future(messages(), metadata=bearer(customer.token), timeout=15)
    assert sent.wait(10)
    new_token = _rotate(clocked, admin_token, 0)
    after_rotation = fingerprint(engine)
    rotated.set()

    error = rejected(call.result)

    _refused(error, "TOKEN_REVOKED", REVOKED)
    assert fingerprint(engine) == after_rotation != before  # only the rotation itself changed anything
    clocked.ingest.PushSites(
        iter([ipb.PushSitesRequest(sites=[site(1)])]), metadata=bearer(new_token), timeout=10
    )
