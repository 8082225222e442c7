"""Malformed protobuf over the wire: every RPC answers INVALID_ARGUMENT (reason MALFORMED_REQUEST),
never UNKNOWN or INTERNAL, logs no traceback, and writes nothing.

The bytes are sent through generic channel calls (no serializer), as a hostile client would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from fleet.v1 import admin_service_pb2, ingest_service_pb2, query_service_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2

from fleet_server.app import App
from fleet_server.clock import SystemClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.domain.admin_tokens import create_admin_token
from fleet_server.domain.customers import create_customer
from tests.support.clients import Stubs, bearer, error_reason, rejected
from tests.support.database import truncate_all
from tests.support.fingerprint import fingerprint
from tests.support.inprocess import InProcessServer
from tests.support.measurements import count_rows, reading, request

BAD_UTF8 = b"\xc3\x28\xff"
TRUNCATED = b"\x0a\x05ab"  # field 1, five bytes announced, two sent
T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)

_SERVICES = [
    (ingest_service_pb2, "FleetIngestService", "customer"),
    (admin_service_pb2, "FleetAdminService", "admin"),
    (query_service_pb2, "FleetQueryService", "admin"),
]
METHODS: list[tuple[MethodDescriptor, str]] = [
    (method, who)
    for module, service, who in _SERVICES
    for method in module.DESCRIPTOR.services_by_name[service].methods
]


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def bad_utf8_encoding(message: Descriptor) -> bytes:
    """An encoding of `message` with bad UTF-8 in its first reachable string field."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return _key(field.number, 2) + _varint(len(BAD_UTF8)) + BAD_UTF8
    for field in message.fields:
        nested = field.message_type
        if nested is not None and not nested.full_name.startswith("google."):
            inner = bad_utf8_encoding(nested)
            if inner:
                return _key(field.number, 2) + _varint(len(inner)) + inner
    return b""


def _call(channel: grpc.Channel, method: MethodDescriptor, payloads: list[bytes], metadata):
    path = f"/{method.containing_service.full_name}/{method.name}"
    shape = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    call = getattr(channel, shape)(path, request_serializer=None, response_deserializer=None)
    argument = iter(payloads) if method.client_streaming else payloads[0]
    result = call(argument, metadata=metadata, timeout=10)
    return list(result) if method.server_streaming else result


@pytest.fixture(scope="module")
def door(database_url, engine) -> Iterator[tuple[Stubs, dict[str, str]]]:
    """One server and a token of each kind for the whole module: every case but one is refused,
    which writes nothing, and that is what each of them asserts."""
    truncate_all(engine)
    settings = Settings(database_url=database_url, listen="127.0.0.1:0", shutdown_grace_s=1.0)
    app = App(settings=settings, db=Database.from_url(database_url, pool_size=4))
    server = InProcessServer(app).start()
    client = Stubs.connect(server.target)
    now = SystemClock().now()
    tokens = {
        "customer": app.db.transaction(create_customer, "ACME", "Acme", now).token,
        "admin": app.db.transaction(create_admin_token, "malformed-admin", now).token,
    }
    yield client, tokens
    client.close()
    server.stop()
    app.close()


@pytest.fixture
def stubs(door: tuple[Stubs, dict[str, str]]) -> Stubs:
    return door[0]


@pytest.fixture
def tokens(door: tuple[Stubs, dict[str, str]]) -> dict[str, str]:
    return door[1]


@pytest.mark.parametrize(("method", "who"), METHODS, ids=[m.name for m, _ in METHODS])
@pytest.mark.parametrize("kind", ["bad-utf8", "truncated"])
def test_every_rpc_refuses_malformed_bytes_as_invalid_argument(
    stubs, engine, tokens, caplog, method, who, kind
):
    payload = bad_utf8_encoding(method.input_type) if kind == "bad-utf8" else TRUNCATED
    assert payload
    before = fingerprint(engine)

    with caplog.at_level(logging.ERROR):
        error = rejected(lambda: _call(stubs.channel, method, [payload], bearer(tokens[who])))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    which = "message 0 of the request stream" if method.client_streaming else "the request"
    assert error.details().startswith(which)
    assert f"is not a valid {method.input_type.full_name} (malformed protobuf" in error.details()
    assert error_reason(error) == "MALFORMED_REQUEST"
    assert fingerprint(engine) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback, no internal error"


@pytest.mark.parametrize(("method", "who"), METHODS, ids=[m.name for m, _ in METHODS])
def test_without_a_token_the_refusal_is_authentication(stubs, engine, tokens, method, who):
    before = fingerprint(engine)
    error = rejected(lambda: _call(stubs.channel, method, [TRUNCATED], ()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "TOKEN_MISSING"
    assert fingerprint(engine) == before


def test_a_stream_is_refused_at_the_malformed_message_after_acknowledging_the_ones_before(
    stubs, engine, tokens
):
    method = ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"].methods_by_name[
        "PushMeasurements"
    ]
    good = request(1, [reading(1, T0, 1.0)]).SerializeToString()
    bad = bad_utf8_encoding(method.input_type)
    later = request(3, [reading(1, T0, 3.0)]).SerializeToString()
    rows_before = count_rows(engine)
    call = stubs.channel.stream_stream(
        "/fleet.v1.FleetIngestService/PushMeasurements", request_serializer=None, response_deserializer=None
    )
    acks: list[ingest_service_pb2.PushMeasurementsResponse] = []

    def read_all() -> None:
        for ack in call(iter([good, bad, later]), metadata=bearer(tokens["customer"]), timeout=10):
            acks.append(ingest_service_pb2.PushMeasurementsResponse.FromString(ack))

    error = rejected(read_all)

    assert [a.batch_id for a in acks] == [1]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("message 1 of the request stream is not a valid")
    assert count_rows(engine) == rows_before + 1


def test_a_snapshot_with_one_malformed_message_writes_nothing(stubs, engine, tokens):
    good = ingest_service_pb2.PushSitesRequest().SerializeToString()
    call = stubs.channel.stream_unary(
        "/fleet.v1.FleetIngestService/PushSites", request_serializer=None, response_deserializer=None
    )
    before = fingerprint(engine)
    error = rejected(lambda: call(iter([good, TRUNCATED]), metadata=bearer(tokens["customer"]), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "MALFORMED_REQUEST"
    assert fingerprint(engine) == before


@pytest.mark.parametrize(
    ("path", "streaming"),
    [
        ("/grpc.health.v1.Health/Check", False),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", True),
    ],
)
def test_public_services_refuse_malformed_bytes_too(stubs, path, streaming):
    if streaming:
        call = stubs.channel.stream_stream(path, request_serializer=None, response_deserializer=None)
        error = rejected(lambda: list(call(iter([TRUNCATED]), timeout=10)))
    else:
        call = stubs.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        error = rejected(lambda: call(TRUNCATED, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "MALFORMED_REQUEST"


def test_a_well_formed_health_check_still_answers(stubs):
    call = stubs.channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None)
    reply = health_pb2.HealthCheckResponse.FromString(
        call(health_pb2.HealthCheckRequest().SerializeToString())
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
