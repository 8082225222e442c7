"""The serving skeleton in process: health, reflection (v1alpha and v1), limits, the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest
from fleet.v1 import admin_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy import create_engine, make_url, text

from fleet_server.app import App
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.server import FLEET_SERVICES
from tests.support.clients import bearer
from tests.support.database import create_scratch_database, drop_database
from tests.support.inprocess import InProcessServer
from tests.support.process import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EXPECTED_SERVICES = {
    "fleet.v1.FleetIngestService",
    "fleet.v1.FleetQueryService",
    "fleet.v1.FleetAdminService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


def _status(channel: grpc.Channel, service: str = "") -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


def _wait_for_status(channel: grpc.Channel, wanted: int, service: str = "", timeout: float = 10.0) -> None:
    """Poll health until it reports `wanted` (the server polls the database on its own interval)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _status(channel, service)
        if seen == wanted:
            return
        time.sleep(0.05)
    raise AssertionError(f"health of {service!r} stayed {seen}, wanted {wanted}")


def _reflect(channel: grpc.Channel, method: str) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    return next(iter(call(iter([request]), timeout=5)))


@pytest.fixture
def channel(server: InProcessServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as chan:
        yield chan


def _start(settings: Settings, url: str, query_url: str | None = None) -> InProcessServer:
    app = App(
        settings=replace(settings, database_url=url, health_poll_s=0.05),
        db=Database.from_url(url, pool_size=2),
        reader=Database.from_url(query_url, pool_size=2) if query_url else None,
    )
    return InProcessServer(app).start()


def _stop(server: InProcessServer) -> None:
    server.stop()
    server.app.close()


def test_server_reaches_serving_overall_and_for_every_fleet_service(channel):
    assert _status(channel) == SERVING
    for service in FLEET_SERVICES:
        assert _status(channel, service) == SERVING


def test_reflection_lists_the_three_fleet_services(channel):
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert services == EXPECTED_SERVICES


def test_reflection_describes_the_ingest_service(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    file = database.FindFileContainingSymbol("fleet.v1.FleetIngestService")
    (service,) = [s for s in file.service if s.name == "FleetIngestService"]
    assert {m.name for m in service.method} == {
        "PushSites",
        "PushDevices",
        "PushMunicipalities",
        "PushTariffs",
        "PushMeasurements",
    }


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_answers_both_protocol_versions(channel, version):
    reply = _reflect(channel, f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
    assert {s.name for s in reply.list_services_response.service} == EXPECTED_SERVICES


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_no_reflection_turns_both_versions_off(make_server, version):
    server = make_server(reflection=False)
    with grpc.insecure_channel(server.target) as chan:
        with pytest.raises(grpc.RpcError) as err:
            _reflect(chan, f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert _status(chan) == SERVING


def test_health_follows_the_database_down_and_back(db, settings, database_url):
    scratch = create_scratch_database(database_url, prefix="fleet_h1_health")
    server = _start(settings, scratch)
    try:
        with grpc.insecure_channel(server.target) as chan:
            assert _status(chan) == SERVING
            drop_database(scratch)
            _wait_for_status(chan, NOT_SERVING)
            for service in FLEET_SERVICES:
                assert _status(chan, service) == NOT_SERVING

            name = make_url(scratch).database
            admin = create_engine(make_url(scratch).set(database="postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            _wait_for_status(chan, SERVING)
            assert _status(chan, "fleet.v1.FleetIngestService") == SERVING
    finally:
        _stop(server)
        drop_database(scratch)


def test_health_is_not_serving_from_the_start_when_the_database_is_unreachable(db, settings):
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    server = _start(settings, unreachable)
    try:
        with grpc.insecure_channel(server.target) as chan:
            assert _status(chan) == NOT_SERVING
            assert _status(chan, "fleet.v1.FleetAdminService") == NOT_SERVING
    finally:
        _stop(server)


def test_an_unreachable_read_replica_takes_only_the_query_service_out(db, settings, database_url):
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/replica"
    server = _start(settings, database_url, query_url=unreachable)
    try:
        with grpc.insecure_channel(server.target) as chan:
            assert _status(chan, "fleet.v1.FleetQueryService") == NOT_SERVING
            assert _status(chan, "fleet.v1.FleetIngestService") == SERVING
            assert _status(chan, "fleet.v1.FleetAdminService") == SERVING
            assert _status(chan) == NOT_SERVING
    finally:
        _stop(server)


def test_stop_flips_an_open_watch_to_not_serving(make_server):
    server = make_server()
    with grpc.insecure_channel(server.target) as chan:
        watch = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == SERVING
        assert server.running is not None
        with ThreadPoolExecutor(1) as pool:
            stopping = pool.submit(server.run, server.running.stop(grace=0.5))
            assert next(watch).status == NOT_SERVING
            stopping.result(10)
        server.running = None


def test_oversized_message_is_refused(make_server):
    server = make_server(max_message_bytes=1024)
    with grpc.insecure_channel(server.target) as chan:
        with pytest.raises(grpc.RpcError) as err:
            _status(chan, "x" * 2000)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in err.value.details()
        assert _status(chan) == SERVING


def test_oversized_metadata_is_refused(make_server):
    server = make_server(max_metadata_bytes=1024)
    with grpc.insecure_channel(server.target) as chan:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(), metadata=(("x-padding", "p" * 4000),), timeout=5
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "metadata" in err.value.details().lower()
        under_the_limit = health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(), metadata=(("x-padding", "p" * 200),), timeout=5
        )
        assert under_the_limit.status == SERVING


def test_concurrent_rpcs_beyond_the_limit_are_refused(make_server):
    server = make_server(max_concurrent_rpcs=1)
    with grpc.insecure_channel(server.target) as chan:
        watch = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(watch).status == SERVING  # holds the only slot
        with pytest.raises(grpc.RpcError) as err:
            _status(chan)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        watch.cancel()


def test_one_access_log_line_per_rpc_and_never_the_token(stubs, admin_token, caplog):
    bogus = "fleetadm_" + "z" * 43
    caplog.set_level(logging.INFO, logger="fleet_server.access")
    with pytest.raises(grpc.RpcError):
        stubs.admin.ListCustomers(admin_service_pb2.ListCustomersRequest(), metadata=bearer(bogus), timeout=5)
    stubs.admin.ListCustomers(
        admin_service_pb2.ListCustomersRequest(), metadata=bearer(admin_token), timeout=5
    )

    lines = [r.getMessage() for r in caplog.records if r.name == "fleet_server.access"]
    assert len(lines) == 2
    assert lines[0].startswith("rpc method=/fleet.v1.FleetAdminService/ListCustomers customer=- rows=0")
    assert "status=UNAUTHENTICATED" in lines[0]
    assert "customer=admin:test-admin" in lines[1]
    assert "status=OK" in lines[1]
    assert "duration_ms=" in lines[1]
    everything = caplog.text + " ".join(r.getMessage() for r in caplog.records)
    assert bogus not in everything
    assert admin_token not in everything
