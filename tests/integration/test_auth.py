"""The auth matrix: every RPC shape against every kind of credential, through the wire.

Shapes: unary (admin `GetCustomer`), client-streaming (ingest `PushSites`), bidi (ingest
`PushMeasurements`), server-streaming (query `QueryMeasurements`). Refused calls must end
without the server asking for a single request message and must write nothing. Accepted calls
are checked only for having got past authentication, so this matrix holds while the handlers
behind it are still being built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import query_service_pb2 as query_pb
from fleet.v1 import resources_pb2
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import text

from fleet_server.app import App
from fleet_server.clock import SystemClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token, revoke_admin_token
from fleet_server.domain.customers import create_customer
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.clients import Stubs
from tests.support.database import TABLES, truncate_all
from tests.support.inprocess import InProcessServer

_REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
_GATE_S = 5.0


class GatedRequests:
    """A request stream that offers its message only after the call has ended.

    gRPC's client pulls request iterators eagerly, so "was it pulled" proves nothing; instead
    the first message is held back until the call is over. A refused call therefore ends having
    received no message at all. Were the handler run instead, it would wait for the stream, the
    gate would time out, the message would be delivered, and `delivered` would say so.
    """

    def __init__(self, message: Any) -> None:
        self.message = message
        self.call_ended = threading.Event()
        self.delivered = 0

    def __iter__(self) -> GatedRequests:
        return self

    def __next__(self) -> Any:
        if self.delivered or self.call_ended.wait(_GATE_S):
            raise StopIteration
        self.delivered += 1
        return self.message

    def watch(self, call: grpc.Future) -> None:
        call.add_done_callback(lambda _: self.call_ended.set())


def _ts(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


_NOW = datetime.now(UTC).replace(microsecond=0)
_SITE = ingest_pb.PushSitesRequest(
    sites=[resources_pb2.Site(id=1, name="HQ", address="1 Main", timezone="UTC")]
)
_BATCH = ingest_pb.PushMeasurementsRequest(
    batch_id=1,
    measurements=[
        resources_pb2.Measurement(
            device_id=1,
            metric="energy_kwh",
            time=_ts(_NOW - timedelta(hours=1)),
            value=1.5,
            received_at=_ts(_NOW - timedelta(minutes=1)),
        )
    ],
)


def _metadata(credential: str | None) -> tuple[tuple[str, str], ...]:
    return () if credential is None else (("authorization", credential),)


# Each shape: call(stubs, metadata, gated) -> None, raising grpc.RpcError on failure. `gated` is
# None for an accepted call (then an empty request stream is sent, which writes nothing).
def _unary(stubs: Stubs, metadata, gated: GatedRequests | None) -> None:
    stubs.admin.GetCustomer(admin_pb.GetCustomerRequest(code="ACME"), metadata=metadata, timeout=10)


def _client_streaming(stubs: Stubs, metadata, gated: GatedRequests | None) -> None:
    future = stubs.ingest.PushSites.future(
        gated if gated is not None else iter(()), metadata=metadata, timeout=10
    )
    if gated is not None:
        gated.watch(future)
    future.result()


def _bidi(stubs: Stubs, metadata, gated: GatedRequests | None) -> None:
    call = stubs.ingest.PushMeasurements(
        gated if gated is not None else iter(()), metadata=metadata, timeout=10
    )
    if gated is not None:
        gated.watch(call)
    list(call)


def _server_streaming(stubs: Stubs, metadata, gated: GatedRequests | None) -> None:
    request = query_pb.QueryMeasurementsRequest(
        code="ACME",
        metric="energy_kwh",
        start=_ts(_NOW - timedelta(days=1)),
        end=_ts(_NOW),
        bucket=query_pb.BUCKET_HOUR,
    )
    list(stubs.query.QueryMeasurements(request, metadata=metadata, timeout=10))


@dataclass(frozen=True)
class Shape:
    name: str
    call: Callable[[Stubs, Any, GatedRequests | None], None]
    gate_message: Any  # None for unary-request shapes
    needs: str  # "customer" or "admin"


SHAPES = [
    Shape("unary GetCustomer", _unary, None, "admin"),
    Shape("client-streaming PushSites", _client_streaming, _SITE, "customer"),
    Shape("bidi PushMeasurements", _bidi, _BATCH, "customer"),
    Shape("server-streaming QueryMeasurements", _server_streaming, None, "admin"),
]

# credential name -> (expected outcome per required kind, message fragment when refused)
CREDENTIALS = [
    "no token",
    "garbage header",
    "bearer garbage",
    "unknown customer token",
    "unknown admin token",
    "customer token",
    "admin token",
    "revoked admin token",
]


def _expected(credential: str, needs: str) -> tuple[grpc.StatusCode | None, str]:
    """The status a refusal must have (None = accepted) and a fragment of its message."""
    if credential == "no token":
        return grpc.StatusCode.UNAUTHENTICATED, "missing authorization metadata"
    if credential == "garbage header":
        return grpc.StatusCode.UNAUTHENTICATED, "authorization must be 'Bearer <token>'"
    if credential == "bearer garbage":
        return grpc.StatusCode.UNAUTHENTICATED, "malformed token"
    if credential == "unknown customer token":
        return grpc.StatusCode.UNAUTHENTICATED, "unknown or expired token"
    if credential in ("unknown admin token", "revoked admin token"):
        return grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked admin token"
    if credential == "customer token":
        if needs == "customer":
            return None, ""
        return grpc.StatusCode.PERMISSION_DENIED, "needs an admin token, not a customer token"
    assert credential == "admin token"
    if needs == "admin":
        return None, ""
    return grpc.StatusCode.PERMISSION_DENIED, "needs a customer token, not an admin token"


@pytest.fixture(scope="module")
def matrix(database_url, engine) -> Iterator[tuple[Stubs, dict[str, str | None]]]:
    """One server and one set of credentials for the whole matrix (32 calls, none of them writes)."""
    truncate_all(engine)
    settings = Settings(database_url=database_url, listen="127.0.0.1:0", shutdown_grace_s=1.0)
    app = App(settings=settings, db=Database.from_url(database_url, pool_size=4))
    server = InProcessServer(app).start()
    client = Stubs.connect(server.target)
    now = SystemClock().now()
    customer = app.db.transaction(create_customer, "ACME", "Acme", now).token
    admin = app.db.transaction(create_admin_token, "matrix-admin", now).token
    revoked = app.db.transaction(create_admin_token, "revoked-admin", now).token
    app.db.transaction(revoke_admin_token, "revoked-admin", now)
    yield (
        client,
        {
            "no token": None,
            "garbage header": "garbage",
            "bearer garbage": "Bearer not-a-token",
            "unknown customer token": f"Bearer {mint(TokenKind.CUSTOMER)}",
            "unknown admin token": f"Bearer {mint(TokenKind.ADMIN)}",
            "customer token": f"Bearer {customer}",
            "admin token": f"Bearer {admin}",
            "revoked admin token": f"Bearer {revoked}",
        },
    )
    client.close()
    server.stop()
    app.close()
    truncate_all(engine)


def _data_rows(engine) -> dict[str, int]:
    """Rows of every table a call could write to (all but the credential tables)."""
    with engine.connect() as conn:
        return {
            table: conn.scalar(text(f"SELECT count(*) FROM {table}"))
            for table in TABLES
            if table not in ("fleet.customers", "fleet.admin_tokens")
        }


def _outcome(call: Callable[[], None]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_auth_matrix(matrix, engine, shape: Shape, credential: str):
    stubs, credentials = matrix
    expected, fragment = _expected(credential, shape.needs)
    metadata = _metadata(credentials[credential])
    before = _data_rows(engine)

    if expected is None:
        code, details = _outcome(lambda: shape.call(stubs, metadata, None))
        assert code not in _REFUSED, f"{credential} refused on {shape.name}: {details}"
        return

    gated = GatedRequests(shape.gate_message) if shape.gate_message is not None else None
    with pytest.raises(grpc.RpcError) as err:
        shape.call(stubs, metadata, gated)
    assert err.value.code() == expected, err.value.details()
    assert fragment in err.value.details()
    if gated is not None:
        assert gated.delivered == 0, "the refused call waited for a request message"
    assert _data_rows(engine) == before


def test_health_and_reflection_need_no_token(stubs):
    health = health_pb2_grpc.HealthStub(stubs.channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    reflection = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {
        "fleet.v1.FleetAdminService",
        "fleet.v1.FleetIngestService",
        "fleet.v1.FleetQueryService",
    } <= names


def test_a_revoked_admin_token_is_refused_from_the_next_call_on(stubs, db):
    token = db.transaction(create_admin_token, "ops", SystemClock().now()).token
    metadata = (("authorization", f"Bearer {token}"),)
    reply = stubs.admin.ListCustomers(admin_pb.ListCustomersRequest(), metadata=metadata, timeout=10)
    assert list(reply.customers) == []
    db.transaction(revoke_admin_token, "ops", SystemClock().now())
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.ListCustomers(admin_pb.ListCustomersRequest(), metadata=metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bearer_scheme_is_case_insensitive_and_two_authorization_headers_are_refused(
    stubs, admin_token, new_customer
):
    new_customer("ACME")
    stubs.admin.GetCustomer(
        admin_pb.GetCustomerRequest(code="ACME"),
        metadata=(("authorization", f"bearer {admin_token}"),),
        timeout=10,
    )
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.GetCustomer(
            admin_pb.GetCustomerRequest(code="ACME"),
            metadata=(("authorization", f"Bearer {admin_token}"), ("authorization", f"Bearer {admin_token}")),
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_never_reach_the_logs(stubs, admin_token, new_customer, caplog):
    caplog.set_level(logging.DEBUG)
    customer = new_customer("ACME")
    meta = (("authorization", f"Bearer {admin_token}"),)
    rotated = stubs.admin.RotateCustomerToken(admin_pb.RotateCustomerTokenRequest(code="ACME"), metadata=meta)
    created = stubs.admin.CreateCustomer(
        admin_pb.CreateCustomerRequest(code="NEW", name="New"), metadata=meta
    )
    for token in (customer.token, rotated.token, "fleet_" + "x" * 49):
        with pytest.raises(grpc.RpcError):
            stubs.admin.GetCustomer(
                admin_pb.GetCustomerRequest(code="ACME"), metadata=(("authorization", f"Bearer {token}"),)
            )
    logged = caplog.text
    assert "rpc method=/fleet.v1.FleetAdminService/RotateCustomerToken customer=admin:test-admin" in logged
    assert "admin test-admin rotated the token of customer ACME" in logged
    assert "admin test-admin created customer NEW\n" in logged  # the noun once
    for secret in (admin_token, customer.token, rotated.token, created.token):
        assert secret not in logged
