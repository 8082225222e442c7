"""GetFleetStorage and `fleetctl fleet storage` through the wire: readings per form, bytes that add up to
what the relations take on disk, paging and refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import query_service_pb2 as qpb
from sqlalchemy import text

from fleet_server.domain.compression import compress
from fleet_server.fleetctl.main import main as fleetctl
from tests.support.clients import bearer, error_reason, rejected
from tests.support.measurements import push, reading, request

DAY = datetime(2026, 1, 5, tzinfo=UTC)


def storage(stubs, admin_token, **fields) -> qpb.GetFleetStorageResponse:
    reply: qpb.GetFleetStorageResponse = stubs.query.GetFleetStorage(
        qpb.GetFleetStorageRequest(**fields), metadata=bearer(admin_token), timeout=10
    )
    return reply


def hot_relation_bytes(engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT (SELECT sum(pg_total_relation_size(relid)) "
                    "FROM pg_partition_tree('fleet.measurements')) "
                    "+ pg_total_relation_size('fleet.measurement_rollups_hourly')"
                )
            )
        )


def readings(stubs, token, count: int, metric: str = "energy_kwh", start: datetime = DAY) -> None:
    rows = [reading(1 + i % 3, start + timedelta(minutes=15 * (i // 3)), 0.25, metric) for i in range(count)]
    push(stubs, token, [request(1, rows)])


@pytest.fixture
def fleet(stubs, new_customer):
    """ACME with 300 hot readings, BETA with 100, EMPTY with none."""
    acme, beta = new_customer("ACME"), new_customer("BETA")
    new_customer("EMPTY")
    readings(stubs, acme.token, 300)
    readings(stubs, beta.token, 100, metric="power_w")
    return acme, beta


def test_hot_readings_are_counted_and_the_relations_shared_out_by_them(stubs, admin_token, fleet, engine):
    reply = storage(stubs, admin_token)
    by_code = {c.code: c.use for c in reply.customers}
    assert list(by_code) == ["ACME", "BETA", "EMPTY"]
    assert [by_code[c].hot_readings for c in by_code] == [300, 100, 0]
    for use in by_code.values():
        assert use.compressed_readings == use.compressed_units == use.compressed_bytes == 0
    assert reply.fleet.hot_readings == 400
    assert reply.fleet.hot_bytes == hot_relation_bytes(engine)
    shared = by_code["ACME"].hot_bytes + by_code["BETA"].hot_bytes
    assert shared == pytest.approx(reply.fleet.hot_bytes, abs=1)
    assert by_code["ACME"].hot_bytes == pytest.approx(3 * by_code["BETA"].hot_bytes, abs=3)
    assert by_code["EMPTY"].hot_bytes == 0
    assert reply.HasField("measured_at")


def test_one_customer_alone(stubs, admin_token, fleet):
    reply = storage(stubs, admin_token, code="BETA")
    assert [(c.code, c.use.hot_readings) for c in reply.customers] == [("BETA", 100)]
    assert not reply.next_page_token
    assert reply.fleet.hot_readings == 400


def test_customers_are_paged_by_code(stubs, admin_token, fleet):
    first = storage(stubs, admin_token, page_size=2)
    assert [c.code for c in first.customers] == ["ACME", "BETA"]
    assert first.next_page_token
    second = storage(stubs, admin_token, page_size=2, page_token=first.next_page_token)
    assert [c.code for c in second.customers] == ["EMPTY"]
    assert not second.next_page_token
    assert second.fleet == first.fleet


def test_a_token_of_another_list_is_refused(stubs, admin_token, fleet):
    health = stubs.query.GetFleetHealth(qpb.GetFleetHealthRequest(page_size=1), metadata=bearer(admin_token))
    error = rejected(lambda: storage(stubs, admin_token, page_token=health.next_page_token))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "PAGE_TOKEN_INVALID"
    assert "GetFleetHealth" in (error.details() or "")


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"page_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        ({"page_token": "nonsense"}, grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        ({"page_token": "eyJ2IjoyfQ"}, grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        ({"code": "NOPE"}, grpc.StatusCode.NOT_FOUND, ""),
        ({"code": "bad code!"}, grpc.StatusCode.INVALID_ARGUMENT, "code"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(stubs, admin_token, fleet, fields, code, field):
    error = rejected(lambda: storage(stubs, admin_token, **fields))
    assert error.code() is code
    assert field in (error.details() or "")


def test_a_customer_token_is_not_enough(stubs, fleet):
    acme, _ = fleet
    error = rejected(lambda: storage(stubs, acme.token))
    assert error.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def test_fleetctl_fleet_storage_prints_a_line_per_customer_and_the_fleet(
    server, stubs, admin_token, fleet, capsys
):
    assert fleetctl(["--server", server.target, "--admin-token", admin_token, "fleet", "storage"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["CUSTOMER", "HOT", "READINGS"]
    assert [line.split()[0] for line in lines[2:6]] == ["ACME", "BETA", "EMPTY", "FLEET"]
    assert lines[2].split()[1:3] == ["300", "0"]
    assert lines[5].split()[1:3] == ["400", "0"]
    assert lines[4].split()[-3:] == ["-", "-", "-"]

    argv = ["--server", server.target, "--admin-token", admin_token, "fleet", "storage"]
    assert fleetctl([*argv, "--customer", "ACME", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [c["code"] for c in document["customers"]] == ["ACME"]
    assert document["customers"][0]["use"]["hot_readings"] == 300
    assert document["fleet"]["hot_readings"] == 400


def test_a_compress_run_moves_readings_and_bytes_from_hot_to_compressed(
    stubs, admin_token, fleet, db, engine
):
    acme, _ = fleet
    # 300 old readings of ACME, 100 of BETA: all settled a week after DAY; then 30 new ones of ACME.
    readings(stubs, acme.token, 30, start=DAY + timedelta(days=20))
    before = storage(stubs, admin_token, code="ACME").customers[0].use
    assert (before.hot_readings, before.compressed_readings) == (330, 0)

    report = compress(db, DAY + timedelta(days=20), timedelta(days=7), customer_id=acme.id)
    assert report.readings == 300

    reply = storage(stubs, admin_token)
    by_code = {c.code: c.use for c in reply.customers}
    assert (by_code["ACME"].hot_readings, by_code["ACME"].compressed_readings) == (30, 300)
    assert by_code["ACME"].compressed_units == 3  # devices 1..3, one month of energy_kwh
    assert (by_code["BETA"].hot_readings, by_code["BETA"].compressed_readings) == (100, 0)
    assert by_code["BETA"].compressed_bytes == 0
    with engine.connect() as conn:
        table = conn.scalar(text("SELECT pg_total_relation_size('fleet.measurements_compressed')"))
        payloads = conn.scalar(text("SELECT sum(pg_column_size(payload)) FROM fleet.measurements_compressed"))
    assert reply.fleet.compressed_bytes == by_code["ACME"].compressed_bytes == table
    assert payloads < table
    assert reply.fleet.hot_readings == 130
    assert reply.fleet.hot_bytes == hot_relation_bytes(engine)
    assert by_code["ACME"].hot_bytes + by_code["BETA"].hot_bytes == pytest.approx(
        reply.fleet.hot_bytes, abs=1
    )
