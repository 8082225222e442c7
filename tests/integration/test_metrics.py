"""Prometheus metrics through a real in-process server: counters move exactly as the pushes do.

Every test reads the server's own registry and, once, its exposition through prometheus-client's
parser, so the names and label sets are what a scrape sees.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as apb
from fleet.v1 import query_service_pb2 as qpb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet_server.clock import FakeClock
from fleet_server.domain.tokens import TokenKind, mint
from tests.support.clients import Stubs, bearer, rejected
from tests.support.measurements import push as push_batches
from tests.support.measurements import push_until_error, reading, request
from tests.support.reference_data import device, push, site
from tests.support.waiting import wait_for

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
INGEST = "fleet.v1.FleetIngestService"
QUERY = "fleet.v1.FleetQueryService"


@pytest.fixture
def clock():
    return FakeClock(NOW)


@pytest.fixture
def server(make_server, clock):
    return make_server(clock=clock, metrics_listen="127.0.0.1:0")


@pytest.fixture
def stubs(server):
    client = Stubs.connect(server.target)
    yield client
    client.close()


def value(server, name: str, **labels: str) -> float:
    """A sample's value once the server has finished counting every call it started.

    An aborted call's status reaches the client before the server's handler has unwound (grpc.aio
    sends it from inside `abort`), so a count made on the way out can lag the client by a moment.
    """
    registry = server.app.metrics.registry
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _total(registry, "grpc_server_started_total") > _total(
        registry, "grpc_server_handled_total"
    ):
        time.sleep(0.01)
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def _total(registry, sample_name: str) -> float:
    return float(sum(s.value for f in registry.collect() for s in f.samples if s.name == sample_name))


def rows(server, code: str, resource: str, outcome: str) -> float:
    return value(server, "fleet_ingest_rows_total", customer=code, resource=resource, outcome=outcome)


def test_snapshot_counts_inserted_updated_deleted_unchanged(server, stubs, new_customer):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1), site(2), site(3)])
    assert rows(server, "ACME", "sites", "inserted") == 3

    # 3 new (4, 5, 6) + 1 changed (2) + 1 deleted (3), and 1 unchanged (1).
    push(stubs, acme.token, "sites", [site(1), site(2, "Renamed"), site(4), site(5), site(6)])
    assert rows(server, "ACME", "sites", "inserted") == 3 + 3
    assert rows(server, "ACME", "sites", "updated") == 1
    assert rows(server, "ACME", "sites", "deleted") == 1
    assert rows(server, "ACME", "sites", "unchanged") == 1
    assert rows(server, "ACME", "sites", "rejected") == 0
    last = value(server, "fleet_last_push_timestamp_seconds", customer="ACME", resource="sites")
    assert last == NOW.timestamp()


def test_refused_snapshot_counts_its_rows_rejected(server, stubs, new_customer):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1)])
    error = rejected(lambda: push(stubs, acme.token, "devices", [device(10, 1), device(11, 99)]))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION

    assert rows(server, "ACME", "devices", "rejected") == 2
    assert rows(server, "ACME", "devices", "inserted") == 0
    assert value(server, "fleet_last_push_timestamp_seconds", customer="ACME", resource="devices") == 0
    failures = value(
        server,
        "fleet_rpc_failures_total",
        grpc_service=INGEST,
        grpc_method="PushDevices",
        grpc_code="FailedPrecondition",
        reason="SITE_NOT_FOUND",
    )
    assert failures == 1


def test_measurements_count_accepted_and_duplicates_of_a_repushed_batch(server, stubs, new_customer, clock):
    acme = new_customer("ACME")
    start = NOW - timedelta(hours=2)
    batch = [reading(1, start + timedelta(minutes=15 * i), 1.0) for i in range(4)]
    push_batches(stubs, acme.token, [request(1, batch), request(2, [reading(2, start, 2.0)])])
    assert rows(server, "ACME", "measurements", "accepted") == 5
    assert rows(server, "ACME", "measurements", "duplicate") == 0

    clock.advance(60)
    # The same batch again, plus one new row: 4 duplicates, 1 accepted.
    push_batches(stubs, acme.token, [request(1, [*batch, reading(3, start, 3.0)])])
    assert rows(server, "ACME", "measurements", "accepted") == 6
    assert rows(server, "ACME", "measurements", "duplicate") == 4
    assert rows(server, "ACME", "measurements", "rejected") == 0
    last = value(server, "fleet_last_push_timestamp_seconds", customer="ACME", resource="measurements")
    assert last == (NOW + timedelta(seconds=60)).timestamp()


def test_a_refused_batch_counts_rejected_after_the_acknowledged_ones(server, stubs, new_customer):
    acme = new_customer("ACME")
    good = [reading(1, NOW - timedelta(hours=1), 1.0)]
    bad = [reading(1, NOW - timedelta(hours=1, minutes=15), float("nan")), reading(2, NOW, 1.0)]
    acks, error = push_until_error(stubs, acme.token, [request(1, good), request(2, bad)])
    assert error is not None
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [a.batch_id for a in acks] == [1]
    assert rows(server, "ACME", "measurements", "accepted") == 1
    assert rows(server, "ACME", "measurements", "rejected") == 2


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "TOKEN_MISSING"),
        ((("authorization", "Basic abc"),), "TOKEN_MALFORMED"),
        (bearer(mint(TokenKind.CUSTOMER)), "TOKEN_UNKNOWN"),
    ],
)
def test_a_refused_token_counts_its_reason(server, stubs, metadata, reason):
    error = rejected(
        lambda: stubs.query.ListSilentDevices(qpb.ListSilentDevicesRequest(code="X"), metadata=metadata)
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert value(server, "fleet_auth_refusals_total", reason=reason) == 1
    handled = value(
        server,
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service=QUERY,
        grpc_method="ListSilentDevices",
        grpc_code="Unauthenticated",
    )
    assert handled == 1


def test_a_customer_token_on_the_query_service_counts_permission_denied(server, stubs, new_customer):
    acme = new_customer("ACME")
    rejected(lambda: stubs.query.GetFleetHealth(qpb.GetFleetHealthRequest(), metadata=bearer(acme.token)))
    assert value(server, "fleet_auth_refusals_total", reason="PERMISSION_DENIED") == 1


def test_every_stream_shape_counts_messages_in_and_out(server, stubs, new_customer, admin_token):
    acme = new_customer("ACME")
    labels = {"grpc_service": INGEST, "grpc_method": "PushSites", "grpc_type": "client_stream"}
    push(stubs, acme.token, "sites", [site(1), site(2), site(3)], chunk=1)  # three messages in, one out
    assert value(server, "grpc_server_started_total", **labels) == 1
    assert value(server, "grpc_server_msg_received_total", **labels) == 3
    assert value(server, "grpc_server_msg_sent_total", **labels) == 1
    assert value(server, "grpc_server_handled_total", **labels, grpc_code="OK") == 1
    assert value(server, "grpc_server_handling_seconds_count", **labels) == 1

    bidi = {"grpc_service": INGEST, "grpc_method": "PushMeasurements", "grpc_type": "bidi_stream"}
    push_batches(
        stubs, acme.token, [request(i, [reading(1, NOW - timedelta(minutes=i), 1.0)]) for i in (1, 2)]
    )
    assert value(server, "grpc_server_msg_received_total", **bidi) == 2
    assert value(server, "grpc_server_msg_sent_total", **bidi) == 2

    unary = {"grpc_service": QUERY, "grpc_method": "GetFleetHealth", "grpc_type": "unary"}
    stubs.query.GetFleetHealth(qpb.GetFleetHealthRequest(), metadata=bearer(admin_token))
    assert value(server, "grpc_server_msg_received_total", **unary) == 1
    assert value(server, "grpc_server_msg_sent_total", **unary) == 1

    # Health's Watch writes through its context instead of yielding: still counted.
    watch = health_pb2_grpc.HealthStub(stubs.channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    server_stream = {
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
        "grpc_type": "server_stream",
    }
    assert value(server, "grpc_server_msg_sent_total", **server_stream) >= 1


def test_the_exposition_parses_and_carries_the_documented_label_sets(server, stubs, new_customer):
    acme = new_customer("ACME")
    push(stubs, acme.token, "sites", [site(1)])
    push_batches(stubs, acme.token, [request(1, [reading(1, NOW - timedelta(hours=1), 1.0)])])
    text = generate_latest(server.app.metrics.registry).decode()
    assert acme.token not in text
    assert "fleet_" + acme.token[6:12] not in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    expected = {
        "grpc_server_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_handled": ("counter", {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
        "grpc_server_msg_received": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_msg_sent": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
        "fleet_ingest_rows": ("counter", {"customer", "resource", "outcome"}),
        "fleet_last_push_timestamp_seconds": ("gauge", {"customer", "resource"}),
        "fleet_auth_refusals": ("counter", {"reason"}),
        "fleet_rpc_failures": ("counter", {"grpc_service", "grpc_method", "grpc_code", "reason"}),
        "fleet_previous_token_calls": ("counter", {"customer"}),
        "fleet_db_pool_connections": ("gauge", {"database"}),
        "fleet_db_pool_in_use": ("gauge", {"database"}),
        "fleet_db_jobs_running": ("gauge", {"database", "lane"}),
        "fleet_db_jobs_waiting": ("gauge", {"database", "lane"}),
        "fleet_compress_runs": ("counter", {"outcome"}),
        "fleet_token_cache_on": ("gauge", set()),
        "fleet_token_cache_lookups": ("counter", {"outcome"}),
        "fleet_build_info": ("gauge", {"version"}),
    }
    for name, (kind, labels) in expected.items():
        assert name in families, name
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
    outcomes = {(s.labels["resource"], s.labels["outcome"]) for s in families["fleet_ingest_rows"].samples}
    assert ("measurements", "accepted") in outcomes
    assert ("sites", "inserted") in outcomes
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_database_gauges_are_sampled(server):
    from fleet_server.telemetry.sampler import sample

    sample(server.app.metrics, server.app.databases(), server.app.admission, server.app.token_cache)
    assert value(server, "fleet_db_pool_connections", database="primary") == server.app.settings.db_pool_size
    assert value(server, "fleet_db_jobs_waiting", database="primary", lane="ingest") == 0
    assert value(server, "fleet_process_resident_memory_bytes") > 0
    assert value(server, "fleet_calls_limit", budget="operators") == server.app.settings.max_operator_calls
    assert value(server, "fleet_calls_in_progress", budget="customers") == 0


def test_the_token_cache_says_whether_it_is_on_and_what_it_served(server, stubs, new_customer):
    from fleet_server.telemetry.sampler import sample

    acme = new_customer("ACME")
    wait_for(lambda: server.app.token_cache.armed, "the token cache to turn on", 10)
    for batch_id in (1, 2, 3):
        rows = [reading(1, NOW - timedelta(hours=batch_id), 1.0)]
        push_batches(stubs, acme.token, [request(batch_id, rows)])
    sample(server.app.metrics, server.app.databases(), server.app.admission, server.app.token_cache)
    sample(server.app.metrics, server.app.databases(), server.app.admission, server.app.token_cache)
    assert value(server, "fleet_token_cache_on") == 1
    assert value(server, "fleet_token_cache_lookups_total", outcome="miss") == 1
    assert value(server, "fleet_token_cache_lookups_total", outcome="hit") == 2


def test_last_pushes_and_active_customers_are_read_from_the_database(
    make_server, new_customer, clock, admin_token
):
    acme = new_customer("ACME")
    new_customer("BETA")
    first = make_server(clock=clock, metrics_listen="127.0.0.1:0")
    client = Stubs.connect(first.target)
    push(client, acme.token, "sites", [site(1)])
    client.admin.DeactivateCustomer(apb.DeactivateCustomerRequest(code="BETA"), metadata=bearer(admin_token))
    client.close()
    second = make_server(clock=clock, metrics_listen="127.0.0.1:0")
    from fleet_server.telemetry.sampler import refresh_from_database

    assert second.run(refresh_from_database(second.app.metrics, second.app.db)) == 1
    last = value(second, "fleet_last_push_timestamp_seconds", customer="ACME", resource="sites")
    assert last == NOW.timestamp()
    assert value(second, "fleet_customer_active", customer="ACME") == 1
    assert value(second, "fleet_customer_active", customer="BETA") == 0


def test_without_metrics_listen_there_are_no_metrics(make_server):
    assert make_server().app.metrics is None
